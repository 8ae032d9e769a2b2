"""Retrieval metrics: pure functions of rankings and ground truth (in the manner of mir_eval).

A *ranking* is the list of recording names a query returned, best first; ``relevant`` is the
name of the recording that contains the query. A relevant recording absent from a ranking (or
from the collection) counts as a miss: reciprocal rank 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.errors import ParameterError

__all__ = [
    "QueryOutcome",
    "hit_rate",
    "mean_reciprocal_rank",
    "paired_bootstrap",
    "rank_of",
    "reciprocal_rank",
    "span_overlap_rate",
    "spans_overlap",
    "summarize",
]


def rank_of(ranking: Sequence[str], relevant: str) -> int | None:
    """1-based rank of ``relevant`` in ``ranking``, or ``None`` if it is not there."""
    try:
        return list(ranking).index(relevant) + 1
    except ValueError:
        return None


def reciprocal_rank(ranking: Sequence[str], relevant: str) -> float:
    """``1 / rank`` of the relevant recording, 0 if it was not returned."""
    rank = rank_of(ranking, relevant)
    return 0.0 if rank is None else 1.0 / rank


def mean_reciprocal_rank(rankings: Sequence[Sequence[str]], relevant: Sequence[str]) -> float:
    """Mean of :func:`reciprocal_rank` over queries (0 for no queries)."""
    _check_lengths(rankings, relevant)
    return float(np.mean([reciprocal_rank(r, t) for r, t in zip(rankings, relevant, strict=True)])) if rankings else 0.0


def hit_rate(rankings: Sequence[Sequence[str]], relevant: Sequence[str], k: int) -> float:
    """Share of queries whose relevant recording is among the first ``k``."""
    if k < 1:
        raise ParameterError(f"k must be at least 1, got {k}")
    _check_lengths(rankings, relevant)
    if not rankings:
        return 0.0
    return float(np.mean([(rank_of(r, t) or k + 1) <= k for r, t in zip(rankings, relevant, strict=True)]))


def spans_overlap(found: tuple[float, float], truth: tuple[float, float]) -> bool:
    """Whether two time spans ``(start, end)`` in seconds share any time."""
    if found[1] < found[0] or truth[1] < truth[0]:
        raise ParameterError(f"a span must not end before it starts: {found}, {truth}")
    return found[0] < truth[1] and truth[0] < found[1]


def span_overlap_rate(found: Sequence[tuple[float, float]], truth: Sequence[tuple[float, float]]) -> float:
    """Share of ``(found, truth)`` span pairs that overlap (0 for none)."""
    _check_lengths(found, truth)
    return float(np.mean([spans_overlap(f, t) for f, t in zip(found, truth, strict=True)])) if found else 0.0


def paired_bootstrap(scores_a: Sequence[float], scores_b: Sequence[float], confidence: float = 0.95,
                     n_resamples: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``b − a`` over paired per-query scores, and its percentile bootstrap interval.

    ``scores_a``, ``scores_b``: ``(n_queries,)`` scores of two systems on the same queries (e.g.
    reciprocal ranks, so the mean difference is the MRR difference). The queries are resampled with
    replacement, the same draw for both systems, ``n_resamples`` times; the interval holds the middle
    ``confidence`` of the resampled mean differences. It answers how much a difference depends on
    which queries were asked — the "within noise" of a benchmark of a hundred queries.
    Returns ``(difference, low, high)``.
    """
    if len(scores_a) != len(scores_b) or not len(scores_a):
        raise ParameterError(f"need the same non-zero number of scores, got {len(scores_a)} and {len(scores_b)}")
    if not 0.0 < confidence < 1.0 or n_resamples < 1:
        raise ParameterError("confidence must lie in (0, 1) and n_resamples be at least 1")
    diff = np.asarray(scores_b, dtype=float) - np.asarray(scores_a, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(diff), size=(n_resamples, len(diff)))
    means = diff[draws].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(diff.mean()), float(low), float(high)


def _check_lengths(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ParameterError(f"got {len(a)} rankings but {len(b)} ground-truth entries")


@dataclass(frozen=True)
class QueryOutcome:
    """One evaluated query: what came back and what was right."""

    query_id: str
    relevant: str
    ranking: tuple[str, ...]
    top_span: tuple[float, float] | None = None  # time span of the first result
    true_span: tuple[float, float] | None = None  # where the query sounds in ``relevant``, if known
    seconds: float = 0.0
    in_collection: bool = True

    @property
    def rank(self) -> int | None:
        return rank_of(self.ranking, self.relevant)


def summarize(outcomes: Sequence[QueryOutcome]) -> dict:
    """MRR, top-1/5/10 hit rates, span overlap of correct top-1 hits, timing, and misses."""
    rankings = [o.ranking for o in outcomes]
    relevant = [o.relevant for o in outcomes]
    timed = [o for o in outcomes if o.rank == 1 and o.top_span is not None and o.true_span is not None]
    seconds = [o.seconds for o in outcomes]
    return {
        "queries": len(outcomes),
        "mrr": mean_reciprocal_rank(rankings, relevant),
        "top1": hit_rate(rankings, relevant, 1) if outcomes else 0.0,
        "top5": hit_rate(rankings, relevant, 5) if outcomes else 0.0,
        "top10": hit_rate(rankings, relevant, 10) if outcomes else 0.0,
        "top1_with_times": len(timed),
        "top1_span_overlap": span_overlap_rate([o.top_span for o in timed], [o.true_span for o in timed]),
        "not_in_collection": sum(not o.in_collection for o in outcomes),
        "mean_query_seconds": float(np.mean(seconds)) if seconds else 0.0,
        "median_query_seconds": float(np.median(seconds)) if seconds else 0.0,
    }
