"""soxr's ``soxr_hq`` integer downsampling, reproduced as an FIR filter on any torch device.

The HCQT's resampling pyramid halves the signal with soxr, as librosa does (and 4:1 once for the
harmonics that allow two early downsamplings). soxr runs on the CPU only; to put the pyramid on
the GPU without changing a sample, this module measures soxr itself: for an integer factor ``f``
its output is ``out[k] = Σ_j h[j] · x[f·k + j − lead]`` with zeros outside the signal (linear and
shift-invariant by steps of ``f``), except that at 4:1 a few odd input samples at the very start
reach the first outputs differently (soxr's two-stage start-up). Both the filter ``h`` and that
start-up correction are read off soxr's responses to unit impulses when a :class:`Decimator` is
built, so the reproduction holds for the soxr installed, and :meth:`Decimator.check` compares the
two on a random signal. soxr returns ``floor(n / f + 1/2)`` samples; like
:func:`soxr_downsample` (librosa's ``scale=True`` resampling) the result is scaled by
``sqrt(f)`` and zero-padded to ``ceil(n / f)``.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import soxr
import torch

from models.errors import ParameterError

__all__ = ["Decimator", "soxr_downsample"]

_PROBE = 1 << 15  # probe signal length: longer than any soxr_hq filter at 2:1 and 4:1
_START = 64  # leading input samples whose start-up responses are measured
_NOISE = 1e-6  # start-up differences below this are soxr's float32 rounding (~6e-8), not its filter
_BLOCKS = 256  # overlap-save blocks per FFT call (bounds the working memory)


def soxr_downsample(y: np.ndarray, factor: int) -> np.ndarray:
    """``librosa.resample(y, orig_sr=factor, target_sr=1, res_type="soxr_hq", scale=True)``: the
    reference this module reproduces; ``(n,)`` float32 → ``(ceil(n / factor),)``."""
    out = soxr.resample(y, factor, 1, quality="soxr_hq")
    n = -(-len(y) // factor)
    return np.pad(out, (0, max(0, n - len(out))))[:n] * np.float32(np.sqrt(factor))


def _impulse_response(factor: int, position: int) -> np.ndarray:
    """soxr's float64 output for a unit impulse at ``position`` of a :data:`_PROBE`-long signal."""
    x = np.zeros(_PROBE)
    x[position] = 1.0
    return soxr.resample(x, factor, 1, quality="soxr_hq")


@cache
def _measured(factor: int) -> tuple[np.ndarray, int, np.ndarray]:
    """``(h, lead, start)`` of soxr at ``factor``: the filter, its look-behind in input samples, and
    the start-up correction ``(rows, _START)`` added to the first outputs (see the module docstring)."""
    centre = _PROBE // 2 // factor * factor
    by_offset: dict[int, float] = {}
    for r in range(factor):  # one impulse per polyphase phase gives every tap once
        for k, value in enumerate(_impulse_response(factor, centre + r)):
            by_offset[centre + r - factor * k] = value
    offsets = np.array(sorted(by_offset))
    values = np.array([by_offset[o] for o in offsets])
    support = np.flatnonzero(values)
    lo, hi = offsets[support[0]], offsets[support[-1]]
    h = values[(offsets >= lo) & (offsets <= hi)]
    lead = int(-lo)
    columns, k = [], np.arange(len(_impulse_response(factor, 0)))
    for position in range(_START):
        shifted = np.zeros(len(k))
        j = position + lead - factor * k
        inside = (j >= 0) & (j < len(h))
        shifted[inside] = h[j[inside]]
        columns.append(_impulse_response(factor, position) - shifted)
    start = np.stack(columns, axis=1)
    start[np.abs(start) < _NOISE] = 0.0  # soxr_hq computes in float32: keep only real differences
    if np.any(start[:, _START // 2 :]):
        raise ParameterError(f"soxr {soxr.__version__} at {factor}:1 is not the filter this module models")
    rows = np.flatnonzero(np.abs(start).max(axis=1) > 0)
    start = start[: rows[-1] + 1 if len(rows) else 0]
    return h, lead, start


class Decimator:
    """:func:`soxr_downsample` by ``factor`` on ``device``, exact up to float32 rounding.

    The filter runs as an overlap-save FFT correlation (blocks a few times the filter's length),
    so the cost per sample is independent of the signal's length, and any long signal is
    processed in groups of :data:`_BLOCKS` blocks.
    """

    def __init__(self, factor: int, device: str | torch.device = "cpu") -> None:
        if factor < 2:
            raise ParameterError(f"downsampling factor must be an integer >= 2, got {factor}")
        h, self.lead, start = _measured(factor)
        self.factor, self.taps, self.device = factor, len(h), torch.device(device)
        self.block = 1 << int(np.ceil(np.log2(4 * self.taps)))
        self.step = (self.block - self.taps + 1) // factor * factor  # valid outputs per block, whole output periods
        scale = np.sqrt(factor)
        spectrum = np.conj(np.fft.rfft(h * scale, self.block)).astype(np.complex64)  # correlation, not convolution
        self.spectrum = torch.from_numpy(spectrum).to(self.device)
        self.start = torch.from_numpy(start * scale).float().to(self.device)  # (rows, _START)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(n,)`` float32 signal → ``(ceil(n / factor),)`` on this decimator's device."""
        n, f = len(x), self.factor
        kept = int(np.floor(n / f + 0.5))  # what soxr returns; the rest is zero padding
        x = x.to(self.device, torch.float32)
        out = torch.zeros(-(-n // f), dtype=torch.float32, device=self.device)
        if kept == 0:
            return out
        n_blocks = -(-kept // (self.step // f))  # each block gives step / f outputs
        needed = (n_blocks - 1) * self.step + self.block  # samples the blocks read
        padded = torch.nn.functional.pad(x, (self.lead, max(0, needed - self.lead - n)))
        blocks = padded.unfold(0, self.block, self.step)
        parts = []
        for b in range(0, n_blocks, _BLOCKS):
            spec = torch.fft.rfft(blocks[b : b + _BLOCKS], dim=-1) * self.spectrum
            parts.append(torch.fft.irfft(spec, n=self.block, dim=-1)[:, : self.step : f].reshape(-1))
        out[:kept] = torch.cat(parts)[:kept]
        rows, cols = min(kept, self.start.shape[0]), min(n, self.start.shape[1])
        if rows and cols:
            out[:rows] += self.start[:rows, :cols] @ x[:cols]
        return out

    def check(self, n: int = 50_000, seed: int = 0) -> float:
        """Largest difference from soxr on ``n`` samples of unit white noise: a few 1e-6 when exact
        (float32 rounding), 1e-3 or more for a wrong filter, delay or start-up."""
        y = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
        mine = self(torch.from_numpy(y)).cpu().numpy()
        return float(np.abs(mine - soxr_downsample(y, self.factor)).max())
