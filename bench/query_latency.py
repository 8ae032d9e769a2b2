"""Query latency: ANN + re-ranking vs exhaustive subsequence DTW, by collection size.

    python bench/query_latency.py INDEX.db GROUND_TRUTH.csv [--copies 1 8] [--queries 20]

Larger collections are made from INDEX.db by adding its recordings' stored features again under new
ids, each copy transposed by another interval (chroma rotated by 5·k semitones: musically other
material, so the queries' answers stay unique). ``--copies N`` gives N times the audio hours; no
audio is decoded; the vector index is re-organised as ``index`` would for that size. Prints per-stage
mean latencies of ANN + re-ranking and of exhaustive DTW side by side, and the MRR of both.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from db.store import FILE_ROW, IndexStore
from retrieval.benchmark import read_ground_truth
from retrieval.evaluation import mean_reciprocal_rank
from retrieval.query import query


def replicate(source: Path, target: Path, copies: int) -> IndexStore:
    """A copy of the index at ``source`` whose recordings appear ``copies`` times, transposed."""
    shutil.copy(source, target)
    store = IndexStore.open(target)
    originals = store.recordings("indexed")
    for k in range(1, copies):
        shift = 5 * k % 12 or 1
        for rec in originals:
            row = {c: getattr(rec, c) for c in (*FILE_ROW, "model_id")}
            features = np.roll(store.features(rec.id), shift, axis=1)
            store.put_indexed({**row, "path": f"{rec.path}#transposed{shift}"}, features)
    store.checkpoint()
    store.reorganise()
    return store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("ground_truth", type=Path)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--json-out", type=Path, default=None, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    all_rows = read_ground_truth(args.ground_truth)
    rows = all_rows[:: max(1, len(all_rows) // args.queries)][: args.queries]
    print("| audio h | shingles | FAISS index | ANN ms | re-rank ms | total ms | exhaustive ms | speed-up | "
          "MRR ANN | MRR exhaustive |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for copies in args.copies:
            store = replicate(args.index, Path(tmp) / f"x{copies}.db", copies)
            hours = sum(r.duration or 0 for r in store.recordings("indexed")) / 3600
            query(store, rows[0]["query"], exhaustive=True)  # warm-up (numba, caches)
            ann, rerank, total, exact = [], [], [], []  # seconds per query
            fast_rankings, slow_rankings = [], []
            for row in rows:
                fast = query(store, row["query"])
                slow = query(store, row["query"], exhaustive=True)
                ann.append(fast.timings.ann)
                rerank.append(fast.timings.rerank)
                total.append(fast.timings.total)
                exact.append(slow.timings.total)
                fast_rankings.append([Path(m.path).stem for m in fast.matches])
                slow_rankings.append([Path(m.path).stem for m in slow.matches])
            relevant = [row["recording"] for row in rows]
            mrr_fast = mean_reciprocal_rank(fast_rankings, relevant)
            mrr_slow = mean_reciprocal_rank(slow_rankings, relevant)
            mean = statistics.mean
            print(f"| {hours:.1f} | {len(store.vectors())} | {store.factory} | {mean(ann) * 1000:.0f} | "
                  f"{mean(rerank) * 1000:.0f} | {mean(total) * 1000:.0f} | {mean(exact) * 1000:.0f} | "
                  f"{mean(exact) / mean(total):.1f}× | {mrr_fast:.3f} | {mrr_slow:.3f} |", flush=True)
            table.append({"audio_hours": hours, "shingles": len(store.vectors()), "factory": store.factory,
                          "ann_ms": mean(ann) * 1000, "rerank_ms": mean(rerank) * 1000,
                          "total_ms": mean(total) * 1000, "exhaustive_ms": mean(exact) * 1000,
                          "mrr_ann": mrr_fast, "mrr_exhaustive": mrr_slow, "queries": len(rows)})
            store.close()
    if args.json_out:
        args.json_out.write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
