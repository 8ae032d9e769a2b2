"""Comparison extractors with the interface of :class:`models.ChromaExtractor`, and the factory
:func:`make_extractor` that knows every id an index accepts (imports go one way: this module → extractor).

- ``cens``: classical CENS chroma (librosa), the baseline deep chroma is measured against;
- ``v2_ctc_mean`` (any ``<family>_mean``): the probabilities of a model family's five folds
  averaged before the chroma is taken.
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import torch

from models.audio import load_audio
from models.errors import ParameterError
from models.extractor import ChromaExtractor, ChromaFeatures, chroma_features
from models.frontend import FEATURE_RATE, HOP_LENGTH, SAMPLE_RATE, grid_boundaries
from models.registry import DEFAULT_MODEL, MODEL_IDS

__all__ = ["BASELINE_IDS", "CensExtractor", "FoldMeanExtractor", "family_members", "make_extractor"]

BASELINE_IDS = ("cens", "v1_ctc_mean", "v2_ctc_mean", "v2_linear_mean", "v2_strong_mean")


class _FromFile:
    def from_file(self, path: str | Path) -> ChromaFeatures:
        y, _ = load_audio(path, SAMPLE_RATE)
        return self.from_signal(y)


class CensExtractor(_FromFile):
    """librosa's CENS chroma (CQT-based, 41-frame smoothing) on the same 25 Hz grid."""

    model_id = "cens"

    def from_signal(self, y: np.ndarray) -> ChromaFeatures:
        cens = librosa.feature.chroma_cens(y=y, sr=SAMPLE_RATE, hop_length=HOP_LENGTH)
        bounds = grid_boundaries(cens.shape[1])
        chroma = librosa.util.sync(cens, list(bounds), aggregate=np.mean, pad=False)
        chroma = librosa.util.normalize(chroma, norm=2, axis=0, fill=True).astype(np.float32)
        probabilities = np.vstack([chroma, np.zeros((1, chroma.shape[1]), np.float32)])
        return ChromaFeatures(probabilities, chroma, np.arange(chroma.shape[1]) / FEATURE_RATE)


def family_members(family: str) -> list[str]:
    """The model ids whose probabilities ``<family>_mean`` averages: the five folds trained on three
    of the five data folds (``v1_ctc`` also has five trained on four; those are left out)."""
    folds = [m for m in MODEL_IDS if m.startswith(family + "_train") and m.count("train") == 1]
    folds = [m for m in folds if len(m.split("_train")[1].split("valid")[0]) == 3] or folds
    if not folds:
        raise ParameterError(f"no model family {family!r}")
    return folds


class FoldMeanExtractor(_FromFile):
    """Mean of the probabilities of the five folds of one model family (e.g. ``v2_ctc``)."""

    def __init__(self, family: str, device: str | torch.device = "cpu") -> None:
        self.model_id = f"{family}_mean"
        self.members = [ChromaExtractor(m, device=device) for m in family_members(family)]

    def from_signal(self, y: np.ndarray) -> ChromaFeatures:
        x = self.members[0].front_end(y)
        probs = torch.stack([m.network(x) for m in self.members]).mean(dim=0)
        return chroma_features(probs, probs.shape[0])


def make_extractor(model_id: str = DEFAULT_MODEL, device: str | torch.device = "cpu"):
    """The chroma extractor for a model id, a fold mean (``v2_ctc_mean``) or ``cens``.

    Raises :class:`models.registry.UnknownModelError` for anything else.
    """
    if model_id == "cens":
        return CensExtractor()
    if model_id.endswith("_mean") and model_id.count("_") == 2:
        return FoldMeanExtractor(model_id.removesuffix("_mean"), device=device)
    return ChromaExtractor(model_id, device=device)
