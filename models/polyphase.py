"""Filter-bank responses at a small hop, by FFT along time instead of one FFT per frame.

At the upper pyramid levels the CQT hop is a few samples while the FFT frame is up to 1024:
consecutive frames share almost all their samples, and an FFT per frame redoes that work.
Projecting an STFT frame onto filters is the same as correlating the signal with each
filter's time-domain kernel and keeping every ``hop``-th output. Split the signal into ``hop``
polyphase components (``u[m, r] = x[m · hop + r]``): each output is then a ``taps``-long
correlation along ``m`` summed over the ``hop`` components, which overlap-save FFT blocks turn
into one small complex matrix product per frequency. The arithmetic per frame drops from an
``n_fft``-point FFT plus the projection to about ``hop · n_filters`` complex multiplies; the
result equals the per-frame computation up to float32 rounding.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import torch

from models.complex_matmul import real_matmul_form
from models.errors import ParameterError

__all__ = ["PolyphaseFilterBank"]


class PolyphaseFilterBank:
    """``|Σ_n x[t · hop + n] · kernels[n, f]|`` for all frames ``t``, by polyphase overlap-save.

    Parameters
    ----------
    kernels : complex ``(n_fft, n_filters)`` time-domain filters; ``n_fft`` a multiple of ``hop``.
    hop : frame advance in samples.
    device : where the transforms run.
    """

    def __init__(self, kernels: np.ndarray, hop: int, device: torch.device) -> None:
        n_fft, n_filters = kernels.shape
        if n_fft % hop:
            raise ParameterError(f"n_fft {n_fft} is not a multiple of the hop {hop}")
        self.hop, self.taps, self.n_filters = hop, n_fft // hop, n_filters
        self.block = scipy.fft.next_fast_len(max(4 * self.taps, 128), real=True)  # fastest here
        self.step = self.block - self.taps + 1  # valid outputs per block
        # kernel of tap q, phase r at index (-q) mod block: circular convolution = correlation
        by_tap = kernels.reshape(self.taps, hop, n_filters)
        placed = np.zeros((self.block, hop, 2 * n_filters))
        placed[(-np.arange(self.taps)) % self.block] = np.concatenate([by_tap.real, by_tap.imag], axis=-1)
        spectrum = torch.from_numpy(np.fft.rfft(placed, axis=0))  # (freq, hop, 2·filters): re, im parts
        self.kernel = real_matmul_form(spectrum).float().to(device)
        self.device = device

    def aligned(self, start: int, count: int) -> tuple[int, int]:
        """``(first, n)``: whole blocks of frames covering frames ``start:start + count``.

        Blocks begin at multiples of the block step counted from frame 0, so any two calls
        transform the same blocks of samples: chunked and whole-signal results are identical.
        """
        first = start - start % self.step
        return first, -(-(start + count - first) // self.step) * self.step

    def __call__(self, padded: torch.Tensor) -> torch.Tensor:
        """Magnitudes ``(n, n_filters)`` of the ``n`` frames ``padded[t · hop : t · hop + n_fft]``.

        ``padded`` holds ``(n - 1) · hop + n_fft`` samples, ``n`` a multiple of the block step
        (see :meth:`aligned`).
        """
        rows, rem = divmod(len(padded), self.hop)
        n_blocks, partial = divmod(rows - self.taps + 1, self.step)
        if rem or partial or n_blocks < 1:
            raise ParameterError(f"{len(padded)} samples are not whole blocks of {self.step} frames of hop {self.hop}")
        u = padded.to(self.device).reshape(rows, self.hop)
        blocks = u.unfold(0, self.block, self.step)  # (blocks, hop, block)
        spec = torch.fft.rfft(blocks, dim=-1)  # (blocks, hop, freq)
        spec = torch.view_as_real(spec).permute(2, 0, 1, 3).reshape(-1, n_blocks, 2 * self.hop)
        out = torch.view_as_complex(torch.bmm(spec, self.kernel).view(-1, n_blocks, 2 * self.n_filters, 2))
        resp = torch.fft.irfft(out, n=self.block, dim=0)[: self.step]  # (step, blocks, 2·filters)
        resp = resp.transpose(0, 1).reshape(-1, 2 * self.n_filters)
        return torch.hypot(resp[:, : self.n_filters], resp[:, self.n_filters :])
