"""Comparison extractors with the interface of :class:`models.ChromaExtractor`, and the factory
:func:`make_extractor` that knows every id an index accepts (imports go one way: this module → extractor).

- ``cens``: classical CENS chroma (librosa), the baseline deep chroma is measured against;
- ``v2_ctc_mean`` (any ``<family>_mean``): the probabilities of a model family's five folds
  averaged before the chroma is taken; ``A+B[+…]`` (two or more pretrained ids): those models'
  probabilities averaged the same way;
- ``<model>+cens`` (e.g. ``v2_ctc_train123valid4+cens``): deep chroma and CENS of the same front end
  averaged frame by frame (:class:`FusionExtractor`): the deep model's melody and CENS's harmony.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import librosa
import numpy as np
import torch

from models.audio import load_audio
from models.cens import cens_from_log_hcqt
from models.errors import ParameterError
from models.extractor import ChromaExtractor, ChromaFeatures, chroma_features, inputs_and_cens
from models.frontend import (
    FEATURE_RATE,
    HOP_LENGTH,
    SAMPLE_RATE,
    grid_boundaries,
    normalize_frames,
)
from models.registry import DEFAULT_MODEL, MODEL_IDS

__all__ = ["BASELINE_IDS", "CensExtractor", "FusionExtractor", "MeanExtractor",
           "family_members", "is_computed", "make_extractor", "mean_members"]

BASELINE_IDS = ("cens", "v1_ctc_mean", "v2_ctc_mean", "v2_linear_mean", "v2_strong_mean",
                f"{DEFAULT_MODEL}+cens")
FUSION_SUFFIX = "+cens"


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


def mean_members(model_id: str) -> list[str] | None:
    """The pretrained ids whose probabilities ``model_id`` averages: a family's five folds for
    ``<family>_mean``, the ids named in ``A+B[+…]`` (two or more distinct pretrained ids); ``None``
    for any other id."""
    if model_id.endswith("_mean") and model_id.count("_") == 2:
        return family_members(model_id.removesuffix("_mean"))
    parts = model_id.split("+")
    if len(parts) >= 2 and len(set(parts)) == len(parts) and all(p in MODEL_IDS for p in parts):
        return parts
    return None


def is_computed(model_id: str) -> bool:
    """Whether ``model_id`` is computed by this module (a baseline or a mean of pretrained models)
    rather than one network's weights file."""
    return model_id in BASELINE_IDS or mean_members(model_id) is not None


class MeanExtractor(_FromFile):
    """Mean of the probabilities of several pretrained networks on one front end
    (:func:`mean_members`: ``v2_ctc_mean``, ``A+B``)."""

    def __init__(self, model_id: str, device: str | torch.device = "cpu") -> None:
        members = mean_members(model_id)
        if members is None:
            raise ParameterError(f"{model_id!r} is no mean of pretrained models")
        self.model_id = model_id
        self.members = [ChromaExtractor(m, device=device) for m in members]

    def from_signal(self, y: np.ndarray, cens: bool = False) -> ChromaFeatures:
        """The mean chroma of a signal (and, with ``cens``, CENS of the same HCQT)."""
        return self.from_signals([y], cens)[0]

    def from_signals(self, ys: Sequence[np.ndarray | torch.Tensor], cens: bool = False) -> list[ChromaFeatures]:
        """Chroma of several signals, each network's windows batched across them (as
        :meth:`models.extractor.ChromaExtractor.from_signals`); each equals :meth:`from_signal`'s."""
        xs, censes = inputs_and_cens(self.members[0], ys, cens)
        per_member = [m.network_many(xs) for m in self.members]
        probs = [torch.stack(ps).mean(dim=0) for ps in zip(*per_member, strict=True)]
        return [chroma_features(p, p.shape[0], c) for p, c in zip(probs, censes, strict=True)]


class FusionExtractor(_FromFile):
    """Deep chroma and CENS of one front end, averaged: ``normalize(deep + cens)`` per frame.

    Deep chroma finds a theme's melody in a texture; CENS keeps every sounding pitch class, which
    full-texture themes (piano excerpts of both staves) need. The CENS comes from the deep model's
    own HCQT (:func:`models.cens.cens_from_log_hcqt`), so the fusion costs what the deep model costs.
    """

    def __init__(self, model_id: str, device: str | torch.device = "cpu") -> None:
        self.model_id = model_id + FUSION_SUFFIX
        self.deep = ChromaExtractor(model_id, device=device)

    def from_signal(self, y: np.ndarray) -> ChromaFeatures:
        log_hcqt = self.deep.log_hcqt(y)
        probs = self.deep.network(normalize_frames(log_hcqt))
        deep = chroma_features(probs, probs.shape[0])
        fused = librosa.util.normalize(deep.chroma + cens_from_log_hcqt(log_hcqt)[:, : deep.chroma.shape[1]],
                                       norm=2, axis=0, fill=True).astype(np.float32)
        return ChromaFeatures(np.vstack([fused, np.zeros((1, fused.shape[1]), np.float32)]), fused, deep.times)


def make_extractor(model_id: str = DEFAULT_MODEL, device: str | torch.device = "cpu"):
    """The chroma extractor for any model id the command line accepts.

    Parameters
    ----------
    model_id : str
        One of the 25 pretrained ids (``cli.py models``), a trained model's id or folder, a fold
        mean (``v2_ctc_mean``: the five folds' probabilities averaged; ``A+B``: two or more
        pretrained ids' probabilities averaged), ``cens`` (classical CENS chroma)
        or a fusion (``ID+cens``: the model's chroma and CENS of its own HCQT, averaged frame by
        frame).
    device : str or torch.device
        Where the network runs (``"cpu"``, ``"cuda"``); ignored by ``cens``.

    Returns
    -------
    extractor
        An object with ``from_file(path)`` and ``from_signal(samples)`` returning chroma features
        whose ``chroma`` is ``(12, T)`` at 25 Hz, as
        :class:`models.extractor.ChromaExtractor` does.

    Raises
    ------
    models.registry.UnknownModelError
        For an id that is none of these.
    """
    if model_id == "cens":
        return CensExtractor()
    if model_id.endswith(FUSION_SUFFIX):
        return FusionExtractor(model_id.removesuffix(FUSION_SUFFIX), device=device)
    if mean_members(model_id) is not None:
        return MeanExtractor(model_id, device=device)
    return ChromaExtractor(model_id, device=device)
