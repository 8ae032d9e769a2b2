"""Frames and shingles: smoothing, downsampling, normalisation, shingle cutting, settings."""

from __future__ import annotations

import numpy as np
import pytest

from models.retrieval_features import (
    IndexSettings,
    SettingsMismatchError,
    convolved,
    hann_window,
    retrieval_features,
    shingles,
    unit_rows,
)

from .test_dtw import sparse_sequence


def test_retrieval_features_shape_norm_and_centre():
    chroma = np.zeros((12, 100), np.float32)
    chroma[4, 40:60] = 1.0
    f = retrieval_features(chroma, downsample=2, smoothing=5)
    assert f.shape == (50, 12)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-6)
    assert np.argmax(f[25]) == 4 and f[25, 4] == pytest.approx(1.0)
    np.testing.assert_allclose(f[0], np.full(12, 1 / np.sqrt(12)), atol=1e-6)  # silence → uniform
    with pytest.raises(ValueError):
        retrieval_features(np.zeros((13, 10)))


def test_window_smoothing_and_row_normalisation_equal_scipy_and_librosa():
    import librosa
    import scipy.ndimage
    import scipy.signal

    rng = np.random.default_rng(0)
    for n in (3, 7, 12, 43):
        np.testing.assert_allclose(hann_window(n), scipy.signal.get_window("hann", n), rtol=0, atol=1e-15)
    chroma = rng.random((12, 40)).astype(np.float32)
    for m in (1, 2, 3, 4, 5, 8, 60):  # odd and even lengths centre differently; longer than the signal too
        weights = rng.random(m)
        out = convolved(chroma, weights)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, scipy.ndimage.convolve1d(chroma, weights, axis=1, mode="constant"),
                                   rtol=1e-6, atol=1e-7)
    x = rng.normal(size=(50, 192)).astype(np.float32)
    x[3] = 0.0
    x[7] = 0.0
    x[7, 0] = 1e-40  # a norm below float32's smallest normal number: filled like a silent row, not (1, 0, …)
    expected = librosa.util.normalize(x, norm=2, axis=1, fill=True)
    assert np.array_equal(unit_rows(x), expected)
    assert np.allclose(unit_rows(x)[[3, 7]], 192**-0.5)


def test_shingles_cover_frames_and_pad_short_sequences():
    x = sparse_sequence(30)
    starts, vecs = shingles(x, length=8, hop=3)
    assert list(starts) == list(range(0, 23, 3)) and vecs.shape == (8, 96)
    expected = x[6:14].ravel() / np.linalg.norm(x[6:14].ravel())
    np.testing.assert_allclose(vecs[2], expected, atol=1e-6)
    starts, vecs = shingles(x[:5], length=8)
    assert list(starts) == [0] and np.allclose(vecs[0][60:], 0.0)


def test_settings_round_trip_and_mismatch_message():
    s = IndexSettings(shingle_length=10)
    assert IndexSettings.from_json(s.to_json()) == s and s.dim == 120 and s.rate == 25.0
    assert IndexSettings(downsample=2, smoothing=5).rate == 12.5
    with pytest.raises(SettingsMismatchError, match=r"shingle_length=10 \(asked 32\)"):
        IndexSettings().check_matches(s)
    IndexSettings(index_factory="IVF4,Flat").check_matches(IndexSettings())  # storage only
    with pytest.raises(ValueError):
        IndexSettings(downsample=0)
