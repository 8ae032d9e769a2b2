"""Units of the retrieval path: features, shingles, subsequence DTW, themes."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.dtw import subsequence_align
from retrieval.features import FeatureSettings, SettingsMismatchError, retrieval_features, shingles
from retrieval.render import symbolic_chroma
from retrieval.theme import NoteEvent


def sparse_sequence(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 12)) ** 8
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


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


def test_shingles_cover_frames_and_pad_short_sequences():
    x = sparse_sequence(30)
    starts, vecs = shingles(x, length=8, hop=3)
    assert list(starts) == list(range(0, 23, 3)) and vecs.shape == (8, 96)
    expected = x[6:14].ravel() / np.linalg.norm(x[6:14].ravel())
    np.testing.assert_allclose(vecs[2], expected, atol=1e-6)
    starts, vecs = shingles(x[:5], length=8)
    assert list(starts) == [0] and np.allclose(vecs[0][60:], 0.0)


@pytest.mark.parametrize("stretch", [1, 2])
def test_subsequence_dtw_finds_a_stretched_excerpt(stretch):
    target = sparse_sequence(600, seed=1)
    query = target[200:240]
    performed = np.concatenate([target[:200], np.repeat(query, stretch, axis=0), target[240:]])
    a = subsequence_align(query, performed)
    assert a.similarity == pytest.approx(1.0, abs=1e-6)
    assert abs(a.start - 200) <= 1 and abs(a.end - (200 + 40 * stretch - 1)) <= 1
    noise = subsequence_align(sparse_sequence(40, seed=5), performed)
    assert noise.similarity < 0.8


def test_symbolic_chroma_marks_pitch_classes_for_their_duration():
    c = symbolic_chroma([NoteEvent(0.0, 0.4, 60), NoteEvent(0.2, 0.2, 64), NoteEvent(0.6, 0.2, 71)], rate=25)
    assert c.shape == (12, 20)
    assert c[0, 0] == pytest.approx(1.0) and c[0, 15] == 0.0
    assert c[0, 5] == pytest.approx(c[4, 5]) == pytest.approx(1 / np.sqrt(2))
    assert c[11, 15] == pytest.approx(1.0)
    np.testing.assert_allclose(c[:, 12], 1 / np.sqrt(12))  # the gap between notes


def test_settings_round_trip_and_mismatch_message():
    s = FeatureSettings(shingle_length=10)
    assert FeatureSettings.from_json(s.to_json()) == s and s.dim == 120 and s.rate == 12.5
    with pytest.raises(SettingsMismatchError, match=r"shingle_length=10 \(asked 16\)"):
        FeatureSettings().check_matches(s)
    FeatureSettings(index_factory="IVF4,Flat").check_matches(FeatureSettings())  # storage only
    with pytest.raises(ValueError):
        FeatureSettings(downsample=0)
