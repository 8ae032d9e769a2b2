"""The device resampler (models.resample) against soxr, which the front end's pyramid was built on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.errors import ParameterError
from models.extractor import ChromaExtractor
from models.frontend import finish_hcqt, grid_boundaries, median_bin_db, normalize_frames
from models.hcqt import FastHCQT, n_hcqt_frames
from models.resample import Decimator, soxr_downsample

LENGTHS = [256, 257, 258, 259, 1000, 6561, 100_003]
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="no CUDA device on this machine: the GPU pyramid unchecked")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("n", LENGTHS)
def test_decimator_equals_soxr(factor, n, device):
    """Equal up to float32 rounding (an FFT's: relative to the block's peak, far below the HCQT's
    80 dB floor); a wrong delay, length rule or start-up would be off by 1e-3 to 1e-1."""
    y = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    ref = soxr_downsample(y, factor)
    got = Decimator(factor, device)(torch.from_numpy(y)).cpu().numpy()
    assert got.shape == ref.shape == (-(-n // factor),)
    assert np.abs(got - ref).max() < 5e-6 * np.abs(ref).max()


@pytest.mark.parametrize("factor", [2, 4])
def test_decimator_of_a_long_signal_spans_several_fft_groups(factor):
    decimator = Decimator(factor)
    n = 300 * decimator.step + 123  # more blocks than one FFT call takes
    y = np.random.default_rng(factor).standard_normal(n).astype(np.float32)
    ref = soxr_downsample(y, factor)
    got = decimator(torch.from_numpy(y)).numpy()
    assert got.shape == ref.shape and np.abs(got - ref).max() < 5e-6 * np.abs(ref).max()


@pytest.mark.parametrize("position", range(16))
def test_decimator_reproduces_soxr_start_up(position):
    """At 4:1 soxr treats odd samples at the very start differently (two-stage start-up): an
    impulse there must come out as soxr's, not as the shifted interior filter."""
    y = np.zeros(4096, dtype=np.float32)
    y[position] = 1.0
    ref = soxr_downsample(y, 4)
    assert np.abs(Decimator(4)(torch.from_numpy(y)).numpy() - ref).max() < 5e-6  # without it: up to 2.6e-2


def test_decimator_rejects_factor_one():
    with pytest.raises(ParameterError, match="factor"):
        Decimator(1)


def test_pyramid_on_device_equals_soxr_pyramid(recordings_dir):
    from models.audio import load_audio

    y, _ = load_audio(sorted(recordings_dir.glob("*.wav"))[0])
    soxr_levels = FastHCQT("cpu").pyramid(y)
    device_levels = FastHCQT("cpu", pyramid_on_device=True).pyramid(y)
    assert soxr_levels.keys() == device_levels.keys() and len(soxr_levels) > 8
    for key, level in soxr_levels.items():
        assert level.shape == device_levels[key].shape
        assert (level - device_levels[key]).abs().max() < 1e-5 * level.abs().max(), key


def test_features_with_device_pyramid_equal_soxr_ones(recordings_dir):
    """The whole extractor, pyramid as on a GPU vs soxr: chroma within 1e-4."""
    from models.audio import load_audio

    y, _ = load_audio(sorted(recordings_dir.glob("*.wav"))[-1])
    extractor = ChromaExtractor()
    ref = extractor.from_signal(y)
    extractor.hcqt = FastHCQT("cpu", pyramid_on_device=True)
    got = extractor.from_signal(y)
    assert np.abs(got.probabilities - ref.probabilities).max() < 1e-4
    assert np.abs(got.chroma - ref.chroma).max() < 1e-4


def test_the_device_front_end_keeps_every_tensor_on_its_device():
    """The GPU front end (pyramid, framing, projections, median binning, normalisation) run on
    PyTorch's ``meta`` device — shapes without data: a tensor left on the CPU anywhere on the way
    fails here as it would on a GPU, so the CUDA path is checked for placement without one."""
    y = np.random.default_rng(0).standard_normal(22050 * 20).astype(np.float32)
    hcqt = FastHCQT("meta")
    levels = hcqt.pyramid(y)
    assert {v.device.type for v in levels.values()} == {"meta"}
    assert {k: len(v) for k, v in levels.items()} == {k: len(v) for k, v in FastHCQT("cpu").pyramid(y).items()}
    n = n_hcqt_frames(len(y))
    mag = hcqt.frames(levels, 0, n)
    low, high = median_bin_db(mag, grid_boundaries(n))
    x = normalize_frames(finish_hcqt(low, high, 0.0))
    assert x.device.type == "meta" and x.shape == (len(grid_boundaries(n)) - 1, 216, 6)
