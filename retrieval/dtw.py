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

__all__ = ["Alignment", "subsequence_align", "subsequence_matches", "subsequence_path"]

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
def _fill(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover (compiled)
    """Accumulated costs and chosen steps ``(N, M)`` of subsequence DTW over a cost matrix ``(N, M)``.

    Row 0 costs ``cost[0, m]`` (a match may start anywhere); each later cell takes the cheapest of
    ``D[n-1, m-1] + C``, ``D[n-2, m-1] + 2·C``, ``D[n-1, m-2] + C`` (the first on ties, as librosa);
    ``step`` holds which (0, 1, 2).
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
    return acc, step


@njit_cached(nogil=True)
def _backtrack(step: np.ndarray, end: int, path: np.ndarray) -> int:  # pragma: no cover (compiled)
    """Follow ``step`` from the last row's column ``end`` back to row 0; writes the visited
    ``(query frame, target frame)`` cells into ``path`` ``(≥ N + M, 2)`` from the end backwards and
    returns the index of the first one written (the path is ``path[first:]``, start first)."""
    i, j = step.shape[0] - 1, end
    k = len(path) - 1
    path[k, 0], path[k, 1] = i, j
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
        k -= 1
        path[k, 0], path[k, 1] = i, j
    return k


@njit_cached(nogil=True)
def _accumulate(cost: np.ndarray) -> tuple[float, int, int]:  # pragma: no cover (compiled)
    """Subsequence DTW of a cost matrix ``(N, M)``: ``(accumulated cost, start, end)`` of the best
    path (:func:`_fill`); the end is the first column of least cost in the last row."""
    acc, step = _fill(cost)
    n, m = cost.shape
    end = 0
    for j in range(1, m):
        if acc[n - 1, j] < acc[n - 1, end]:
            end = j
    path = np.empty((n + m, 2), np.int64)
    first = _backtrack(step, end, path)
    return acc[n - 1, end], max(path[first, 1], 0), end


@njit_cached(nogil=True)
def _separate(acc: np.ndarray, step: np.ndarray, min_similarity: float, limit: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover (compiled)
    """Non-overlapping matches, best first: repeatedly the end of least cost in the last row whose
    path (backtracked) overlaps no match taken before, while its similarity ``1 − cost / N``
    reaches ``min_similarity``, at most ``limit``. Returns similarities, starts and ends ``(K,)``.
    Once a match is taken, no end inside it is tried again."""
    n, m = acc.shape
    similarity = 1.0 - acc[n - 1] / n
    order = np.argsort(-similarity, kind="mergesort")
    taken = np.zeros(m, np.bool_)
    sims, starts, ends = np.empty(limit), np.empty(limit, np.int64), np.empty(limit, np.int64)
    path = np.empty((n + m, 2), np.int64)
    found = 0
    for end in order:
        if found == limit or not similarity[end] >= min_similarity:
            break
        if taken[end]:
            continue
        first = _backtrack(step, end, path)
        start = max(path[first, 1], 0)
        if taken[start : end + 1].any():
            continue
        taken[start : end + 1] = True
        sims[found], starts[found], ends[found] = similarity[end], start, end
        found += 1
    return sims[:found], starts[:found], ends[:found]


def _cost(query: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """Cosine distances ``(N, max(M, N))`` of L2-normalised frames (a target shorter than the query
    padded with silence after its end, so the roles stay as given); ``None`` where the target,
    shorter than half the query, cannot hold it."""
    n, m = len(query), len(target)
    if n == 0 or m == 0 or 2 * m < n:
        return None
    if m < n:  # librosa would swap the roles; silence (cost 1) after the end keeps them
        target = np.concatenate([target, np.zeros((n - m, target.shape[1]), target.dtype)])
    return _cosine_distances(np.ascontiguousarray(query, np.float32), np.ascontiguousarray(target.T, np.float32))


@njit_cached(nogil=True)
def _cosine_distances(query: np.ndarray, target_t: np.ndarray) -> np.ndarray:  # pragma: no cover (compiled)
    """``max(1 − query · target, 1e-9)`` ``(N, M)`` float64 for frames ``query (N, D)`` and
    ``target_t (D, M)`` (the target's frames as columns), products summed over ``D`` in order in
    float32, the frames' precision. One compiled pass instead of a BLAS product of a 12-long inner
    dimension, a subtraction, a maximum and a conversion (3–4× faster for themes against windows)."""
    n, d, m = query.shape[0], query.shape[1], target_t.shape[1]
    dot = np.zeros(m, np.float32)
    out = np.empty((n, m))
    for i in range(n):
        dot[:] = 0.0
        for c in range(d):
            q = query[i, c]
            for j in range(m):
                dot[j] += q * target_t[c, j]
        for j in range(m):
            out[i, j] = max(np.float32(1.0) - dot[j], np.float32(1e-9))
    return out


def subsequence_align(query: np.ndarray, target: np.ndarray) -> Alignment:
    """Align L2-normalised ``query (N, 12)`` to the best-matching part of ``target (M, 12)``.

    The cost of a frame pair is the cosine distance; ``similarity = 1 - accumulated cost / N``.
    A target shorter than half the query cannot hold it: similarity ``-inf``.
    """
    n, m = len(query), len(target)
    cost = _cost(query, target)
    if cost is None:
        return Alignment(float("-inf"), 0, max(m - 1, 0))
    total, start, end = _accumulate(cost)
    if not np.isfinite(total):
        return Alignment(float("-inf"), 0, max(m - 1, 0))
    return Alignment(float(1.0 - total / n), int(start), min(int(end), m - 1))


def subsequence_path(query: np.ndarray, target: np.ndarray) -> tuple[Alignment, np.ndarray]:
    """:func:`subsequence_align` with its warping path ``(K, 2)``: ``(query frame, target frame)``
    pairs from ``(0, start)`` to ``(N − 1, end)``, both non-decreasing (an empty path where the
    target cannot hold the query). Maps each frame of a theme to a time in the recording."""
    m = len(target)
    cost = _cost(query, target)
    if cost is None:
        return Alignment(float("-inf"), 0, max(m - 1, 0)), np.empty((0, 2), np.int64)
    acc, step = _fill(cost)
    n = len(query)
    end = int(np.argmin(acc[n - 1]))
    if not np.isfinite(acc[n - 1, end]):
        return Alignment(float("-inf"), 0, max(m - 1, 0)), np.empty((0, 2), np.int64)
    path = np.empty((n + cost.shape[1], 2), np.int64)
    first = _backtrack(step, end, path)
    path = path[first:]
    path[:, 1] = np.minimum(path[:, 1], m - 1)
    return Alignment(float(1.0 - acc[n - 1, end] / n), int(path[0, 1]), min(end, m - 1)), path


def subsequence_matches(query: np.ndarray, target: np.ndarray, min_similarity: float,
                        limit: int = 100) -> list[Alignment]:
    """Every match of ``query (N, 12)`` in ``target (M, 12)`` (L2-normalised rows) with similarity
    at least ``min_similarity``, best first, none overlapping another (at most ``limit``).

    The last row of the accumulated cost is the *matching function* (Müller, *Fundamentals of
    Music Processing*, § 7.2.3): its local minima are where the query ends in the target. The
    best end is taken, its path backtracked, and the next best end whose path stays clear of
    every span taken so far follows. The best one equals :func:`subsequence_align`'s.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    m = len(target)
    cost = _cost(query, target)
    if cost is None:
        return []
    acc, step = _fill(cost)
    sims, starts, ends = _separate(acc, step, float(min_similarity), int(limit))
    return [Alignment(float(s), int(a), min(int(b), m - 1)) for s, a, b in zip(sims, starts, ends, strict=True)]
