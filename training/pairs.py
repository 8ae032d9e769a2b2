"""Score–audio training pairs: recordings with the pitch-class content their scores give them.

A :class:`PairRecording` is one audio file and the notes of its score's *melody line* (one note
at a time: where the score has a chord in the melody, its highest note is kept — the melody of a
chord is conventionally its top voice, and a 13-class softmax has one class per frame). Each note
carries its time in the audio (an alignment, or an estimate for weakly aligned pairs) and its
place in the score (quarter notes), so all three kinds of labels exist:
- *weak* (CTC): the excerpt's pitch-class sequence only;
- *linear*: the excerpt's score positions stretched linearly over the excerpt;
- *strong*: frame-wise labels from the note times (only where ``aligned``).

Builders: :func:`hauptstimme_pairs` (the project's renderings of the Hauptstimme scores; the
renderer's timing gives every melody note its exact time), :func:`bach_violin_pairs` (real
recordings with note-level alignments) and :func:`csv_pairs` (a user's own pairs). Recordings are
cut into :class:`Excerpt` s of seconds to tens of seconds by :func:`cut_excerpts`.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.audio import audio_info
from models.errors import ParameterError, RetrievalError
from models.files import atomic_write_text
from models.frontend import FEATURE_RATE
from retrieval.soundfont import TempoWarp
from retrieval.theme import TempoMap, ThemeError, parse_measures, parse_score, theme_from_stream

__all__ = [
    "HAUPTSTIMME_SPLITS",
    "Excerpt",
    "LabelledNote",
    "PairError",
    "PairRecording",
    "bach_violin_pairs",
    "csv_pairs",
    "cut_excerpts",
    "hauptstimme_pairs",
    "hauptstimme_work",
    "melody_line",
    "rendering_clock",
    "score_notes",
]

HAUPTSTIMME_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("Bach_BWV.232", "Beethoven_Op.125", "Beethoven_Op.36", "Beethoven_Op.55", "Beethoven_Op.60",
              "Beethoven_Op.68", "Beethoven_Op.92"),
    "selection": ("Bach_BWV.1048", "Beethoven_Op.21"),
    "report": ("Bach_BWV.1049", "Beach_Op.32", "Beethoven_Op.67", "Beethoven_Op.93"),
}
"""Hauptstimme works (all movements of a work in one split) for training, model selection
(validation MRR, early stopping) and the report. Each split mixes Bach and Beethoven; Beach's
only symphony is reported on. Results are reported only on the ``report`` works."""


class PairError(RetrievalError, ValueError):
    """Training data that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class LabelledNote:
    """One melody note: its time in the audio (seconds), MIDI pitch, and place in the score (quarters)."""

    onset: float
    offset: float
    pitch: int
    score_onset: float
    score_offset: float


@dataclass(frozen=True)
class PairRecording:
    """An audio file and the melody line of its score, sorted by onset."""

    audio: Path
    notes: tuple[LabelledNote, ...]
    work: str  # splits keep every recording of a work together
    name: str  # the recording's name (file stem), as benchmark ground truth names it
    aligned: bool  # note times are an alignment (strong labels allowed), not an estimate
    licence: str = ""


@dataclass(frozen=True)
class Excerpt:
    """Frames ``[start, stop)`` (25 Hz) of recording ``recording`` and the melody notes they hold."""

    recording: int
    start: int
    stop: int
    notes: tuple[LabelledNote, ...]

    @property
    def n_frames(self) -> int:
        return self.stop - self.start


def melody_line(notes: list[LabelledNote]) -> tuple[LabelledNote, ...]:
    """One note per score onset: of notes starting together (a chord), the highest; sorted by onset."""
    top: dict[float, LabelledNote] = {}
    for note in notes:
        key = round(note.score_onset, 6)
        if key not in top or note.pitch > top[key].pitch:
            top[key] = note
    return tuple(sorted(top.values(), key=lambda n: (n.onset, n.score_onset)))


