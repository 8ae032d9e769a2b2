"""CENS chroma of the deep front end's own HCQT: the harmony every sounding pitch class makes.

Deep chroma answers a texture with its melody; CENS (Müller, *Information Retrieval for Music and
Motion*, 2007) keeps every pitch class that sounds. Computed from the log HCQT the network reads
(:meth:`models.extractor.ChromaExtractor.log_hcqt`), it costs no second CQT: an index stores it
beside the deep chroma, and themes written out in full texture are ranked by both
(:mod:`retrieval.search`). Kept apart from :mod:`models.extractor` so that both the extractor and
the comparison extractors of :mod:`models.extractor_factory` import it.
"""

from __future__ import annotations

import librosa
import numpy as np
import scipy.ndimage
import scipy.signal
import torch

from models.frontend import BINS_PER_OCTAVE, TOP_DB

__all__ = ["CENS_SMOOTHING", "CENS_STEPS", "cens_from_log_hcqt"]

CENS_STEPS = (0.4, 0.2, 0.1, 0.05)
"""librosa's CENS quantisation: each step a pitch class's share of the frame's energy exceeds adds 1/4."""

CENS_SMOOTHING = 12
"""Hann window (25 Hz frames) of the CENS smoothing: librosa's 41 frames at hop 256 ≈ 0.48 s."""


def cens_from_log_hcqt(log_hcqt: torch.Tensor) -> np.ndarray:
    """CENS chroma ``(12, T)`` from the deep front end's ``(T, 6, 216)`` log HCQT (its
    fundamental harmonic: 6 octaves from C1, 3 bins per semitone), as librosa computes CENS from
    a CQT — magnitudes folded to pitch classes, L1-normalised, quantised (:data:`CENS_STEPS`),
    Hann-smoothed over :data:`CENS_SMOOTHING` frames, L2-normalised — at no cost of its own."""
    level = log_hcqt[:, 1].double().cpu().numpy()  # (T, 216), (1/80)·dB + 1, 0 at the floor
    magnitude = np.where(level > 0, 10.0 ** ((level - 1.0) * TOP_DB / 20.0), 0.0)
    per_semitone = BINS_PER_OCTAVE // 12
    # bin 3k is semitone k's centre: rolled by one, each group of three holds centre ± 1 bin
    semitones = np.roll(magnitude, 1, axis=1).reshape(len(magnitude), -1, per_semitone).sum(axis=2)
    chroma = semitones.reshape(len(magnitude), -1, 12).sum(axis=1).T  # (12, T)
    chroma = chroma / np.maximum(chroma.sum(axis=0, keepdims=True), 1e-12)
    quantised = sum((chroma > step).astype(np.float64) for step in CENS_STEPS) / len(CENS_STEPS)
    window = scipy.signal.windows.hann(CENS_SMOOTHING + 2)[1:-1]
    smoothed = scipy.ndimage.convolve1d(quantised, window / window.sum(), axis=1, mode="constant")
    return librosa.util.normalize(smoothed, norm=2, axis=0, fill=True).astype(np.float32)

