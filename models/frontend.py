"""Harmonic CQT front end of the CTC chroma models, and its 25 Hz median binning.

The reference (``ctc_chroma.features.compute_hcqt_median``): audio at 22050 Hz, six
``librosa.cqt`` with ``fmin = 32.7 Hz × h`` for ``h`` in :data:`HARMONICS`, 36 bins per octave,
6 octaves, hop 256; ``(1/80)·amplitude_to_db(|C|, ref=max over all six) + 1``; frames grouped
onto a 0.04 s grid by ``searchsorted`` and reduced by their median; finally, per frame and
harmonic, L2 normalisation over the 216 bins (the network input).

Two implementations of the magnitude stage live in :mod:`models.hcqt`; this module holds the
shared parameters and the exact, chunk-friendly finishing steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from models.errors import ParameterError

if TYPE_CHECKING:  # imported where used: the constants above serve modules that never load PyTorch
    import torch

__all__ = [
    "AMIN",
    "BINS_PER_OCTAVE",
    "FEATURE_RATE",
    "FMIN",
    "HARMONICS",
    "HOP_LENGTH",
    "N_BINS",
    "SAMPLE_RATE",
    "TOP_DB",
    "finish_hcqt",
    "frame_times",
    "grid_boundaries",
    "median_bin_db",
    "normalize_frames",
    "normalize_hcqt",
]

SAMPLE_RATE = 22050
HOP_LENGTH = 256
FMIN = 32.7
BINS_PER_OCTAVE = 36
N_OCTAVES = 6
N_BINS = BINS_PER_OCTAVE * N_OCTAVES
HARMONICS = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
FEATURE_RATE = 25
AMIN = 1e-5  # librosa.amplitude_to_db default
TOP_DB = 80.0


def frame_times(n_frames: int) -> np.ndarray:
    """Times in seconds of CQT hop frames, as ``librosa.frames_to_time``."""
    return np.arange(n_frames) * HOP_LENGTH / SAMPLE_RATE


def grid_boundaries(n_frames: int) -> np.ndarray:
    """First hop frame of each 25 Hz output frame, plus ``n_frames`` at the end.

    Exactly the reference grouping: the grid ``arange(t0, t_last + eps, 1/25)`` located in the
    hop-frame times by ``searchsorted``. Output frame ``i`` is the median of hop frames
    ``bounds[i]:bounds[i+1]``.
    """
    if n_frames < 1:
        raise ParameterError("need at least one CQT frame")
    times = frame_times(n_frames)
    grid = np.arange(times[0], times[-1] + np.finfo(float).eps, 1.0 / FEATURE_RATE)
    bounds = np.append(np.searchsorted(times, grid), n_frames)
    return np.unique(np.clip(bounds, 0, n_frames))


def _middle_pair(values: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The two middle order statistics of 1 to 4 same-shaped tensors, by a sorting network."""
    import torch

    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return torch.minimum(*values), torch.maximum(*values)
    if len(values) == 3:
        a, b, c = values
        median = torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))
        return median, median
    a, b, c, d = values
    lower = torch.maximum(torch.minimum(a, b), torch.minimum(c, d))  # the smaller pairs' larger
    upper = torch.minimum(torch.maximum(a, b), torch.maximum(c, d))  # the larger pairs' smaller
    return torch.minimum(lower, upper), torch.maximum(lower, upper)


def median_bin_db(magnitude: torch.Tensor, bounds: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per 25 Hz group, the two middle order statistics of the unreferenced dB magnitude.

    ``magnitude`` is ``(n_frames, ...)``, time first, covering hop frames
    ``bounds[0]:bounds[-1]``. Returns ``(low, high)`` of shape ``(len(bounds) - 1, ...)``: for a
    group of odd size both are its median, for an even size the two middle values. The median
    after the global reference and clipping is then ``mean(max(low, c), max(high, c))`` (dB and
    clipping are monotone, so they commute with taking order statistics), which lets long
    signals be binned chunk by chunk before the global maximum is known.
    """
    import torch

    local = bounds - bounds[0]
    sizes = np.diff(local)
    low = torch.empty((len(sizes),) + magnitude.shape[1:], dtype=magnitude.dtype, device=magnitude.device)
    high = torch.empty_like(low)
    for size in np.unique(sizes):
        groups = np.flatnonzero(sizes == size)
        sel = torch.from_numpy(groups).to(magnitude.device)
        starts = torch.from_numpy(local[groups]).to(magnitude.device)
        if size <= 4:
            low[sel], high[sel] = _middle_pair([magnitude[starts + j] for j in range(size)])
        else:
            block = torch.sort(magnitude[starts[:, None] + torch.arange(size, device=starts.device)], dim=1).values
            low[sel], high[sel] = block[:, (size - 1) // 2], block[:, size // 2]
    return 20.0 * torch.log10(torch.clamp(low, min=AMIN)), 20.0 * torch.log10(torch.clamp(high, min=AMIN))


def finish_hcqt(low: torch.Tensor, high: torch.Tensor, ref_db: float) -> torch.Tensor:
    """``(1/80)·amplitude_to_db(·, ref) + 1`` median-binned, from :func:`median_bin_db` output.

    ``ref_db`` is ``20·log10(max(AMIN, max |C|))`` over the whole recording and all harmonics.
    """
    import torch

    floor = ref_db - TOP_DB
    med = 0.5 * (torch.clamp(low, min=floor) + torch.clamp(high, min=floor)) - ref_db
    return med / TOP_DB + 1.0


def normalize_frames(hcqt: torch.Tensor) -> torch.Tensor:
    """Network input ``(T, 216, 6)`` from time-first ``(T, 6, 216)``: L2 over the bins per frame,
    float32 on ``hcqt``'s device.

    Equals ``librosa.util.normalize(·, norm=2, fill=True)`` over the bins (in float32, as
    librosa on float32 input): an all-zero frame becomes the uniform vector of unit norm.
    """
    import torch

    x = hcqt.float()
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    tiny = torch.finfo(torch.float32).tiny
    out = torch.where(norm < tiny, x.new_tensor(x.shape[-1] ** -0.5), x / norm.clamp_min(tiny))
    return out.transpose(1, 2).contiguous()


def normalize_hcqt(hcqt: np.ndarray) -> np.ndarray:
    """:func:`normalize_frames` of an HCQT laid out as the reference, ``(6, 216, T)`` → ``(T, 216, 6)``."""
    import torch

    return normalize_frames(torch.from_numpy(np.asarray(hcqt, dtype=np.float32)).permute(2, 0, 1)).numpy()