def cut_excerpts(recording: int, notes: tuple[LabelledNote, ...], n_frames: int, seconds: float = 10.0,
                 min_notes: int = 3) -> list[Excerpt]:
    """Excerpts of whole notes, each at most ``seconds`` long, overlapping by about half.

    An excerpt runs from a note's onset to the offset of the last note that ends within
    ``seconds`` (as a weakly aligned score segment and its audio would); a rest longer than
    ``seconds`` splits the line. Notes past the audio's end are dropped; excerpts with fewer
    than ``min_notes`` notes are skipped.
    """
    if seconds <= 0:
        raise ParameterError(f"excerpt seconds must be positive, got {seconds}")
    notes = tuple(n for n in notes if n.onset * FEATURE_RATE < n_frames - 1)
    excerpts, i = [], 0
    onsets = np.array([n.onset for n in notes])
    while i < len(notes):
        j = i + 1
        while j < len(notes) and notes[j].offset - notes[i].onset <= seconds:
            j += 1
        start = int(np.floor(notes[i].onset * FEATURE_RATE))
        stop = min(n_frames, int(np.ceil(max(n.offset for n in notes[i:j]) * FEATURE_RATE)))
        if j - i >= min_notes and stop > start:
            excerpts.append(Excerpt(recording, start, stop, notes[i:j]))
        nxt = int(np.searchsorted(onsets, notes[i].onset + seconds / 2, side="left"))
        i = max(nxt, i + 1) if j - i >= min_notes else j
    return excerpts


# -- hauptstimme: the project's renderings (bench/build_hauptstimme.sh) ---------------------------------


def hauptstimme_work(stem: str) -> str:
    """The work of a Hauptstimme movement stem: ``Beethoven_Op.67_3`` → ``Beethoven_Op.67``."""
    return stem.rsplit("_", 1)[0]


def hauptstimme_pairs(scores_dir: str | Path, audio_dir: str | Path, works: tuple[str, ...] | None = None,
                      cache_dir: str | Path | None = None) -> list[PairRecording]:
    """Pairs of every rendered movement: ``AUDIO_DIR/X.wav`` with the melody of ``X_melody.mxl``.

    The melody score has the full score's quarter-note offsets; the renderer's
    ``X.timing.json`` (tempo map and tempo drift) turns each offset into the rendering's
    seconds, so the labels are exact (``aligned``). ``works`` restricts to those works;
    ``cache_dir`` keeps the parsed melodies as JSON (music21 parsing takes seconds per score).
    """
    scores_dir, audio_dir = Path(scores_dir), Path(audio_dir)
    if not audio_dir.is_dir():
        raise PairError(f"{audio_dir}: no such folder (render it with bench/build_hauptstimme.sh)")
    pairs = []
    for melody in sorted(scores_dir.rglob("*_melody.mxl")):
        stem = melody.name.removesuffix("_melody.mxl")
        if works is not None and hauptstimme_work(stem) not in works:
            continue
        audio, timing_file = audio_dir / f"{stem}.wav", audio_dir / f"{stem}.timing.json"
        if not audio.is_file() or not timing_file.is_file():
            continue
        seconds = rendering_clock(timing_file)
        notes = [LabelledNote(seconds(q0), seconds(q1), pitch, q0, q1)
                 for q0, q1, pitch in score_notes(melody, cache_dir)]
        pairs.append(PairRecording(audio, melody_line(notes), hauptstimme_work(stem), stem, True, "CC0 (score)"))
    if not pairs:
        raise PairError(f"{audio_dir}: no rendered Hauptstimme movements with timing files")
    return pairs


def rendering_clock(timing_file: str | Path) -> Callable[[float], float]:
    """Score offset (quarter notes) → seconds in a rendering, from the renderer's ``X.timing.json``
    (its tempo map, start and tempo drift)."""
    timing = json.loads(Path(timing_file).read_text())
    tempo, warp, start = TempoMap.from_dict(timing["tempo"]), TempoWarp(**timing["warp"]), timing["start"]
    return lambda offset: warp(tempo.seconds(offset) - start)


def score_notes(score: Path, cache_dir: str | Path | None) -> list[tuple[float, float, int]]:
    """``(score onset, score offset, MIDI pitch)`` of every note of a score (all its parts, chords
    whole), at sounding pitch; ``cache_dir`` keeps them as JSON (music21 parsing takes seconds)."""
    cached = None
    if cache_dir is not None:
        digest = hashlib.blake2b(score.read_bytes(), digest_size=8).hexdigest()
        cached = Path(cache_dir) / "scores" / f"{score.stem}-{digest}.json"
        if cached.is_file():
            return [tuple(row) for row in json.loads(cached.read_text())]
    theme = theme_from_stream(parse_score(score), name=str(score), whole_score=True)
    rows = [(n.score_onset, n.score_onset + n.score_duration, n.pitch) for n in theme.notes]
    if cached is not None:
        atomic_write_text(cached, json.dumps(rows))
    return rows


# -- bach_violin: real recordings with note-level alignments ----------------------------------------------


