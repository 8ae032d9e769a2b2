"""Audio → chroma: decoding, the harmonic CQT front end, the CTC chroma networks and weights.

Knows nothing of indexes. Typical use::

    from models import ChromaExtractor
    features = ChromaExtractor("v2_ctc_train123valid4").from_file("recording.mp3")
    features.chroma  # (12, T) at 25 Hz
    make_extractor("cens")  # any id the command line accepts: pretrained, trained, fold means, CENS

The names below are imported on first use (PEP 562), so that ``models.errors`` and the command
line's ``--help`` do not load PyTorch.
"""

from importlib import import_module

__all__ = ["DEFAULT_MODEL", "MODEL_IDS", "ChromaExtractor", "ChromaFeatures", "load", "make_extractor"]

_HOMES = {"ChromaExtractor": "models.extractor", "ChromaFeatures": "models.extractor",
          "DEFAULT_MODEL": "models.registry", "MODEL_IDS": "models.registry", "load": "models.registry",
          "make_extractor": "models.extractor_factory"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
