"""Audio → features: decoding, the harmonic CQT front end, the CTC chroma networks and weights.

Knows nothing of indexes. Typical use::

    from models import ChromaExtractor
    features = ChromaExtractor("v2_ctc_train123valid4").from_file("recording.mp3")
    features.chroma  # (12, T) at 25 Hz
"""

from models.extractor import ChromaExtractor, ChromaFeatures
from models.registry import DEFAULT_MODEL, MODEL_IDS, load

__all__ = ["DEFAULT_MODEL", "MODEL_IDS", "ChromaExtractor", "ChromaFeatures", "load"]
