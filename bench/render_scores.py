"""Render score files to WAV with the project's SoundFont renderer (for benchmark collections).

    python bench/render_scores.py OUT_DIR SCORE.mxl … [--program 40] [--tempo-variation 0.1] [--jobs 2]
                                  [--velocity 64 --melody-velocity 127]
                                  [--expression --room --soundfont default --soundfont FluidR3_GM.sf2 …]

Each score becomes ``OUT_DIR/<stem>.wav`` (22050 Hz mono): all parts, each with its own General
MIDI instrument (or ``--program`` for all), at the score's tempo marks, re-timed by a smooth
random tempo curve of about ±``--tempo-variation`` (seeded by the file name: reproducible).
Beside it, ``<stem>.timing.json`` records how score time maps to the rendering's seconds (see
:func:`training.pairs.rendered_seconds`), so every score note's time in the audio is known.
With ``--melody-velocity V``, the notes of the score's Hauptstimme (those of ``X_melody.mxl``
beside ``X.mxl``, matched by score offset and pitch, so unison doublings in other parts too) are
played at velocity ``V``, the others at ``--velocity`` (default 90; with this SoundFont each
step 64 → 90 → 127 is about +3 dB, so 64 and 127 put the melody 6 dB above the rest), as an
orchestra brings out its main voice.

Renderings that sound like orchestras: ``--expression`` plays each part by its own marks
(dynamics, hairpins, sforzandi, accents, staccato, pizzicato: :mod:`retrieval.expression`);
``--soundfont`` (repeatable; ``default`` is pretty_midi's TimGM6mb) gives each score one of the
listed General MIDI SoundFonts, chosen by its file name; ``--room`` puts it in a hall
(:mod:`retrieval.room`: reverberation time 1.6–2.4 s, direct sound 0–6 dB above the reverberation,
drawn per score from its name); ``--pedal`` and ``--humanize`` play like a pianist
(:func:`retrieval.expression.sustain_pedal`, :func:`retrieval.expression.humanize`). What was
chosen is recorded in the timing file. Existing outputs are
kept (re-runs resume).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from models.files import atomic_write, atomic_write_text
from models.frontend import SAMPLE_RATE
from retrieval.expression import expressive_notes, humanize, score_expression, sustain_pedal
from retrieval.room import in_room, room_response
from retrieval.soundfont import default_soundfont, render_notes, tempo_warp_for, vary_tempo
from retrieval.theme import NoteEvent, load_theme, parse_score, theme_from_stream

VELOCITY = 90


def melody_velocities(score: Path, notes: list[NoteEvent], melody_velocity: int, velocity: int = VELOCITY) -> list[int]:
    """Per note: ``melody_velocity`` where ``X_melody.mxl`` has the same (offset, pitch), else ``velocity``."""
    melody = score.with_name(f"{score.stem}_melody.mxl")
    if not melody.is_file():
        raise SystemExit(f"error: {melody}: no melody score beside {score.name} (needed by --melody-velocity)")
    keys = {(round(n.score_onset, 3), n.pitch) for n in load_theme(melody, whole_score=True).notes}
    return [melody_velocity if (round(n.score_onset, 3), n.pitch) in keys else velocity for n in notes]


@dataclass(frozen=True)
class Rendering:
    """How scores are played: instruments, tempo drift, loudness, SoundFonts, room."""

    program: int | None = None
    tempo_variation: float = 0.1
    velocity: int = VELOCITY
    melody_velocity: int | None = None
    expression: bool = False
    soundfonts: tuple[Path, ...] = ()
    room: bool = False
    pedal: float | None = None
    humanize: bool = False

    def choices(self, stem: str) -> dict[str, Any]:
        """This score's SoundFont and room, drawn from its name (reproducible)."""
        rng = np.random.default_rng(zlib.crc32(f"room {stem}".encode()))
        soundfont = self.soundfonts[zlib.crc32(stem.encode()) % len(self.soundfonts)] if self.soundfonts else None
        room = {"rt60": round(float(rng.uniform(1.6, 2.4)), 2), "brightness": round(float(rng.uniform(0.4, 0.6)), 2),
                "direct_to_reverberant_db": round(float(rng.uniform(0.0, 6.0)), 1),
                "seed": int(rng.integers(2 ** 31))} if self.room else None
        return {"soundfont": soundfont, "room": room}


