"""Query latency: ANN + re-ranking vs exhaustive subsequence DTW, by collection size.

    python bench/query_latency.py INDEX.db GROUND_TRUTH.csv [--copies 1 8] [--queries 20]

Larger collections are made from INDEX.db by replicating its recordings' stored features under new
ids (``--copies N``: N times the audio hours; no audio is decoded, the search cost is that of a
real collection of that size). Prints per-stage mean latencies for both modes side by side, and
whether the two agree on the top-1 recording.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from db.store import IndexStore
from retrieval.benchmark import read_ground_truth
from retrieval.query import query


def replicate(source: Path, target: Path, copies: int) -> IndexStore:
    """A copy of the index at ``source`` whose recordings appear ``copies`` times."""
    shutil.copy(source, target)
    store = IndexStore.open(target)
    originals = store.recordings("indexed")
    for k in range(1, copies):
        for rec in originals:
            row = {c: getattr(rec, c) for c in ("size", "mtime", "hash", "duration", "sample_rate", "channels",
                                                 "model_id")}
            store.put_indexed({**row, "path": f"{rec.path}#copy{k}"}, store.features(rec.id))
    store.checkpoint()
    return store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("ground_truth", type=Path)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--json-out", type=Path, default=None, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    rows = read_ground_truth(args.ground_truth)[:: max(1, len(read_ground_truth(args.ground_truth)) // args.queries)]
    print("| audio h | shingles | ANN ms | re-rank ms | total ms | exhaustive ms | speed-up | same top-1 |")
    print("|---|---|---|---|---|---|---|---|")
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for copies in args.copies:
            store = replicate(args.index, Path(tmp) / f"x{copies}.db", copies)
            hours = sum(r.duration or 0 for r in store.recordings("indexed")) / 3600
            query(store, rows[0]["query"], exhaustive=True)  # warm-up (numba, caches)
            ann, rerank, total, exact, agree = [], [], [], [], 0  # seconds per query
            for row in rows:
                fast = query(store, row["query"])
                slow = query(store, row["query"], exhaustive=True)
                ann.append(fast.timings.ann)
                rerank.append(fast.timings.rerank)
                total.append(fast.timings.total)
                exact.append(slow.timings.total)
                agree += fast.matches[0].path.split("#")[0] == slow.matches[0].path.split("#")[0]
            mean = statistics.mean
            print(f"| {hours:.1f} | {len(store.vectors())} | {mean(ann) * 1000:.0f} | {mean(rerank) * 1000:.0f} | "
                  f"{mean(total) * 1000:.0f} | {mean(exact) * 1000:.0f} | {mean(exact) / mean(total):.1f}× | "
                  f"{agree}/{len(rows)} |", flush=True)
            table.append({"audio_hours": hours, "shingles": len(store.vectors()), "ann_ms": mean(ann) * 1000,
                          "rerank_ms": mean(rerank) * 1000, "total_ms": mean(total) * 1000,
                          "exhaustive_ms": mean(exact) * 1000, "same_top1": agree, "queries": len(rows)})
            store.close()
    if args.json_out:
        args.json_out.write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
