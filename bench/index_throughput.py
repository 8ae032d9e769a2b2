"""Indexing throughput and index size per audio hour, by worker count and device.

    python bench/index_throughput.py AUDIO_DIR [--workers 1 2] [--device cpu|cuda] [--copies N]
                                     [--ray [ADDRESS]] [--work-dir DIR] [--json-out OUT.json]

Indexes AUDIO_DIR from scratch once per worker count (end to end: hashing, decoding the
compressed files, deep chroma, SQLite and FAISS) and prints a Markdown table: files, hours, wall
seconds, × real time, files/s, SQLite and FAISS size per audio hour. ``--copies N`` indexes every
file N times (symbolic links under other names) to make a larger collection from a small one.
``--ray`` extracts on Ray as ``index --ray`` does (a local Ray started here, or the cluster at
ADDRESS; ``--workers`` is then ignored by the indexer: Ray schedules one task per file on its CPUs).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

from report import record  # the script beside this one (bench/ is on sys.path when run as a script)

from indexer.build import index_collection
from indexer.walk import find_audio


def linked_copies(audio_dir: Path, copies: int, target: Path) -> Path:
    """``target`` holding ``copies`` symbolic links to each audio file of ``audio_dir``."""
    for k in range(copies):
        for file in find_audio([audio_dir]):
            link = target / f"copy{k}" / file.relative_to(audio_dir)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(file.resolve())
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    machine = f"{platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores"
    if args.device == "cuda":
        import torch

        machine += f", {torch.cuda.get_device_name()}"
    print(f"{machine}; device {args.device}" + (f"; Ray ({args.ray})" if args.ray else ""))
    print("| workers | files | audio h | wall s | × real time | files/s | SQLite MB/h | FAISS MB/h |")
    print("|---|---|---|---|---|---|---|---|")
    table = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        audio = linked_copies(args.audio_dir, args.copies, Path(tmp) / "audio") if args.copies > 1 else args.audio_dir
        for workers in args.workers:
            db = Path(tmp) / f"bench{workers}.db"
            report = index_collection(audio, db, workers=workers, device=args.device, progress=False, ray=args.ray)
            hours = report.audio_seconds / 3600
            faiss_mb = db.with_name(db.name + ".faiss").stat().st_size / 1e6
            row = {"workers": workers, "device": args.device, "ray": args.ray, "files": len(report.added),
                   "audio_hours": hours,
                   "seconds": report.seconds, "x_real_time": report.audio_seconds / report.seconds,
                   "sqlite_mb_per_h": db.stat().st_size / 1e6 / hours, "faiss_mb_per_h": faiss_mb / hours,
                   "machine": machine}
            record(table, row, f"| {workers} | {row['files']} | {hours:.2f} | {report.seconds:.1f} | "
                               f"{row['x_real_time']:.0f} | {len(report.added) / report.seconds:.2f} | "
                               f"{row['sqlite_mb_per_h']:.1f} | {row['faiss_mb_per_h']:.1f} |", args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
