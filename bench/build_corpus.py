"""Render music no benchmark theme comes from: as many hours of music21's bundled corpus as asked.

    python bench/build_corpus.py OUT_DIR [--hours 20] [--jobs 2] [--seconds-per-score 600]
    python cli.py index OUT_DIR/audio --db OUT_DIR/index.db

Large test collections built only from the benchmarks' own recordings (transposed, stretched,
pitch classes shuffled: ``bench/query_latency.py``) meet a theme's music again and again; an
archive holds mostly other music. This script renders the corpus that ships with music21
(Palestrina masses, Bach chorales, Monteverdi madrigals, trecento songs, string quartets, folk
tunes …) with the project's renderer — each part its instrument, the score's dynamics and tempo
marks, ±10 % tempo drift — taking composers in turn so that no one dominates, until the rendered
audio reaches ``--hours``. Works a benchmark theme comes from are left out (:data:`EXCLUDED`). A
score music21 cannot read, or one longer than ``--seconds-per-score``, is skipped with its reason.
Renders are kept in ``OUT_DIR/audio`` and reused (a second run renders only what is missing; the
scores skipped, with their reasons, are kept in ``OUT_DIR/skipped``), with ``OUT_DIR/corpus.csv``
listing what was rendered and its duration.

Licences: the music21 corpus scores are public domain or free to redistribute (music21's corpus
notes); the renderings are this script's output.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import music21
from render_scores import Rendering, render_one  # the script beside this one (bench/ is on sys.path)

from models.files import atomic_write_text

EXCLUDED = re.compile(r"beach|bwv0?232|bwv0?104[89]|bwv0?100[1-6]|beethoven/.*(op0?21|op36|op55|op60|op67|op68"
                      r"|op92|op93|op125)", re.IGNORECASE)
"""Corpus paths of the works the benchmarks' themes come from (hauptstimme: Bach BWV 232, 1048,
1049, Beach Op. 32, Beethoven's symphonies; bach_violin: BWV 1001–1006)."""


def corpus_scores() -> list[Path]:
    """The corpus's scores, composers (top folders) taken in turn, each composer's in name order; a
    work the corpus holds in two formats (``.mxl`` and ``.xml``) once, in its first place."""
    root = Path(music21.__file__).parent / "corpus"
    by_composer: dict[str, list[Path]] = {}
    for path in sorted(Path(p) for p in music21.corpus.getPaths()):
        relative = path.relative_to(root).as_posix()
        if not EXCLUDED.search(relative):
            by_composer.setdefault(relative.split("/")[0], []).append(path)
    turns = itertools.zip_longest(*by_composer.values())
    first: dict[str, Path] = {}
    for path in (path for turn in turns for path in turn if path is not None):
        first.setdefault(stem_for(path), path)
    return list(first.values())


def stem_for(path: Path) -> str:
    """A file name for the rendering of corpus ``path``: its path below the corpus, flattened."""
    relative = path.relative_to(Path(music21.__file__).parent / "corpus").with_suffix("")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", relative.as_posix().replace("/", "__"))


def _render(path: Path, audio: Path, how: Rendering, limit: float) -> tuple[str, float | str]:
    """``(stem, seconds)`` of one score's rendering, or ``(stem, reason)`` where it was skipped; the
    reason is kept in ``audio/../skipped/STEM.txt`` so that a later run does not try again."""
    stem = stem_for(path)
    skipped = audio.parent / "skipped" / f"{stem}.txt"
    if skipped.is_file():
        return stem, skipped.read_text()
    try:
        _, seconds = render_one(path, audio, how, stem)
        reason = f"longer than {limit:.0f} s" if seconds > limit else None
    except Exception as error:  # noqa: BLE001 (a score the renderer cannot read is skipped, the run goes on)
        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}"
    if reason is None:
        return stem, seconds
    (audio / f"{stem}.wav").unlink(missing_ok=True)
    (audio / f"{stem}.timing.json").unlink(missing_ok=True)
    atomic_write_text(skipped, reason)
    return stem, reason


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--hours", type=float, default=20.0, help="rendered audio to reach (default 20)")
    parser.add_argument("--jobs", type=int, default=2, help="scores rendered at once (default 2)")
    parser.add_argument("--seconds-per-score", type=float, default=600.0, help="longer renderings are skipped")
    args = parser.parse_args(argv)
    audio = args.out_dir / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    how = Rendering(expression=True)
    rows, total = [], 0.0
    scores = iter(corpus_scores())
    with ProcessPoolExecutor(args.jobs) as pool:
        while total < args.hours * 3600:
            batch = list(itertools.islice(scores, 4 * args.jobs))
            if not batch:
                print(f"the corpus ran out at {total / 3600:.2f} h", file=sys.stderr)
                break
            for stem, result in pool.map(_render, batch, itertools.repeat(audio), itertools.repeat(how),
                                         itertools.repeat(args.seconds_per_score)):
                if isinstance(result, str):
                    print(f"skipped {stem}: {result}", file=sys.stderr)
                    continue
                rows.append({"recording": stem, "seconds": round(result, 2)})
                total += result
            print(f"{len(rows)} scores, {total / 3600:.2f} h", flush=True)
    table = "recording,seconds\n" + "".join(f"{r['recording']},{r['seconds']}\n" for r in rows)
    atomic_write_text(args.out_dir / "corpus.csv", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
