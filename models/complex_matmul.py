"""Complex matrix products as real ones, which run several times faster on the CPU."""

from __future__ import annotations

import torch

__all__ = ["real_matmul_form"]


def real_matmul_form(kernel: torch.Tensor) -> torch.Tensor:
    """``(..., in, out)`` complex → ``(..., 2·in, 2·out)`` real for interleaved ``(re, im)`` pairs.

    ``view_as_real(x).flatten(-2) @ real_matmul_form(k)`` equals ``view_as_real(x @ k).flatten(-2)``:
    ``[xr xi] @ [[kr ki] [-ki kr]]``. Real matrix products are several times faster than complex
    ones on the CPU here.
    """
    top = torch.stack([kernel.real, kernel.imag], dim=-1)  # row xr: (kr, ki)
    bottom = torch.stack([-kernel.imag, kernel.real], dim=-1)  # row xi: (-ki, kr)
    real = torch.stack([top, bottom], dim=-3)  # (..., in, 2, out, 2)
    return real.reshape(*kernel.shape[:-2], 2 * kernel.shape[-2], 2 * kernel.shape[-1])
