"""How well exhaustive DTW could do in a collection too large to run it: the right recording's
rank bounded from below, from a few whole-recording alignments per theme (docs/scaling.md).

    python bench/exhaustive_rank.py --source H.db H.csv --source B.db B.csv --hours 1000
                                    [--queries 20] [--candidates 100] [--distinct INDEX --distinct-hours 20]
                                    [--work-dir DIR] [--json-out OUT.json]

Exhaustive DTW aligns every tempo variant of a theme with every whole recording; at 1000 h that
takes hours per theme. But a recording that beats the right one under exhaustive DTW can be
*found* cheaply: the ANN stage's candidates. For each theme this script aligns the variants with
the whole right recording and with each of the ANN's ``--candidates`` recordings (exactly as
``query --exhaustive`` does), and counts the candidates that score above the right one: the right
recording's exhaustive rank is at least one more than that count, so ``1 / (1 + count)`` bounds
its reciprocal rank from above (recordings outside the candidates can only push it further down).
Printed beside the ANN pipeline's own MRR and candidate recall on the same themes: where the
bound is below a goal, no candidate stage can reach the goal with this re-ranking.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from query_latency import (  # the script beside this one (bench/ is on sys.path when run as a script)
    add_collection_arguments,
    grown_collection,
)
from report import keep_json  # the script beside this one (bench/ is on sys.path when run as a script)

from db.store import IndexStore
from retrieval.query import QueryOptions, query


@dataclass
class Subset:
    """A collection seen through a few of its recordings: what ``query --exhaustive`` aligns with."""

    store: IndexStore
    ids: set[int]

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def recordings(self, status: str | None = None) -> list:
        return [r for r in self.store.recordings(status) if r.id in self.ids]


def theme_bound(store: IndexStore, row: dict, by_stem: dict[str, int], candidates: int) -> dict:
    """For one ground-truth ``row``: the ANN pipeline's rank of the right recording (``None``: not
    listed), and how many of its candidates out-score the right recording under exhaustive DTW."""
    result = query(store, row["query"], QueryOptions(candidates=candidates, top=candidates))
    stems = [Path(m.path).stem for m in result.matches]
    right = by_stem[row["recording"]]
    ids = {by_stem[s] for s in stems} | {right}
    exact = query(Subset(store, ids), row["query"], QueryOptions(exhaustive=True, top=len(ids)))
    scores = {Path(m.path).stem: m.score for m in exact.matches}
    above = sum(score > scores[row["recording"]] for stem, score in scores.items() if stem != row["recording"])
    return {"recording": row["recording"], "ann_rank": stems.index(row["recording"]) + 1 if row["recording"] in stems
            else None, "right_exhaustive_score": scores[row["recording"]], "candidates_above": int(above)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=1000.0)
    parser.add_argument("--candidates", type=int, default=100, help="ANN candidates aligned exhaustively")
    add_collection_arguments(parser)
    args = parser.parse_args(argv)
    store, rows = grown_collection(args)
    stats = store.stats()
    by_stem = {Path(r.path).stem: r.id for r in store.recordings("indexed")}
    t0 = time.perf_counter()
    themes = [theme_bound(store, row, by_stem, args.candidates) for row in rows]
    ann_rr = [1.0 / t["ann_rank"] if t["ann_rank"] else 0.0 for t in themes]
    bound_rr = [1.0 / (1 + t["candidates_above"]) for t in themes]
    summary = {
        "hours": stats["hours"], "shingles": stats["shingles"], "factory": stats["index_factory"], "themes": len(rows),
        "candidates": args.candidates, "ann_mrr": float(np.mean(ann_rr)),
        "ann_candidate_recall": float(np.mean([t["ann_rank"] is not None for t in themes])),
        "exhaustive_mrr_at_most": float(np.mean(bound_rr)),
        "exhaustive_top30_at_most": float(np.mean([t["candidates_above"] < 30 for t in themes])),
        "ann_top30": float(np.mean([t["ann_rank"] is not None and t["ann_rank"] <= 30 for t in themes])),
        "seconds": time.perf_counter() - t0, "per_theme": themes,
    }
    print(f"{stats['hours']:.1f} h, {stats['shingles']:,} shingles, {stats['index_factory']}; {len(rows)} themes, "
          f"{args.candidates} candidates")
    print(f"ANN + re-rank of {args.candidates} candidates: MRR {summary['ann_mrr']:.3f}, right recording among "
          f"them {summary['ann_candidate_recall']:.2f}, in the top 30 {summary['ann_top30']:.2f}")
    print(f"exhaustive DTW: MRR at most {summary['exhaustive_mrr_at_most']:.3f}, right recording in its top 30 "
          f"for at most {summary['exhaustive_top30_at_most']:.2f} of the themes")
    keep_json(args.json_out, summary)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
