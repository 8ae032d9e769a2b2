"""How much of the large-collection gap exact similarities in the vote close (docs/scaling.md).

    python bench/exact_rescoring.py --source H.db H.csv --source B.db B.csv [--hours 100]
                                    [--queries 20] [--neighbours 256 1024] [--nprobe 64] [--work-dir DIR]
                                    [--distinct INDEX --distinct-hours 20] [--flat] [--exhaustive]
                                    [--verified 30 100] [--json-out OUT.json]

Builds the ``--hours`` collection of ``bench/query_latency.py`` (the sources' stored features in
transformed copies) and answers the same themes with the ANN stage as it is and with every FAISS
hit re-scored exactly (what search does by default on a lossy index): the hit's shingle gathered
from the stored ``uint8`` frames (the memory-mapped frames file) and its cosine similarity with
the query shingle computed, before the vote. Prints, per neighbour count, how often the right
recording is among the candidates, the MRR, and the ANN stage's time; exhaustive DTW on the same
themes gives the reference (``--exhaustive``), and ``--flat`` the best any FAISS index could give
the vote: each query shingle's exact nearest stored shingles, found by brute force.
``--verified`` compares pools of recordings verified along the theme before the candidates go to
DTW (``retrieval.search.VERIFIED``; a pool no larger than the candidates is no verification).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from query_latency import (  # the script beside this one (bench/ is on sys.path when run as a script)
    add_collection_arguments,
    grown_collection,
)
from report import keep_json, record  # the script beside this one (bench/ is on sys.path when run as a script)

import db.vectors
import retrieval.search
from db.store import IndexStore, StoredFrames
from models.retrieval_features import shingle_starts, unit_rows
from retrieval.evaluation import mean_reciprocal_rank, paired_bootstrap, reciprocal_rank
from retrieval.options import CANDIDATES
from retrieval.query import QueryOptions, query, query_many
from retrieval.search import candidates_for


def measure(store: IndexStore, rows: list[dict], neighbours: int, frames: StoredFrames | None) -> dict:
    """Candidate recall, MRR and ANN time of ``rows``' themes, the vote on exact similarities (from
    ``frames``) or, with ``None``, on FAISS's."""
    store.stored_frames = lambda: frames
    options = QueryOptions(neighbours=neighbours, top=candidates_for(len(store.vectors())))  # every one aligned
    query(store, rows[0]["query"], options)  # warm-up
    rankings, ann = [], []
    for row in rows:
        result = query(store, row["query"], options)
        rankings.append([Path(m.path).stem for m in result.matches])
        ann.append(result.timings.ann)
    relevant = [r["recording"] for r in rows]
    return {"neighbours": neighbours, "exact": frames is not None,
            "candidate_recall": float(np.mean([rel in rk for rel, rk in zip(relevant, rankings, strict=True)])),
            "mrr": mean_reciprocal_rank(rankings, relevant), "ann_ms_p50": float(np.median(ann) * 1000),
            "reciprocal_ranks": [reciprocal_rank(rk, rel) for rk, rel in zip(rankings, relevant, strict=True)]}


