"""Does a coarse scan of every recording propose the right one where the shingle vote does not?

    python experiments/coarse_scan.py --source HAUPT.db HAUPT.csv --source BACH.db BACH.csv \
        --hours 100 --distinct /tmp/corpus/index.db --work-dir /tmp/bench [--factor 4]

Each recording's stored frames are averaged ``factor`` at a time (12.5 Hz → 3.1 Hz at 4) and
unit-normalised; each tempo variant of a theme, likewise, is slid along every recording (mean
cosine on the straight diagonal, every coarse position) and a recording scores its best place over
the variants. Reported: where the right recording ranks by this scan alone (among the first 30 /
100 / 300, MRR) beside the default search's candidates and MRR, and the scan's time per theme.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from query_latency import add_collection_arguments, grown_collection  # noqa: E402

from db.store import FEATURE_STEP, IndexStore  # noqa: E402
from retrieval.options import TEMPO_SCALES  # noqa: E402
from retrieval.query import QueryOptions, _extractor_for, query  # noqa: E402
from retrieval.theme import load_theme  # noqa: E402
from retrieval.variants import query_variants, rendering_for  # noqa: E402


def coarse(frames: np.ndarray, factor: int) -> np.ndarray:
    """``(N, 12)`` frames averaged ``factor`` at a time and unit-normalised: ``(N // factor, 12)``."""
    n = len(frames) // factor * factor
    pooled = frames[:n].reshape(-1, factor, 12).mean(axis=1)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)


def coarse_collection(store: IndexStore, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every recording's coarse frames back to back ``(C, 12)`` float32, each coarse frame's
    recording id ``(C,)``, and the recording ids in order."""
    stored = store.stored_frames()
    parts, owners, ids = [], [], []
    for rid in np.flatnonzero(stored.lengths):
        start, length = stored.offsets[rid], stored.lengths[rid]
        part = coarse(stored.frames[start : start + length].astype(np.float32) * np.float32(FEATURE_STEP), factor)
        parts.append(part.astype(np.float32))
        owners.append(np.full(len(part), rid, np.int64))
        ids.append(rid)
    return np.concatenate(parts), np.concatenate(owners), np.array(ids)


def scan(frames: np.ndarray, owners: np.ndarray, variants: list[np.ndarray], n_ids: int) -> np.ndarray:
    """Best diagonal mean cosine per recording id ``(n_ids,)`` over the coarse ``variants``."""
    best = np.full(n_ids, -1.0, np.float32)
    for v in variants:
        products = frames @ v.T  # (C, L)
        n = len(frames) - len(v) + 1
        diagonal = np.zeros(n, np.float32)
        for i in range(len(v)):
            diagonal += products[i : i + n, i]
        diagonal /= len(v)
        same = owners[: n] == owners[len(v) - 1 :]  # the place lies within one recording
        diagonal[~same] = -1.0
        np.maximum.at(best, owners[:n], diagonal)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=100.0)
    parser.add_argument("--factor", type=int, default=4)
    add_collection_arguments(parser)
    args = parser.parse_args()
    store, rows = grown_collection(args)
    t0 = time.perf_counter()
    frames, owners, ids = coarse_collection(store, args.factor)
    print(f"{store.stats()['hours']:.1f} h: {len(frames):,} coarse frames in {time.perf_counter() - t0:.1f} s")
    by_stem = {Path(r.path).stem: r.id for r in store.recordings("indexed")}
    n_ids = int(owners.max()) + 1
    out = []
    for row in rows:
        theme = load_theme(row["query"])
        rendering = rendering_for(theme, "auto")
        extractor = _extractor_for(store.settings, "cpu") if rendering == "synthesised" else None
        variants = query_variants(theme, store.settings, rendering=rendering, tempo_scales=TEMPO_SCALES,
                                  extractor=extractor)
        t0 = time.perf_counter()
        best = scan(frames, owners, [coarse(v.features, args.factor) for v in variants
                                     if len(v.features) >= 2 * args.factor], n_ids)
        seconds = time.perf_counter() - t0
        right = by_stem[row["recording"]]
        rank = int(np.sum(best[ids] > best[right])) + 1
        result = query(store, theme, QueryOptions())
        ranked = [m.recording_id for m in result.matches]
        search_rank = ranked.index(right) + 1 if right in ranked else None
        out.append({"query_id": row["query_id"], "scan_rank": rank, "scan_s": seconds, "search_rank": search_rank})
        print(f"{row['query_id']}: scan rank {rank}, search rank {search_rank}, scan {seconds * 1000:.0f} ms",
              flush=True)
    ranks = np.array([o["scan_rank"] for o in out])
    search = [o["search_rank"] for o in out]
    summary = {"themes": len(out), "factor": args.factor,
               "scan_top30": float(np.mean(ranks <= 30)), "scan_top100": float(np.mean(ranks <= 100)),
               "scan_top300": float(np.mean(ranks <= 300)), "scan_mrr": float(np.mean(1 / ranks)),
               "search_mrr": float(np.mean([1 / r if r else 0 for r in search])),
               "search_found": float(np.mean([r is not None for r in search])),
               "scan_ms_p50": float(np.median([o["scan_s"] for o in out]) * 1000)}
    print(json.dumps(summary, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps({"summary": summary, "themes": out}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
