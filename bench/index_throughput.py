"""Indexing throughput and index size per audio hour.

    python bench/index_throughput.py AUDIO_DIR [--workers 1 2] [--work-dir DIR]

Indexes AUDIO_DIR from scratch once per worker count and prints a Markdown table: files, hours,
wall seconds, × real time, files/s, SQLite and FAISS size per audio hour.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from indexer.build import index_collection


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    print("| workers | files | audio h | wall s | × real time | files/s | SQLite MB/h | FAISS MB/h |")
    print("|---|---|---|---|---|---|---|---|")
    for workers in args.workers:
        with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
            db = Path(tmp) / "bench.db"
            report = index_collection(args.audio_dir, db, workers=workers, progress=False)
            hours = report.audio_seconds / 3600
            faiss_mb = db.with_name(db.name + ".faiss").stat().st_size / 1e6
            print(f"| {workers} | {len(report.added)} | {hours:.2f} | {report.seconds:.0f} | "
                  f"{report.audio_seconds / report.seconds:.0f} | {len(report.added) / report.seconds:.2f} | "
                  f"{db.stat().st_size / 1e6 / hours:.1f} | {faiss_mb / hours:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
