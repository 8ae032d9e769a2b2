"""Training augmentations on the cached log-HCQT: transposition and mixing in another excerpt.

Both act on the front end's output, so an epoch still costs only the network. The log-HCQT
holds ``v = (1/80)·dB + 1`` per (frame, harmonic, bin), relative to its recording's largest
magnitude, 0 at the 80 dB floor (:meth:`models.extractor.ChromaExtractor.log_hcqt`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIX_GAIN_DB", "SEMITONE_BINS", "mix_log_hcqt", "shift_bins"]

SEMITONE_BINS = 3  # HCQT bins per semitone (36 per octave)

MIX_GAIN_DB = (-12.0, 0.0)
"""Range of the level, relative to the excerpt's own, at which another excerpt is mixed in:
from a faint background to an equal partner (the hard case of the benchmark renderings, where
the melody is no louder than the rest)."""


def mix_log_hcqt(a: np.ndarray, b: np.ndarray, gain_db: float) -> np.ndarray:
    """The log-HCQT of the sum of two signals, ``b`` scaled by ``gain_db``, from theirs.

    ``a`` and ``b`` are ``(T, 6, 216)`` log-HCQTs. Their CQT powers are added (signals of
    unrelated phases: ``|A + B|² ≈ |A|² + |B|²`` on average), a bin at the floor counting as
    silent; the result keeps ``a``'s reference, so it may exceed 1 by up to 3/80 where both are
    at full level, and the 80 dB floor is applied again. Median binning happened before the
    mix, so this approximates the front end of the mixed audio, as an augmentation may.
    """
    power_a = np.where(a > 0, 10.0 ** (8.0 * (a - 1.0)), 0.0)  # 10^(2·dB/20) with dB = 80·(v − 1)
    power_b = np.where(b > 0, 10.0 ** (8.0 * (b - 1.0) + gain_db / 10.0), 0.0)
    total = power_a + power_b
    out = np.log10(np.maximum(total, 1e-16)) / 8.0 + 1.0
    return np.where(total > 0, np.maximum(out, 0.0), 0.0).astype(np.float32)


def shift_bins(x: np.ndarray, bins: int) -> np.ndarray:
    """``(T, 216, 6)`` moved up ``bins`` bins (down if negative), zeros shifted in."""
    out = np.zeros_like(x)
    if bins > 0:
        out[:, bins:] = x[:, :-bins]
    elif bins < 0:
        out[:, :bins] = x[:, -bins:]
    else:
        out[:] = x
    return out
