"""Decoding speed per file, and the mix-down against NumPy's mean, on one core; or the decoding
capacity of N processes.

    taskset -c 0 python bench/decode_speed.py AUDIO_DIR [--repeats 3]
    python bench/decode_speed.py AUDIO_DIR --processes 16 [--copies 32] [--json-out OUT.json]

Indexing from compressed files first decodes them (``models.audio.decode_audio``: libsndfile,
mix-down to mono, soxr to 22050 Hz) in the worker processes, so the decoders bound what any
number of GPUs can index. Prints each file's format, rate, duration and × real time (best of
``--repeats``), the total per format, and, side by side on the same decoded blocks of 2**16
frames, the mix-down (:func:`models.audio.mix_down`) against ``block.mean(axis=1)``, which it
replaced (equal bit for bit). With ``--processes N``: every file (``--copies`` times, linked
under other names as ``bench/index_throughput.py`` does) decoded by N processes at once, nothing
else done — the most any GPU could index from these files on this machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
from index_throughput import linked_copies
from report import keep_json  # the script beside this one (bench/ is on sys.path when run as a script)

from indexer.walk import find_audio
from models.audio import decode_audio, mix_down


def best_seconds(fn, repeats: int) -> float:
    """The shortest of ``repeats`` timings of ``fn()``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def decoded_seconds(path: Path) -> float:
    """Decode ``path`` and return its duration (the samples are dropped)."""
    return decode_audio(path).seconds


def capacity(audio_dir: Path, processes: int, copies: int) -> dict:
    """Audio seconds, wall seconds and × real time of decoding every file with ``processes``
    processes (started, and each given one file, before the clock starts)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = linked_copies(audio_dir, copies, Path(tmp)) if copies > 1 else audio_dir
        files = find_audio([root])
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(decoded_seconds, files[:processes]))
            t0 = time.perf_counter()
            audio = sum(pool.map(decoded_seconds, files))
            wall = time.perf_counter() - t0
    return {"processes": processes, "cores": len(os.sched_getaffinity(0)), "files": len(files),
            "audio_hours": audio / 3600, "seconds": wall, "x_real_time": audio / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=None, help="measure N decoding processes at once")
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.processes:
        row = capacity(args.audio_dir, args.processes, args.copies)
        print(f"{platform.processor() or platform.machine()}, {row['cores']} cores: {row['processes']} processes "
              f"decoded {row['files']} files, {row['audio_hours']:.2f} h, in {row['seconds']:.1f} s = "
              f"{row['x_real_time']:.0f}× real time")
        keep_json(args.json_out, row)
        return 0
    print(f"{platform.processor() or platform.machine()}; one process")
    print("| file | Hz | s | × real time |")
    print("|---|---:|---:|---:|")
    per_format: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    mean_s = mix_s = audio_s = 0.0
    for path in find_audio([args.audio_dir]):
        decoded = decode_audio(path)
        seconds = best_seconds(lambda path=path: decode_audio(path), args.repeats)
        print(f"| {path.name} | {decoded.native_rate} | {decoded.seconds:.0f} | {decoded.seconds / seconds:.0f} |")
        per_format[path.suffix.lower()][0] += decoded.seconds
        per_format[path.suffix.lower()][1] += seconds
        with sf.SoundFile(path) as f:
            blocks = list(f.blocks(1 << 16, dtype="float32", always_2d=True))
        audio_s += decoded.header_seconds
        mean_s += best_seconds(lambda blocks=blocks: [b.mean(axis=1, dtype=np.float32) for b in blocks], args.repeats)
        mix_s += best_seconds(lambda blocks=blocks: [mix_down(b) for b in blocks], args.repeats)
    for suffix, (audio, seconds) in sorted(per_format.items()):
        print(f"all {suffix}: {audio / 3600:.2f} h at {audio / seconds:.0f}× real time")
    print(f"mix-down of all blocks: NumPy mean {audio_s / mean_s:.0f}×, mix_down {audio_s / mix_s:.0f}× real time "
          f"(ratio {mean_s / mix_s:.1f}×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
