"""Polyphase filter-bank responses equal one projection per frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.complex_matmul import real_matmul_form
from models.polyphase import PolyphaseFilterBank


def test_real_matmul_form_equals_complex_product():
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.normal(size=(4, 7, 3)) + 1j * rng.normal(size=(4, 7, 3)))
    k = torch.from_numpy(rng.normal(size=(4, 3, 5)) + 1j * rng.normal(size=(4, 3, 5)))
    real = torch.view_as_real(x).flatten(-2) @ real_matmul_form(k)
    np.testing.assert_allclose(real.numpy(), torch.view_as_real(x @ k).flatten(-2).numpy(), atol=1e-12)


@pytest.mark.parametrize(("hop", "n_fft"), [(4, 256), (32, 1024), (128, 512), (256, 1024)])
def test_polyphase_equals_per_frame_projection(hop, n_fft):
    rng = np.random.default_rng(hop)
    kernels = rng.normal(size=(n_fft, 6)) + 1j * rng.normal(size=(n_fft, 6))
    bank = PolyphaseFilterBank(kernels, hop, torch.device("cpu"))
    first, n = bank.aligned(3 * bank.step + 5, 2 * bank.step)
    assert first == 3 * bank.step and n == 3 * bank.step  # whole blocks around the frames asked for
    x = rng.normal(size=(n - 1) * hop + n_fft).astype(np.float32)
    got = bank(torch.from_numpy(x)).numpy()
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), n_fft)[::hop]
    expected = np.abs(frames @ kernels)
    assert got.shape == expected.shape == (n, 6)
    assert np.abs(got - expected).max() < 1e-5 * expected.max()


def test_polyphase_rejects_partial_blocks():
    bank = PolyphaseFilterBank(np.ones((64, 2), dtype=complex), 8, torch.device("cpu"))
    with pytest.raises(ValueError, match="whole blocks"):
        bank(torch.zeros(64 + 8 * bank.step))
