"""Write the rows of the hauptstimme ground truth whose works belong to one split, as a new CSV.

    python bench/split_ground_truth.py report OUT.csv [--ground-truth ../shared/benchmarks/hauptstimme/ground_truth.csv]

Query paths are written absolute, so the CSV can live anywhere (``cli.py evaluate OUT.csv``).
The splits are :data:`training.pairs.HAUPTSTIMME_SPLITS` (whole works).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from report import write_csv  # the script beside this one (bench/ is on sys.path when run as a script)

from training.pairs import HAUPTSTIMME_SPLITS, hauptstimme_work


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("split", choices=sorted(HAUPTSTIMME_SPLITS))
    parser.add_argument("out", type=Path)
    parser.add_argument("--ground-truth", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/benchmarks/hauptstimme/ground_truth.csv")
    args = parser.parse_args(argv)
    with open(args.ground_truth, newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if hauptstimme_work(r["recording"]) in HAUPTSTIMME_SPLITS[args.split]]
        fields = reader.fieldnames
    for row in rows:
        row["query"] = str((args.ground_truth.parent / row["query"]).resolve())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(args.out, fields, rows)
    print(f"{len(rows)} queries of the {args.split} works ({', '.join(HAUPTSTIMME_SPLITS[args.split])}) → {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
