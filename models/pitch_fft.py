"""Long pitch kernels by FFT: the same convolution in a twentieth of the arithmetic.

The network's fifth layer convolves 32 channels with 3 × 42 kernels (time × pitch) into 8:
about 32 000 multiply-adds per output bin, over half of the network's work. Along pitch the
convolution is linear, so it equals a product of spectra once the 216 bins are zero-padded
far enough that circular wrap-around only meets zeros. Per pitch frequency, the layer is then
a small complex matrix product over (input channel, time tap) → output channel. The result is
the direct convolution's up to float32 rounding (~1e-6).
"""

from __future__ import annotations

import scipy.fft
import torch
from torch import nn
from torch.nn import functional as F

from models.complex_matmul import real_matmul_form
from models.errors import ParameterError
from models.network import N_BINS, ChromaNet, same_padding

__all__ = ["PitchFFTConv", "with_pitch_fft"]


class PitchFFTConv(nn.Module):
    """A Keras-``same`` :class:`torch.nn.Conv2d` on ``(batch, channels, time, n_pitch)``, by FFT.

    Parameters
    ----------
    conv : the convolution to reproduce (weights are copied, not shared).
    n_pitch : length of the pitch axis of the inputs it will see.
    """

    def __init__(self, conv: nn.Conv2d, n_pitch: int) -> None:
        super().__init__()
        out_ch, in_ch, k_time, k_pitch = conv.weight.shape
        left, right, self.top, self.bottom = same_padding(k_time, k_pitch)
        # output bin p reads inputs p - left .. p + right; wrap-around must land on zero padding
        self.n_fft = scipy.fft.next_fast_len(n_pitch + max(left, right) + 1, real=True)
        self.n_pitch = n_pitch
        # correlation as circular convolution: kernel tap d sits at index (left - d) mod n_fft
        kernel = torch.zeros(out_ch, in_ch, k_time, self.n_fft, dtype=torch.float64)
        taps = (left - torch.arange(k_pitch)) % self.n_fft
        kernel[..., taps] = conv.weight.detach().double().cpu()
        k = torch.fft.rfft(kernel, dim=-1).permute(2, 3, 1, 0)  # (time tap, freq, in, out)
        real = real_matmul_form(k).float()
        self.register_buffer("kernel", real.to(conv.weight.device))  # (time tap, freq, 2·in, 2·out)
        self.register_buffer("bias", conv.bias.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in, time, n_pitch)`` → ``(batch, out, time, n_pitch)``."""
        batch, in_ch, n_time, n_pitch = x.shape
        if n_pitch != self.n_pitch:
            raise ParameterError(f"expected {self.n_pitch} pitch bins, got {n_pitch}")
        k_time, n_freq, _, out2 = self.kernel.shape
        spec = torch.fft.rfft(F.pad(x, (0, 0, self.top, self.bottom)), n=self.n_fft, dim=-1)
        padded = n_time + k_time - 1
        # (freq, batch · padded time, 2 · in): the batch's padded time axes end to end
        rows = torch.view_as_real(spec).permute(3, 0, 2, 1, 4).reshape(n_freq, batch * padded, 2 * in_ch)
        # time tap d reads the rows d later; rows that straddle two batch items are dropped below
        m = batch * padded - (k_time - 1)
        out = torch.bmm(rows[:, :m], self.kernel[0])
        for d in range(1, k_time):
            out.baddbmm_(rows[:, d : d + m], self.kernel[d])
        out = F.pad(out, (0, 0, 0, k_time - 1)).view(n_freq, batch, padded, out2 // 2, 2)[:, :, :n_time]
        out = torch.view_as_complex(out.contiguous()).permute(1, 3, 2, 0)  # (batch, out, time, freq)
        return torch.fft.irfft(out, n=self.n_fft, dim=-1)[..., :n_pitch] + self.bias


def with_pitch_fft(net: ChromaNet, min_kernel: int = 16) -> ChromaNet:
    """``net`` with every convolution whose pitch kernel is ``≥ min_kernel`` done by FFT (in place)."""
    for i, conv in enumerate(net.convs):
        if conv.kernel_size[1] >= min_kernel:
            net.convs[i] = PitchFFTConv(conv, N_BINS)
    return net
