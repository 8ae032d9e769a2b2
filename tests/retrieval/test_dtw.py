"""Subsequence DTW: a stretched excerpt is found, and the result equals librosa's."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.dtw import subsequence_align


def sparse_sequence(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 12)) ** 8
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


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


def test_subsequence_dtw_equals_librosa_including_ties():
    import librosa

    from retrieval.dtw import _STEPS, _WEIGHTS, _cost

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 40))
        m = int(rng.integers(n, 120))
        query, target = (rng.random((k, 12)).astype(np.float32) for k in (n, m))
        if trial % 3 == 0:  # coarse values: many equal costs, so tie-breaking matters
            query, target = np.round(query, 1) + 0.01, np.round(target, 1) + 0.01
        query /= np.linalg.norm(query, axis=1, keepdims=True)
        target /= np.linalg.norm(target, axis=1, keepdims=True)
        cost = _cost(query, target)  # cosine distances, computed as search computes them
        np.testing.assert_allclose(cost, np.maximum(1.0 - query @ target.T, 1e-9), atol=1e-6)
        acc, path = librosa.sequence.dtw(C=cost, subseq=True, step_sizes_sigma=_STEPS, weights_mul=_WEIGHTS)
        ours = subsequence_align(query, target)
        assert (ours.similarity, ours.start, ours.end) == (1 - acc[-1, path[0, 1]] / n, path[-1, 1], path[0, 1])
