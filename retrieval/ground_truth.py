"""Run the queries of a ground-truth CSV (``../shared/benchmarks/*/ground_truth.csv`` format).

Columns ``query_id``, ``query`` (score path relative to the CSV), ``recording`` (file stem of the
relevant recording), ``start_s``, ``end_s`` (may be empty).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from models.errors import ParameterError
from retrieval.evaluation import QueryOutcome, summarize
from retrieval.query import QueryOptions, query_many

__all__ = ["BATCH", "evaluate", "read_ground_truth"]

BATCH = 16
"""Themes searched together by :func:`evaluate` (one FAISS search, re-ranking in parallel)."""


def read_ground_truth(path: str | Path) -> list[dict]:
    """Rows of a ground-truth CSV with ``query`` resolved against the CSV's folder."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"{path}: no such ground-truth file")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"query_id", "query", "recording"} - set(rows[0] if rows else {})
    if missing:
        raise ParameterError(f"{path}: not a ground-truth CSV (missing columns {sorted(missing)})")
    for row in rows:
        row["query"] = str(path.parent / row["query"])
    return rows


def _span(row: dict) -> tuple[float, float] | None:
    try:
        return float(row["start_s"]), float(row["end_s"])
    except (KeyError, TypeError, ValueError):
        return None


def evaluate(
    collection, ground_truth: str | Path | list[dict], options: QueryOptions | None = None, *,
    progress: Callable[[int], None] | None = None, batch: int = BATCH, **overrides,
) -> tuple[dict, list[dict]]:
    """Run every query of a ground truth against an index and measure the ranking (``cli.py evaluate``).

    Parameters
    ----------
    collection : db.IndexStore
        An open index (or anything with :class:`retrieval.search.SearchableIndex`'s methods).
    ground_truth : str, Path or list of dict
        A ground-truth CSV (columns ``query_id``, ``query``, ``recording``, optional ``start_s``,
        ``end_s``) or its rows as :func:`read_ground_truth` returns them.
    options : QueryOptions, optional
        How to search (default :class:`retrieval.options.QueryOptions`); keyword ``overrides``
        replace its fields.
    progress : callable, optional
        Called with the number of queries done after each batch.
    batch : int
        Themes searched together (:func:`retrieval.query.query_many`); a query's seconds are its
        batch's share.

    Returns
    -------
    metrics : dict
        :func:`retrieval.evaluation.summarize`: ``mrr``, ``top1``, ``top5``, ``top10``, span
        overlap, mean seconds per query, queries whose recording is not in the index.
    table : list of dict
        One row per query: its ``rank`` (``None`` beyond the results), the top match's recording,
        ``score``, ``start``, ``end``, the ground truth's ``true_start``, ``seconds``.

    Raises
    ------
    models.errors.ParameterError
        A missing or malformed CSV, or options out of range.
    retrieval.theme.ThemeError
        A query's score cannot be read.
    """
    rows = read_ground_truth(ground_truth) if isinstance(ground_truth, str | Path) else ground_truth
    options = replace(options or QueryOptions(), **overrides)
    names = {r.name for r in collection.recordings("indexed")}
    outcomes, table = [], []
    results = []
    for first in range(0, len(rows), batch):
        chunk = rows[first : first + batch]
        t0 = time.perf_counter()
        found = query_many(collection, [row["query"] for row in chunk], options)
        share = (time.perf_counter() - t0) / len(chunk)
        results += [(result, share) for result in found]
        if progress:
            progress(len(results))
    for row, (result, seconds) in zip(rows, results, strict=True):
        ranking = tuple(Path(m.path).stem for m in result.matches)
        first = result.matches[0] if result.matches else None
        outcome = QueryOutcome(
            query_id=row["query_id"], relevant=row["recording"], ranking=ranking,
            top_span=(first.start, first.end) if first else None, true_span=_span(row), seconds=seconds,
            in_collection=row["recording"] in names,
        )
        outcomes.append(outcome)
        table.append({
            "query_id": outcome.query_id, "relevant": outcome.relevant, "rank": outcome.rank,
            "top1": ranking[0] if ranking else None, "score": first.score if first else None,
            "confident": first.confident if first else False,
            "start": first.start if first else None, "end": first.end if first else None,
            "true_start": outcome.true_span[0] if outcome.true_span else None,
            "seconds": round(seconds, 4), "in_collection": outcome.in_collection,
        })
    return summarize(outcomes), table
