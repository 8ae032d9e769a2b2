"""Subsequence DTW of a query against a longer sequence, with local tempo limits.

The recursion, step sizes, weights and tie-breaking are those of
``librosa.sequence.dtw(C, subseq=True, step_sizes_sigma=_STEPS, weights_mul=_WEIGHTS)``; the
accumulation and backtracking are one compiled loop (:func:`_accumulate`) that keeps only what
the alignment needs and releases the GIL, so re-ranking runs candidates on parallel threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retrieval.jit import njit_cached

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


@njit_cached(nogil=True)
def _accumulate(cost: np.ndarray) -> tuple[float, int, int]:  # pragma: no cover (compiled)
    """Subsequence DTW of a cost matrix ``(N, M)``: ``(accumulated cost, start, end)`` of the best path.

    Row 0 costs ``cost[0, m]`` (a match may start anywhere); each later cell takes the cheapest of
    ``D[n-1, m-1] + C``, ``D[n-2, m-1] + 2·C``, ``D[n-1, m-2] + C`` (the first on ties, as librosa);
    the end is the first column of least cost in the last row; backtracking follows the steps to row 0.
    """
    n, m = cost.shape
    acc = np.full((n, m), np.inf)
    step = np.zeros((n, m), np.int8)
    acc[0] = cost[0]
    for i in range(1, n):
        for j in range(1, m):
            c = cost[i, j]
            best = acc[i - 1, j - 1] + c
            choice = 0
            if i >= 2:
                v = acc[i - 2, j - 1] + 2.0 * c
                if v < best:
                    best, choice = v, 1
            if j >= 2:
                v = acc[i - 1, j - 2] + c
                if v < best:
                    best, choice = v, 2
            acc[i, j] = best
            step[i, j] = choice
    end = 0
    for j in range(1, m):
        if acc[n - 1, j] < acc[n - 1, end]:
            end = j
    i, j = n - 1, end
    while i > 0:
        s = step[i, j]
        if s == 0:
            i, j = i - 1, j - 1
        elif s == 1:
            i, j = i - 2, j - 1
        else:
            i, j = i - 1, j - 2
        if i < 0 or j < 0:
            break
    return acc[n - 1, end], max(j, 0), end


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
    total, start, end = _accumulate(cost)
    if not np.isfinite(total):
        return Alignment(float("-inf"), 0, max(m - 1, 0))
    return Alignment(float(1.0 - total / n), int(start), min(int(end), m - 1))
