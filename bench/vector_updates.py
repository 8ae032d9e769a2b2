"""Adding recordings to a flat vector index: one removal pass for all of them vs one per recording.

    python bench/vector_updates.py [--recordings 320] [--shingles 800] [--dim 192]

An index run adds every new recording's shingles to the FAISS index after removing any it held
before (a re-indexed file). On ``IDMap2,Flat`` each removal moves the vectors behind it, so one
removal per recording (the baseline, as the store did before) makes a run
quadratic; :meth:`db.vectors.VectorIndex.remove` now takes every recording in one pass and skips
it when none is there. Prints both, side by side, with their ratio; the defaults are the shape of
the H100 run's 11.4 h collection (docs/scaling.md) (320 files of ~2 min, 22,500 shingles per audio hour).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import faiss
import numpy as np

from db.vectors import FRAME_BITS, VectorIndex


def per_recording(vectors: np.ndarray, recordings: int) -> float:
    """Seconds to add ``recordings`` recordings, each after its own range removal (the baseline)."""
    index = VectorIndex.create("IDMap2,Flat", vectors.shape[1])
    starts = np.arange(len(vectors))
    t0 = time.perf_counter()
    for rid in range(1, recordings + 1):
        lo = rid << FRAME_BITS
        index.index.remove_ids(faiss.IDSelectorRange(lo, lo + (1 << FRAME_BITS)))
        index.add(rid, starts, vectors)
    return time.perf_counter() - t0


def one_pass(vectors: np.ndarray, recordings: int) -> float:
    """Seconds to add them after one :meth:`VectorIndex.remove` of all (as the store does)."""
    index = VectorIndex.create("IDMap2,Flat", vectors.shape[1])
    starts = np.arange(len(vectors))
    t0 = time.perf_counter()
    index.remove(list(range(1, recordings + 1)))
    for rid in range(1, recordings + 1):
        index.add(rid, starts, vectors)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=int, default=320)
    parser.add_argument("--shingles", type=int, default=800, help="shingles per recording")
    parser.add_argument("--dim", type=int, default=192)
    args = parser.parse_args(argv)
    vectors = np.random.default_rng(0).standard_normal((args.shingles, args.dim)).astype(np.float32)
    old, new = per_recording(vectors, args.recordings), one_pass(vectors, args.recordings)
    print(f"{platform.processor() or platform.machine()}; {args.recordings} recordings × {args.shingles} "
          f"shingles of {args.dim} (IDMap2,Flat, {args.recordings * args.shingles:,} vectors at the end)")
    print(f"one removal per recording: {old:.2f} s; one pass: {new:.2f} s; ratio {old / new:.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
