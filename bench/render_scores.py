"""Render score files to WAV with the project's SoundFont renderer (for benchmark collections).

    python bench/render_scores.py OUT_DIR SCORE.mxl … [--program 40] [--tempo-variation 0.1] [--jobs 2]

Each score becomes ``OUT_DIR/<stem>.wav`` (22050 Hz mono): all parts, each with its own General
MIDI instrument (or ``--program`` for all), at the score's tempo marks, re-timed by a smooth
random tempo curve of about ±``--tempo-variation`` (seeded by the file name: reproducible).
Beside it, ``<stem>.timing.json`` records how score time maps to the rendering's seconds (see
:func:`models.training.pairs.rendered_seconds`), so every score note's time in the audio is known.
Existing outputs are kept (re-runs resume).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

from models.files import atomic_write, atomic_write_text
from models.frontend import SAMPLE_RATE
from retrieval.soundfont import render_notes, tempo_warp_for, vary_tempo
from retrieval.theme import load_theme


def render_one(score: Path, out_dir: Path, program: int | None, tempo_variation: float) -> tuple[str, float]:
    target, timing = out_dir / f"{score.stem}.wav", out_dir / f"{score.stem}.timing.json"
    if target.exists() and timing.exists():
        return target.name, sf.info(target).duration
    theme = load_theme(score)
    warp = tempo_warp_for(theme.notes, depth=tempo_variation, seed=zlib.crc32(score.stem.encode()))
    record = {"score": score.name, "start": theme.start, "tempo": theme.tempo.as_dict(), "warp": warp.as_dict()}
    atomic_write_text(timing, json.dumps(record))
    if target.exists():
        return target.name, sf.info(target).duration
    audio = render_notes(vary_tempo(theme.notes, depth=tempo_variation, seed=zlib.crc32(score.stem.encode())),
                         SAMPLE_RATE, program=program)
    atomic_write(target, lambda tmp: sf.write(tmp, audio, SAMPLE_RATE, format="WAV"))
    return target.name, len(audio) / SAMPLE_RATE



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("scores", nargs="+", type=Path)
    parser.add_argument("--program", type=int, default=None, help="GM program for every part (default: the score's)")
    parser.add_argument("--tempo-variation", type=float, default=0.1)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    total = 0.0
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(render_one, s, args.out_dir, args.program, args.tempo_variation) for s in args.scores]
        for future in futures:
            name, seconds = future.result()
            total += seconds
            print(f"{name}: {seconds / 60:.1f} min", flush=True)
    print(f"{len(futures)} recordings, {total / 3600:.2f} h in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
