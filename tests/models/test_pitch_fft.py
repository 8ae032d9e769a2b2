"""The FFT form of long pitch convolutions equals the direct convolution."""

from __future__ import annotations

import pytest
import torch

from models.network import SameConv2d
from models.pitch_fft import PitchFFTConv


@pytest.mark.parametrize(("k_time", "k_pitch"), [(3, 42), (1, 17), (3, 5), (2, 8)])
def test_pitch_fft_conv_equals_same_padded_conv(k_time, k_pitch):
    torch.manual_seed(k_time * 100 + k_pitch)
    conv = SameConv2d(5, 4, (k_time, k_pitch))
    x = torch.randn(3, 5, 23, 60)  # several batch items: their time axes must not mix
    with torch.inference_mode():
        expected = conv(x)
        got = PitchFFTConv(conv, 60)(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-5 * expected.abs().max()


def test_pitch_fft_conv_rejects_other_pitch_lengths():
    conv = PitchFFTConv(SameConv2d(2, 2, (3, 9)), 40)
    with pytest.raises(ValueError, match="expected 40 pitch bins"):
        conv(torch.zeros(1, 2, 5, 41))
