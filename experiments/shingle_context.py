"""Would longer shingles keep the right recording among the candidates of a large collection?

    python experiments/shingle_context.py --source HAUPT.db HAUPT.csv --source BACH.db BACH.csv \
        --hours 100 --distinct /tmp/corpus/index.db --work-dir /tmp/bench --lengths 16 24 32 [--neighbours 256]

In a thousand hours a 1.28 s shingle (16 frames at 12.5 Hz) of a theme has over a thousand closer
look-alikes than its own recording's (docs/scaling.md, "What limits the candidate stage"); a
longer shingle holds more of the theme's notes and so, perhaps, fewer look-alikes, at the price of
tempo errors that grow with its length. Each ``--lengths`` value is run through the whole search
(query shingles, vote, verification, DTW) with the *exact* nearest stored shingles of that length
(brute force over the frames file, ``bench/exact_rescoring.py``'s :class:`FlatNeighbours`), so
that no index build or code size enters the comparison. Reported per length: the right recording
among the candidates, MRR, and each theme's reciprocal rank (for paired differences).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exact_rescoring import FlatNeighbours  # noqa: E402
from query_latency import add_collection_arguments, grown_collection  # noqa: E402

from retrieval.evaluation import reciprocal_rank  # noqa: E402
from retrieval.options import CANDIDATES  # noqa: E402
from retrieval.query import QueryOptions, query_many  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=100.0)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 24, 32], help="shingle lengths in frames")
    parser.add_argument("--neighbours", type=int, default=256)
    add_collection_arguments(parser)
    args = parser.parse_args(argv)
    store, rows = grown_collection(args)
    frames, base = store.stored_frames(), store.settings
    relevant = [r["recording"] for r in rows]
    table = []
    print("| shingle frames | seconds | right recording among candidates | MRR | search s |")
    print("|---:|---:|---:|---:|---:|")
    for length in args.lengths:
        store.settings = replace(base, shingle_length=length)
        store.vectors = lambda length=length: FlatNeighbours(frames, length, base.shingle_hop)
        t0 = time.perf_counter()
        results = query_many(store, [r["query"] for r in rows],
                             QueryOptions(neighbours=args.neighbours, top=CANDIDATES))
        rankings = [[Path(m.path).stem for m in result.matches] for result in results]
        ranks = [reciprocal_rank(rk, rel) for rk, rel in zip(rankings, relevant, strict=True)]
        row = {"shingle_length": length, "seconds": time.perf_counter() - t0,
               "candidate_recall": float(np.mean([rel in rk for rel, rk in zip(relevant, rankings, strict=True)])),
               "mrr": float(np.mean(ranks)), "reciprocal_ranks": [float(r) for r in ranks]}
        table.append(row)
        print(f"| {length} | {length / base.rate:.2f} | {row['candidate_recall']:.3f} | {row['mrr']:.3f} | "
              f"{row['seconds']:.0f} |", flush=True)
        if args.json_out:
            args.json_out.write_text(json.dumps(table, indent=2))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
