"""Side-by-side retrieval benchmark: feature variants × search modes × theme renderings.

    python bench/compare_variants.py AUDIO_DIR GROUND_TRUTH.csv WORK_DIR [--variants …] [--modes …]

For every variant (a model id, ``*_mean`` for a fold average, or ``cens``) it builds (or
reuses) the index ``WORK_DIR/<variant>.db`` of AUDIO_DIR, runs every query of the ground truth in
each mode, prints a Markdown table (MRR, top-1, top-10, mean query time) and writes all metrics
to ``WORK_DIR/results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from db.store import IndexStore
from indexer.build import index_collection
from models.retrieval_features import COARSE_RATES, IndexSettings
from retrieval.ground_truth import evaluate, read_ground_truth

DEFAULT_VARIANTS = ["cens", "v1_ctc_train123valid4", "v2_ctc_train123valid4", "v2_linear_train123valid4",
                    "v2_strong_train123valid4", "v2_ctc_mean"]
MODES = {
    "ann": {},
    "exhaustive": {"exhaustive": True},
    "ann-synth": {"rendering": "synthesised"},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("ground_truth", type=Path)
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    parser.add_argument("--modes", nargs="+", default=["ann", "exhaustive"], choices=list(MODES))
    parser.add_argument("--program", type=int, default=None, help="GM program for synthesised themes")
    parser.add_argument("--every", type=int, default=1, help="run every N-th query only (for slow modes)")
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    rows = read_ground_truth(args.ground_truth)[:: args.every]
    results_path = args.work_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    print(f"{len(rows)} queries")
    print("| variant | mode | MRR | top-1 | top-10 | ms / query | index s |")
    print("|---|---|---|---|---|---|---|")
    for variant in args.variants:
        db = args.work_dir / f"{variant}.db"
        t0 = time.perf_counter()
        index_collection(args.audio_dir, db, IndexSettings(model_id=variant, **COARSE_RATES), progress=False)
        index_seconds = time.perf_counter() - t0
        store = IndexStore.open(db)
        for mode in args.modes:
            options = dict(MODES[mode], program=args.program) if mode == "ann-synth" else MODES[mode]
            metrics, _ = evaluate(store, rows, **options)
            metrics["index_seconds"] = index_seconds
            results[f"{variant}/{mode}" + (f"/every{args.every}" if args.every > 1 else "")] = metrics
            print(f"| {variant} | {mode} | {metrics['mrr']:.3f} | {metrics['top1']:.3f} | {metrics['top10']:.3f} | "
                  f"{metrics['mean_query_seconds'] * 1000:.0f} | {index_seconds:.0f} |", flush=True)
        store.close()
        results_path.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
