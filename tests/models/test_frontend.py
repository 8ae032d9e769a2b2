"""Front-end building blocks, without reference data."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from models.frontend import AMIN, finish_hcqt, grid_boundaries, median_bin_db, normalize_hcqt
from models.hcqt import FastHCQT, hcqt_reference
from models.tones import harmonic_tones


def test_order_statistic_binning_equals_librosa_sync_median():
    rng = np.random.default_rng(1)
    mag = (rng.random((6, 216, 500)) ** 8).astype(np.float32)  # wide dynamic range: clipping matters
    mag[:, :, 100:130] = 0.0  # silence below AMIN
    bounds = grid_boundaries(mag.shape[-1])
    expected = librosa.util.sync(
        librosa.amplitude_to_db(mag, ref=np.max) / 80 + 1, list(bounds), aggregate=np.median, pad=False, axis=-1
    )
    low, high = median_bin_db(torch.from_numpy(mag).permute(2, 0, 1), bounds)  # time first
    got = finish_hcqt(low, high, 20 * np.log10(max(AMIN, mag.max()))).permute(1, 2, 0).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5


def test_order_statistics_for_every_group_size():
    rng = np.random.default_rng(4)
    sizes = [1, 2, 3, 4, 5, 6, 4, 3, 2, 1, 7]
    mag = rng.random((sum(sizes), 9)).astype(np.float32) + 0.01
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    low, high = median_bin_db(torch.from_numpy(mag), bounds)
    for g, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        ordered = np.sort(mag[a:b], axis=0)
        np.testing.assert_allclose(low[g].numpy(), 20 * np.log10(ordered[(b - a - 1) // 2]), rtol=1e-6)
        np.testing.assert_allclose(high[g].numpy(), 20 * np.log10(ordered[(b - a) // 2]), rtol=1e-6)


def test_grid_groups_hop_frames_at_25_hz():
    bounds = grid_boundaries(862)  # 10 s of hop frames
    assert bounds[0] == 0 and bounds[-1] == 862
    assert set(np.diff(bounds)) <= {3, 4}
    assert len(bounds) - 1 == 250  # 0 .. 9.96 s at 0.04 s, plus the frames up to 10.0 s


def test_normalize_matches_librosa_and_fills_silent_frames():
    rng = np.random.default_rng(2)
    hcqt = rng.random((6, 216, 20)).astype(np.float32)
    hcqt[:, :, 5] = 0.0
    expected = librosa.util.normalize(hcqt.T, norm=2, fill=True, axis=1)
    np.testing.assert_allclose(normalize_hcqt(hcqt), expected, atol=1e-6)


def test_fast_hcqt_matches_six_librosa_cqts():
    y = harmonic_tones([45, 57, 64, 69, 76, 88], note_seconds=0.4)
    ref = hcqt_reference(y)
    fast = FastHCQT()(y).numpy()
    assert fast.shape == ref.shape
    # compare as the front end sees them: dB, clipped 80 dB below the peak
    to_db = lambda m: np.maximum(20 * np.log10(np.maximum(m, AMIN)), 20 * np.log10(ref.max()) - 80)  # noqa: E731
    assert np.abs(to_db(fast) - to_db(ref)).max() / 80 < 1e-3


def test_fast_hcqt_rejects_too_short_signal():
    with pytest.raises(ValueError, match="too short"):
        FastHCQT()(np.zeros(100, dtype=np.float32))
