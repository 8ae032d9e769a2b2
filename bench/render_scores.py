"""Render score files to WAV with the project's SoundFont renderer (for benchmark collections).

    python bench/render_scores.py OUT_DIR SCORE.mxl … [--program 40] [--tempo-variation 0.1] [--jobs 2]
                                  [--velocity 64 --melody-velocity 127]

Each score becomes ``OUT_DIR/<stem>.wav`` (22050 Hz mono): all parts, each with its own General
MIDI instrument (or ``--program`` for all), at the score's tempo marks, re-timed by a smooth
random tempo curve of about ±``--tempo-variation`` (seeded by the file name: reproducible).
Beside it, ``<stem>.timing.json`` records how score time maps to the rendering's seconds (see
:func:`models.training.pairs.rendered_seconds`), so every score note's time in the audio is known.
With ``--melody-velocity V``, the notes of the score's Hauptstimme (those of ``X_melody.mxl``
beside ``X.mxl``, matched by score offset and pitch, so unison doublings in other parts too) are
played at velocity ``V``, the others at ``--velocity`` (default 90; with this SoundFont each
step 64 → 90 → 127 is about +3 dB, so 64 and 127 put the melody 6 dB above the rest), as an
orchestra brings out its main voice. Existing outputs are kept (re-runs
resume).
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
from retrieval.theme import NoteEvent, load_theme

VELOCITY = 90


def melody_velocities(score: Path, notes: list[NoteEvent], melody_velocity: int, velocity: int = VELOCITY) -> list[int]:
    """Per note: ``melody_velocity`` where ``X_melody.mxl`` has the same (offset, pitch), else ``velocity``."""
    melody = score.with_name(f"{score.stem}_melody.mxl")
    if not melody.is_file():
        raise SystemExit(f"error: {melody}: no melody score beside {score.name} (needed by --melody-velocity)")
    keys = {(round(n.score_onset, 3), n.pitch) for n in load_theme(melody, whole_score=True).notes}
    return [melody_velocity if (round(n.score_onset, 3), n.pitch) in keys else velocity for n in notes]


def render_one(score: Path, out_dir: Path, program: int | None, tempo_variation: float,
               velocity: int = VELOCITY, melody_velocity: int | None = None) -> tuple[str, float]:
    target, timing = out_dir / f"{score.stem}.wav", out_dir / f"{score.stem}.timing.json"
    if target.exists() and timing.exists():
        return target.name, sf.info(target).duration
    theme = load_theme(score, whole_score=True)
    warp = tempo_warp_for(theme.notes, depth=tempo_variation, seed=zlib.crc32(score.stem.encode()))
    record = {"score": score.name, "start": theme.start, "tempo": theme.tempo.as_dict(), "warp": warp.as_dict()}
    atomic_write_text(timing, json.dumps(record))
    if target.exists():
        return target.name, sf.info(target).duration
    if melody_velocity is not None:
        velocity = melody_velocities(score, theme.notes, melody_velocity, velocity)
    audio = render_notes(vary_tempo(theme.notes, depth=tempo_variation, seed=zlib.crc32(score.stem.encode())),
                         SAMPLE_RATE, program=program, velocity=velocity)
    atomic_write(target, lambda tmp: sf.write(tmp, audio, SAMPLE_RATE, format="WAV"))
    return target.name, len(audio) / SAMPLE_RATE



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("scores", nargs="+", type=Path)
    parser.add_argument("--program", type=int, default=None, help="GM program for every part (default: the score's)")
    parser.add_argument("--tempo-variation", type=float, default=0.1)
    parser.add_argument("--velocity", type=int, default=VELOCITY, help="MIDI velocity of the notes (default 90)")
    parser.add_argument("--melody-velocity", type=int, default=None,
                        help="play the X_melody.mxl notes at this velocity instead (default: as the others)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    total = 0.0
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(render_one, s, args.out_dir, args.program, args.tempo_variation,
                               args.velocity, args.melody_velocity) for s in args.scores]
        for future in futures:
            name, seconds = future.result()
            total += seconds
            print(f"{name}: {seconds / 60:.1f} min", flush=True)
    print(f"{len(futures)} recordings, {total / 3600:.2f} h in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
