"""Build the piano benchmark: keyboard works and string quartets of the music21 corpus played on a
piano like a performer, and four-measure excerpts of all their staves as queries.

    python bench/build_piano.py OUT_DIR [--queries-per-piece 2] [--jobs 2]
    python cli.py index OUT_DIR/audio --db OUT_DIR/index.db                  # the default model
    python cli.py index OUT_DIR/audio --db OUT_DIR/index_cens.db --model cens
    python cli.py evaluate OUT_DIR/ground_truth.csv --db OUT_DIR/index.db

Each piece (:data:`PIECES`) is rendered on GM program 0 (acoustic grand piano) with its own
dynamics and articulation, a sustain pedal changed every half note, a performer's onset and
loudness deviations, ±15 % tempo drift, one of three SoundFonts and a hall
(``bench/render_scores.py``; FluidR3_GM and MuseScore_General come from Debian packages, installed
here with apt-get when missing: without them the renderings would share the queries' SoundFont and
the benchmark would be another, easier one). Queries: ``--queries-per-piece``
excerpts of four measures of every part, at places drawn from the piece's name, written as
MusicXML for piano (what a transcription of the performance would say; the quartets' string
instruments are replaced) without tempo marks (a theme's performance tempo is unknown); ``ground_truth.csv``
gives where each sounds in its rendering (from the renderer's timing file).

Licences: the music21 corpus scores are public domain or free to redistribute (music21's corpus
notes); the renderings are this script's output.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import music21
import numpy as np
from render_scores import Rendering, render_one
from report import write_csv

from retrieval.soundfont import default_soundfont
from retrieval.theme import measure_numbers, parse_score, select_measures
from training.pairs import rendering_clock

KEYBOARD = ["joplin/maple_leaf_rag.mxl", "mozart/k545/movement1_exposition.mxl", "chopin/mazurka06-2.krn",
            "schoenberg/opus19/movement2.mxl", "schoenberg/opus19/movement6.mxl", "cpebach/h186.mxl",
            "bach/bwv846.mxl"] + [f"schumann_clara/polonaise_op1n{i}.mxl" for i in range(1, 5)]
QUARTETS = ([f"haydn/opus1no1/movement{i}.mxl" for i in range(1, 6)]
            + [f"haydn/opus74no1/movement{i}.mxl" for i in range(1, 5)]
            + [f"mozart/k80/movement{i}.mxl" for i in range(1, 5)]
            + [f"mozart/k155/movement{i}.mxl" for i in range(1, 4)]
            + [f"mozart/k156/movement{i}.mxl" for i in range(1, 5)]
            + [f"mozart/k458/movement{i}.mxl" for i in range(1, 5)]
            + [f"beethoven/opus59no{n}/movement{i}.mxl" for n in (1, 2) for i in range(1, 5)])
PIECES = KEYBOARD + QUARTETS
"""music21 corpus paths: 11 keyboard works and 32 string-quartet movements played on a piano."""

SF2 = Path("/usr/share/sounds/sf2")
MEASURES = 4


def piece_stem(corpus_path: str) -> str:
    """A file stem naming the piece: the corpus path with '/' as '_' and no suffix."""
    return str(Path(corpus_path).with_suffix("")).replace("/", "_")


def excerpt_places(numbers: list[int], count: int, seed: int) -> list[int]:
    """First measures of ``count`` four-measure excerpts, drawn from ``numbers`` after the first
    measure (often a pickup), at least eight measures apart where the piece allows."""
    starts = [m for m in numbers[1:] if m + MEASURES - 1 in numbers]
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for m in rng.permutation(starts):
        if all(abs(int(m) - c) >= 2 * MEASURES for c in chosen):
            chosen.append(int(m))
        if len(chosen) == count:
            break
    return sorted(chosen)


def write_queries(source: Path, stem: str, audio_dir: Path, query_dir: Path, count: int) -> list[dict[str, str]]:
    """Write this piece's excerpts as MusicXML; the ground-truth rows (times from the timing file)."""
    score = parse_score(source)
    clock = rendering_clock(audio_dir / f"{stem}.timing.json")
    rows = []
    for first in excerpt_places(measure_numbers(score), count, zlib.crc32(stem.encode())):
        excerpt, offset = select_measures(score, (first, first + MEASURES - 1), stem)
        for stream in [excerpt, *excerpt.recurse(streamsOnly=True)]:
            stream.removeByClass([music21.tempo.TempoIndication, music21.instrument.Instrument])
        for part in excerpt.parts:
            part.insert(0, music21.instrument.Piano())
        length = float(excerpt.parts[0].highestTime)
        name = f"{stem}_m{first}-{first + MEASURES - 1}"
        excerpt.write("musicxml", fp=query_dir / f"{name}.musicxml")
        rows.append({"query_id": name, "query": f"queries/{name}.musicxml", "recording": stem,
                     "start_s": f"{clock(offset):.3f}", "end_s": f"{clock(offset + length):.3f}"})
    return rows


DEBIAN_SOUNDFONTS = {"FluidR3_GM.sf2": "fluid-soundfont-gm",
                     "MuseScore_General_Full.sf2": "musescore-general-soundfont-lossless"}
"""The two SoundFonts besides pretty_midi's TimGM6mb, and the Debian packages that hold them."""


def soundfonts() -> tuple[Path, ...]:
    """The benchmark's three SoundFonts; the Debian ones installed with apt-get when missing, and a
    one-line exit naming the packages when that fails."""
    wanted = [SF2 / name for name in DEBIAN_SOUNDFONTS]
    if not all(path.is_file() for path in wanted):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", *DEBIAN_SOUNDFONTS.values()], env=env, check=False)
    missing = [path.name for path in wanted if not path.is_file()]
    if missing:
        sys.exit(f"build_piano.py: {', '.join(missing)} not in {SF2}: install Debian's "
                 f"{' '.join(DEBIAN_SOUNDFONTS.values())}")
    return (default_soundfont(), *wanted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--queries-per-piece", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    fonts = soundfonts()
    how = Rendering(program=0, tempo_variation=0.15, expression=True, soundfonts=fonts, room=True,
                    pedal=2.0, humanize=True)
    audio_dir, query_dir = args.out_dir / "audio", args.out_dir / "queries"
    audio_dir.mkdir(parents=True, exist_ok=True)
    query_dir.mkdir(parents=True, exist_ok=True)
    sources = {piece_stem(p): music21.corpus.getWork(p) for p in PIECES}
    rows: list[dict[str, str]] = []
    with ProcessPoolExecutor(args.jobs) as pool:
        renders = [pool.submit(render_one, Path(source), audio_dir, how, stem) for stem, source in sources.items()]
        for future in renders:
            name, seconds = future.result()
            print(f"{name}: {seconds / 60:.1f} min", flush=True)
        queries = [pool.submit(write_queries, Path(sources[stem]), stem, audio_dir, query_dir, args.queries_per_piece)
                   for stem in sources]
        for future in queries:
            rows.extend(future.result())
    write_csv(args.out_dir / "ground_truth.csv", ["query_id", "query", "recording", "start_s", "end_s"], rows)
    print(f"{len(sources)} pieces ({', '.join(p.name for p in fonts)}), {len(rows)} queries → {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
