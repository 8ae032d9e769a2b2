"""Subsequence DTW of a query against a longer sequence (librosa), with local tempo limits."""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

__all__ = ["Alignment", "subsequence_align"]

# Steps (query frames, target frames): the performance may run from half to twice the query's
# tempo locally. The (2, 1) step skips a query frame, so its cost counts twice: the accumulated
# cost is then a sum over all query frames, and cost / N a mean cosine distance.
_STEPS = np.array([[1, 1], [2, 1], [1, 2]], dtype=np.uint32)
_WEIGHTS = np.array([1.0, 2.0, 1.0])


@dataclass(frozen=True)
class Alignment:
    """Best match of a query in a target: mean cosine similarity and target frames [start, end]."""

    similarity: float
    start: int
    end: int


def subsequence_align(query: np.ndarray, target: np.ndarray) -> Alignment:
    """Align L2-normalised ``query (N, 12)`` to the best-matching part of ``target (M, 12)``.

    The cost of a frame pair is the cosine distance; ``similarity = 1 - accumulated cost / N``.
    A target shorter than half the query cannot hold it: similarity ``-inf``.
    """
    n, m = len(query), len(target)
    if n == 0 or m == 0 or 2 * m < n:
        return Alignment(float("-inf"), 0, max(m - 1, 0))
    if m < n:  # librosa would swap the roles; silence (cost 1) after the end keeps them
        target = np.concatenate([target, np.zeros((n - m, target.shape[1]), target.dtype)])
    cost = np.maximum(1.0 - query @ target.T, 1e-9).astype(np.float64)
    acc, path = librosa.sequence.dtw(
        C=cost, subseq=True, step_sizes_sigma=_STEPS, weights_mul=_WEIGHTS, backtrack=True
    )
    end = int(path[0, 1])
    return Alignment(float(1.0 - acc[-1, end] / n), int(path[-1, 1]), min(end, m - 1))
