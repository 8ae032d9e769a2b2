"""Recall of the exact nearest shingles, FAISS time and bytes per shingle, by index factory and nprobe.

    python bench/shingle_recall.py --source H.db --source B.db --themes H.csv [--queries 8]
                                   [--factories "IVF4096,Flat" "IVF4096,PQ16x4fs" …] [--nprobe 16 32 64]

The vectors: every stored shingle of the sources in all 12 transpositions (chroma rotated; ~100 h
from the two benchmark indexes). The queries: the shingles of all tempo variants of ``--queries``
themes of the CSV, as a query searches them; recall@64 is measured on every 20th of them against an
exact flat scan. Complements ``bench/query_latency.py`` (which measures whole queries and MRR):
docs/scaling.md, "Search at scale".
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from db.store import IndexStore
from models.retrieval_features import shingles
from retrieval.ground_truth import read_ground_truth
from retrieval.theme import load_theme
from retrieval.variants import query_variants

K = 64


def collection_vectors(sources: list[Path]) -> tuple[np.ndarray, IndexStore]:
    parts, store = [], None
    for path in sources:
        store = IndexStore.open(path, readonly=True)
        s = store.settings
        for _, features in store.iter_frames():
            quantised = np.round(features * 255) / 255  # as stored by new indexes
            parts += [shingles(np.roll(quantised, t, axis=1), s.shingle_length, s.shingle_hop)[1] for t in range(12)]
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32), store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, action="append", required=True)
    parser.add_argument("--themes", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--factories", nargs="+", default=["IVF4096,Flat", "IVF4096,PQ48x4fs", "IVF4096,PQ32x4fs",
                                                            "IVF4096,PQ16x4fs", "PCA64,IVF4096,PQ32x4fs"])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64])
    args = parser.parse_args(argv)
    x, store = collection_vectors(args.source)
    rows = read_ground_truth(args.themes)[:: max(1, len(read_ground_truth(args.themes)) // args.queries)]
    themes = []
    for row in rows[: args.queries]:
        variants = query_variants(load_theme(row["query"]), store.settings)
        themes.append(np.concatenate([shingles(v.features, store.settings.shingle_length, 1)[1] for v in variants]))
    sample = np.concatenate(themes)[::20]
    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(x)
    _, truth = exact.search(sample, K)
    del exact
    print(f"{len(x):,} shingles; {len(themes)} themes of ~{int(np.mean([len(t) for t in themes]))} query shingles")
    print("| factory | nprobe | bytes/shingle | recall@64 | FAISS ms per theme (p50) | build s |")
    print("|---|---:|---:|---:|---:|---:|")
    training = x[np.random.default_rng(0).choice(len(x), min(len(x), 160_000), replace=False)]
    for factory in args.factories:
        t0 = time.perf_counter()
        index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        index.train(training)
        index.add(x)
        built = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            faiss.write_index(index, f"{tmp}/i.faiss")
            size = os.path.getsize(f"{tmp}/i.faiss") / len(x)
        for nprobe in args.nprobe:
            faiss.extract_index_ivf(index).nprobe = nprobe
            _, found = index.search(sample, K)
            recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth, strict=True)])
            times = []
            for theme in themes:
                t0 = time.perf_counter()
                index.search(theme, K)
                times.append(time.perf_counter() - t0)
            print(f"| {factory} | {nprobe} | {size:.1f} | {recall:.3f} | {np.median(times) * 1000:.0f} | {built:.0f} |",
                  flush=True)
        del index
    return 0


if __name__ == "__main__":
    sys.exit(main())
