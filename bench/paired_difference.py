"""Is one retrieval run better than another, beyond the luck of the queries? A paired bootstrap.

    python bench/paired_difference.py A.json B.json [--resamples 10000]

A.json, B.json: ``cli.py evaluate GROUND_TRUTH.csv --json`` of two systems on the same queries
(paired by ``query_id``), or ``bench/query_latency.py --json-out`` files (their last collection).
Prints both MRRs, the difference B − A and its 95 % interval from
:func:`retrieval.evaluation.paired_bootstrap` over reciprocal ranks (a query outside the returned
ranking counts 0, as in the MRR).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from retrieval.evaluation import paired_bootstrap


def reciprocal_ranks(path: Path) -> dict[str, float]:
    """``query_id`` → reciprocal rank, from an ``evaluate --json`` or a ``query_latency.py --json-out`` file."""
    data = json.loads(path.read_text())
    if isinstance(data, list):  # query_latency.py: one row per collection
        return [row for row in data if "reciprocal_ranks" in row][-1]["reciprocal_ranks"]
    return {q["query_id"]: 1.0 / q["rank"] if q["rank"] else 0.0 for q in data["queries"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--resamples", type=int, default=10_000)
    args = parser.parse_args(argv)
    a, b = reciprocal_ranks(args.a), reciprocal_ranks(args.b)
    if a.keys() != b.keys():
        print(f"error: {args.a} and {args.b} hold different queries", file=sys.stderr)
        return 2
    ids = sorted(a)
    diff, low, high = paired_bootstrap([a[i] for i in ids], [b[i] for i in ids], n_resamples=args.resamples)
    mrr_a, mrr_b = (sum(x.values()) / len(ids) for x in (a, b))
    print(f"{len(ids)} queries: MRR A {mrr_a:.3f}, B {mrr_b:.3f}; "
          f"B − A {diff:+.3f}, 95 % interval [{low:+.3f}, {high:+.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