def render_one(score: Path, out_dir: Path, how: Rendering, stem: str | None = None) -> tuple[str, float]:
    """Render ``score`` to ``out_dir/STEM.wav`` with its timing file (STEM: the score's, unless given)."""
    stem = stem or score.stem
    target, timing = out_dir / f"{stem}.wav", out_dir / f"{stem}.timing.json"
    if target.exists() and timing.exists():
        return target.name, sf.info(target).duration
    parsed = parse_score(score)
    theme = theme_from_stream(parsed, name=str(score), whole_score=True)
    seed = zlib.crc32(stem.encode())
    warp = tempo_warp_for(theme.notes, depth=how.tempo_variation, seed=seed)
    choices = how.choices(stem)
    record = {"score": score.name, "start": theme.start, "tempo": theme.tempo.as_dict(), "warp": warp.as_dict(),
              "expression": how.expression, "pedal": how.pedal, "humanize": how.humanize, "room": choices["room"],
              "soundfont": choices["soundfont"].name if choices["soundfont"] else None}
    atomic_write_text(timing, json.dumps(record))
    if target.exists():
        return target.name, sf.info(target).duration
    notes: list[NoteEvent] = list(theme.notes)
    velocity: int | list[int] = how.velocity
    if how.expression:
        notes, velocity = expressive_notes(notes, score_expression(parsed))
    elif how.melody_velocity is not None:
        velocity = melody_velocities(score, notes, how.melody_velocity, how.velocity)
    if how.pedal:
        notes = sustain_pedal(notes, lambda q: theme.tempo.seconds(q) - theme.start, how.pedal)
    if how.humanize:
        notes, velocity = humanize(notes, np.broadcast_to(velocity, (len(notes),)).tolist(), seed)
    audio = render_notes(vary_tempo(notes, depth=how.tempo_variation, seed=seed), SAMPLE_RATE,
                         program=how.program, velocity=velocity, soundfont=choices["soundfont"])
    if choices["room"]:
        room = dict(choices["room"])
        drr = room.pop("direct_to_reverberant_db")
        audio = in_room(audio, room_response(sample_rate=SAMPLE_RATE, **room), drr)
    atomic_write(target, lambda tmp: sf.write(tmp, audio, SAMPLE_RATE, format="WAV"))
    return target.name, len(audio) / SAMPLE_RATE


def _soundfont(value: str) -> Path:
    path = default_soundfont() if value == "default" else Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value}: no such SoundFont file")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("scores", nargs="+", type=Path)
    parser.add_argument("--program", type=int, default=None, help="GM program for every part (default: the score's)")
    parser.add_argument("--tempo-variation", type=float, default=0.1)
    parser.add_argument("--velocity", type=int, default=VELOCITY, help="MIDI velocity of the notes (default 90)")
    parser.add_argument("--melody-velocity", type=int, default=None,
                        help="play the X_melody.mxl notes at this velocity instead (default: as the others)")
    parser.add_argument("--expression", action="store_true",
                        help="play each part by its dynamics, hairpins, accents and articulation marks")
    parser.add_argument("--soundfont", type=_soundfont, action="append", default=[],
                        help="a GM SoundFont (.sf2) or 'default'; repeat to give the scores several (one each)")
    parser.add_argument("--room", action="store_true", help="add a concert hall's reverberation")
    parser.add_argument("--pedal", type=float, default=None, metavar="QUARTERS",
                        help="hold notes as a sustain pedal changed every QUARTERS quarter notes (piano)")
    parser.add_argument("--humanize", action="store_true",
                        help="a performer's onset (15 ms) and loudness (1.5 dB) deviations, top notes voiced")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.expression and args.melody_velocity is not None:
        parser.error("--melody-velocity and --expression exclude each other (the score's marks set the balance)")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    how = Rendering(args.program, args.tempo_variation, args.velocity, args.melody_velocity, args.expression,
                    tuple(args.soundfont), args.room, args.pedal, args.humanize)
    total = 0.0
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(render_one, s, args.out_dir, how) for s in args.scores]
        for future in futures:
            name, seconds = future.result()
            total += seconds
            print(f"{name}: {seconds / 60:.1f} min", flush=True)
    print(f"{len(futures)} recordings, {total / 3600:.2f} h in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