def _clock(text: str) -> float:
    h, m, s = (float(x) for x in text.split(":"))
    return 3600 * h + 60 * m + s


def bach_violin_pairs(data_dir: str | Path, allow_noncommercial: bool = False) -> list[PairRecording]:
    """Pairs of the bach_violin recordings that have ``notes/`` and ``alignments/`` CSVs.

    Note onsets are the alignment's (seconds from the movement start, plus ``info.csv``'s
    ``start``); score positions are the note list's ticks (1/24 quarter). Recordings whose
    licence is NonCommercial are left out unless ``allow_noncommercial``.
    """
    data_dir = Path(data_dir)
    info = {row["filename"]: row for row in _read_csv(data_dir / "info.csv")}
    licences = {row["filename"]: row["license"] for row in _read_csv(data_dir / "audio.csv")}
    pairs = []
    for notes_file in sorted((data_dir / "notes").glob("*.csv")):
        name = notes_file.stem
        row = info.get(name)
        if row is None:
            continue
        audio = data_dir / "audio" / row["source_filename"]
        licence = licences.get(row["source_filename"], "")
        if "NC" in licence and not allow_noncommercial:
            continue
        offset = _clock(row["start"])
        score = _read_csv(notes_file)
        times = _read_csv(data_dir / "alignments" / notes_file.name)
        if len(score) != len(times):
            raise PairError(f"{notes_file}: {len(score)} notes but {len(times)} aligned times")
        notes = [
            LabelledNote(offset + float(t["start"]), offset + float(t["end"]), int(n["pitch"]),
                         int(n["onset"]) / 24, int(n["offset"]) / 24)
            for n, t in zip(score, times, strict=True)
        ]
        pairs.append(PairRecording(audio, melody_line(notes), row["work"], name, True, licence))
    return pairs


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise PairError(f"{path}: no such file")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- a user's own pairs --------------------------------------------------------------------------------


def csv_pairs(path: str | Path) -> list[PairRecording]:
    """Pairs listed in a CSV (paths relative to it), one row per recording:
    ``audio`` (required), ``score`` (required: any format music21 reads), ``alignment`` (optional:
    a CSV with ``start,end`` seconds per note of the score's melody line, in order), ``part``
    (optional: name or index), ``measures`` (optional: ``A-B``), ``work`` (optional: splits keep a
    work together; default the audio's stem). Without an alignment the score is stretched
    linearly over the whole recording (weak pairs: CTC and linear labels only).
    """
    path = Path(path)
    rows = _read_csv(path)
    missing = {"audio", "score"} - set(rows[0] if rows else {})
    if missing:
        raise PairError(f"{path}: not a pairs CSV (missing columns {sorted(missing)})")
    pairs = []
    for row in rows:
        audio, score = path.parent / row["audio"], path.parent / row["score"]
        if not audio.is_file():
            raise PairError(f"{audio}: no such audio file (row of {path})")
        try:
            measures = parse_measures(row["measures"]) if row.get("measures") else None
            theme = theme_from_stream(parse_score(score), part=row.get("part") or None, measures=measures,
                                      name=str(score), whole_score=True)
        except ThemeError as error:
            raise PairError(str(error)) from None
        notes = [LabelledNote(n.onset, n.onset + n.duration, n.pitch, n.score_onset, n.score_onset + n.score_duration)
                 for n in theme.notes]
        line = list(melody_line(notes))
        duration = _duration(audio)
        if row.get("alignment"):
            times = _read_csv(path.parent / row["alignment"])
            if len(times) != len(line):
                raise PairError(f"{path.parent / row['alignment']}: {len(times)} rows for {len(line)} melody notes")
            end = max(float(t["end"]) for t in times)
            if end > duration + 0.5:
                raise PairError(f"{path.parent / row['alignment']}: alignment ends at {end:.1f} s, after the end of "
                                f"{audio} ({duration:.1f} s)")
            line = [LabelledNote(float(t["start"]), float(t["end"]), n.pitch, n.score_onset, n.score_offset)
                    for n, t in zip(line, times, strict=True)]
            aligned = True
        else:
            scale = duration / max(n.offset for n in line)
            line = [LabelledNote(n.onset * scale, n.offset * scale, n.pitch, n.score_onset, n.score_offset)
                    for n in line]
            aligned = False
        pairs.append(PairRecording(audio, tuple(line), row.get("work") or audio.stem, audio.stem, aligned))
    return pairs


def _duration(audio: Path) -> float:
    return audio_info(audio)[0]
