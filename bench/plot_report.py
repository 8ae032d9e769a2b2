"""Plots for docs/benchmarks.md: MRR per variant and query time vs collection size.

    python bench/plot_report.py OUT.png --results NAME=results.json … [--latency latency.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--results", nargs="+", default=[], help="BENCHMARK=results.json of compare_variants.py")
    parser.add_argument("--latency", type=Path, default=None, help="JSON of query_latency.py --json-out")
    args = parser.parse_args(argv)
    panels = len(args.results) + (args.latency is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), constrained_layout=True, squeeze=False)
    for ax, spec in zip(axes[0], args.results, strict=False):
        name, path = spec.split("=", 1)
        results = json.loads(Path(path).read_text())
        keys = sorted(results, key=lambda k: results[k]["mrr"])
        ax.barh(keys, [results[k]["mrr"] for k in keys], color="tab:blue")
        ax.set_xlim(0, 1)
        ax.set_xlabel("MRR")
        ax.set_title(f"{name}: MRR per variant / mode", fontsize=10)
        ax.tick_params(axis="y", labelsize=7)
    if args.latency is not None:
        ax = axes[0][-1]
        rows = json.loads(args.latency.read_text())
        hours = [r["audio_hours"] for r in rows]
        ax.plot(hours, [r["total_ms"]["p50"] for r in rows], "o-", label="ANN + re-ranking, p50")
        ax.plot(hours, [r["total_ms"]["p95"] for r in rows], "s--", label="p95")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("collection (audio hours)")
        ax.set_ylabel("ms per query")
        ax.set_title("query time vs collection size", fontsize=10)
        ax.legend()
    fig.savefig(args.out, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