class FlatNeighbours:
    """The exact ``k`` nearest stored shingles of each query shingle, by brute force over the frames
    file (every recording's shingles rebuilt from its ``uint8`` frames, compared in chunks, the best
    kept by FAISS's ``ResultHeap``): what a perfect index would hand the vote."""

    lossy = False  # its similarities are exact already

    def __init__(self, frames: StoredFrames, length: int, hop: int, chunk: int = 40_000) -> None:
        self.frames, self.length, self.hop, self.chunk = frames, length, hop, chunk

    def __len__(self) -> int:
        return int(sum(len(shingle_starts(int(n), self.length, self.hop)) for n in self.frames.lengths if n))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(similarities, recording ids, start frames)``, each ``(n_queries, k)``, best first."""
        queries = np.ascontiguousarray(queries, np.float32)
        heap = faiss.ResultHeap(len(queries), k, keep_max=True)
        vectors, ids, held = [], [], 0
        for rid in np.flatnonzero(self.frames.lengths):
            start = self.frames.offsets[rid]
            x = self.frames.frames[start : start + self.frames.lengths[rid]].astype(np.float32)
            x = np.concatenate([x, np.zeros((max(0, self.length - len(x)), 12), np.float32)])
            starts = shingle_starts(len(x), self.length, self.hop)
            windows = np.lib.stride_tricks.sliding_window_view(x, (self.length, 12))[:, 0][starts]
            vectors.append(unit_rows(windows.reshape(len(starts), -1)))
            ids.append((np.int64(rid) << 32) | starts)
            held += len(starts)
            if held >= self.chunk or rid == np.flatnonzero(self.frames.lengths)[-1]:
                sims = queries @ np.concatenate(vectors).T
                heap.add_result(sims, np.ascontiguousarray(np.broadcast_to(np.concatenate(ids), sims.shape)))
                vectors, ids, held = [], [], 0
        heap.finalize()
        return heap.D, np.where(heap.I >= 0, heap.I >> 32, -1), heap.I & 0xFFFFFFFF


def measure_flat(store: IndexStore, rows: list[dict], neighbours: int) -> dict:
    """:func:`measure` with the exact nearest shingles (:class:`FlatNeighbours`), all themes in one batch."""
    settings, frames = store.settings, store.stored_frames()
    store.vectors = lambda: FlatNeighbours(frames, settings.shingle_length, settings.shingle_hop)
    t0 = time.perf_counter()
    top = candidates_for(len(store.vectors()))  # every candidate aligned is listed
    results = query_many(store, [r["query"] for r in rows], QueryOptions(neighbours=neighbours, top=top))
    rankings = [[Path(m.path).stem for m in result.matches] for result in results]
    relevant = [r["recording"] for r in rows]
    return {"neighbours": neighbours, "exact": True, "flat": True, "seconds": time.perf_counter() - t0,
            "candidate_recall": float(np.mean([rel in rk for rel, rk in zip(relevant, rankings, strict=True)])),
            "mrr": mean_reciprocal_rank(rankings, relevant)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=100.0)
    parser.add_argument("--neighbours", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--nprobe", type=int, default=None,
                        help="inverted lists visited per shingle (default: db.vectors.nprobe_for the lists)")
    parser.add_argument("--exhaustive", action="store_true", help="also exhaustive DTW on the same themes (slow)")
    parser.add_argument("--flat", action="store_true",
                        help="also the exact nearest shingles in the same vote (brute force: ~15 min at 1000 h)")
    parser.add_argument("--verified", type=int, nargs="+", default=[],
                        help="instead: the exact vote with these verification pools (30 = none), side by side")
    add_collection_arguments(parser)
    args = parser.parse_args(argv)
    if args.nprobe is not None:
        db.vectors.nprobe_for = lambda n_lists: args.nprobe
    store, rows = grown_collection(args)
    stats = store.stats()
    print(f"{stats['hours']:.1f} h, {stats['shingles']:,} shingles, {stats['index_factory']}; {len(rows)} themes")
    frames = store.stored_frames()
    if frames is None:
        raise SystemExit(f"{store.path}: no frames file (built by an older version): delete it and run again")
    table: list[dict] = []
    if args.verified:
        print("| neighbours | verified pool | right recording among candidates | MRR | ANN p50 ms |")
        print("|---:|---:|---:|---:|---:|")
        for k in args.neighbours:
            for pool in args.verified:
                retrieval.search.VERIFIED = pool
                r = {**measure(store, rows, k, frames), "verified": pool}
                record(table, r, f"| {k} | {pool} | {r['candidate_recall']:.2f} | {r['mrr']:.3f} | "
                                 f"{r['ann_ms_p50']:.0f} |", args.json_out)
        store.close()
        return 0
    print("| neighbours | similarities | right recording among candidates | MRR | ANN p50 ms |")
    print("|---:|---|---:|---:|---:|")
    for k in args.neighbours:
        for stored in (None, frames):
            r = measure(store, rows, k, stored)
            table.append(r)
            print(f"| {k} | {'exact' if r['exact'] else 'FAISS codes'} | {r['candidate_recall']:.2f} | "
                  f"{r['mrr']:.3f} | {r['ann_ms_p50']:.0f} |", flush=True)
            keep_json(args.json_out, table)
    if args.flat:
        for k in args.neighbours:
            r = measure_flat(store, rows, k)
            table.append(r)
            print(f"| {k} | exact nearest shingles (brute force) | {r['candidate_recall']:.2f} | {r['mrr']:.3f} | — |",
                  flush=True)
            keep_json(args.json_out, table)
    if args.exhaustive:
        search = next(r for r in table if r["exact"] and not r.get("flat"))  # the default pipeline's row
        slow: list[float] = []
        for i, row in enumerate(rows, 1):
            found = query(store, row["query"], exhaustive=True, top=CANDIDATES).matches  # ranked as deep as the search
            slow.append(reciprocal_rank([Path(m.path).stem for m in found], row["recording"]))
            print(f"\rexhaustive DTW: {i}/{len(rows)} themes", end="", file=sys.stderr, flush=True)
            keep_json(args.json_out, [*table, {"exhaustive_reciprocal_ranks": slow}])
        diff, low, high = paired_bootstrap(slow, search["reciprocal_ranks"])
        print(f"\nexhaustive DTW on the same themes: MRR {np.mean(slow):.3f}; the search (exact votes, "
              f"{search['neighbours']} neighbours) − exhaustive: {diff:+.3f} [{low:+.3f}, {high:+.3f}] (95 %)")
        table.append({"exhaustive_mrr": float(np.mean(slow)), "exhaustive_reciprocal_ranks": slow,
                      "search_minus_exhaustive": [diff, low, high]})
        keep_json(args.json_out, table)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
