"""Reading a theme from a score: notes with onsets in seconds, at sounding pitch.

Any format music21 reads (MusicXML ``.xml/.musicxml/.mxl``, MIDI, Humdrum ``**kern``, ABC, MEI).
Transposing instruments are converted to sounding pitch, tied notes merged, grace notes dropped
(they take no metrical time), repeats expanded on request. A score without tempo marks is
timed at :data:`DEFAULT_QPM` (the query side varies tempo anyway).
"""

from __future__ import annotations

import bisect
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import music21

from models.errors import RetrievalError

__all__ = [
    "DEFAULT_QPM", "NoteEvent", "TempoMap", "Theme", "ThemeError", "ThemeTooLarge", "load_theme", "parse_corpus_work",
    "parse_measures", "parse_score", "measure_numbers", "select_measures", "select_part", "theme_from_stream",
]

DEFAULT_QPM = 120.0
"""Quarter notes per minute for a score without tempo marks (MIDI's and music21's default)."""

MAX_THEME_NOTES = 5000
"""Most notes a theme may have. Themes are seconds to a minute of music (the benchmarks' have
10–100 notes; 20 bars of a full orchestral score about 1,500); a whole symphony movement
(Beethoven 9/4: 45,758 notes) took minutes and gigabytes to prepare and matches nothing."""

PARSE_SECONDS = 60.0
"""Longest time music21 may take to parse a theme file (in the main thread; elsewhere the note
limit alone applies). The benchmarks' themes parse in well under a second."""

_TOO_LONG = "choose a passage with --measures A-B and/or one part with --part"


class ThemeError(RetrievalError, ValueError):
    """A score that cannot serve as a theme: unreadable, no notes, or a bad selection."""


class ThemeTooLarge(ThemeError):
    """A theme too large to search: too many notes, too slow to parse, or longer than every
    recording. The user must choose a passage (the web API answers 422, not 400)."""


@dataclass(frozen=True)
class NoteEvent:
    """One sounding note: onset and duration in seconds, MIDI pitch, GM program of its part.

    ``score_onset`` and ``score_duration`` are its place in the whole score in quarter notes
    (training labels map them through a rendering's timing); ``measure`` and ``beat`` (1 = the
    bar's downbeat, in the time signature's beats) where a reader finds it; 0 where unknown.
    """

    onset: float
    duration: float
    pitch: int
    program: int = 0
    part: int = 0
    score_onset: float = 0.0
    score_duration: float = 0.0
    measure: int = 0
    beat: float = 0.0


@dataclass(frozen=True)
class TempoMap:
    """Score time (quarter notes from the start) → seconds at the score's marked tempi.

    Piecewise linear: from ``offsets[i]`` on, a quarter note lasts ``seconds_per_quarter[i]``
    seconds; ``seconds_at[i]`` is the time of ``offsets[i]``. Lists, so it round-trips JSON.
    """

    offsets: tuple[float, ...]
    seconds_at: tuple[float, ...]
    seconds_per_quarter: tuple[float, ...]

    def seconds(self, offset: float) -> float:
        """Seconds of quarter-note offset ``offset`` (before the first mark: the first tempo)."""
        i = max(0, bisect.bisect_right(self.offsets, offset) - 1)
        return self.seconds_at[i] + (offset - self.offsets[i]) * self.seconds_per_quarter[i]

    def as_dict(self) -> dict[str, list[float]]:
        return {"offsets": list(self.offsets), "seconds_at": list(self.seconds_at),
                "seconds_per_quarter": list(self.seconds_per_quarter)}

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> TempoMap:
        return cls(tuple(data["offsets"]), tuple(data["seconds_at"]), tuple(data["seconds_per_quarter"]))


@dataclass(frozen=True)
class Theme:
    """The notes of a theme, sorted by onset, the first starting at 0."""

    notes: tuple[NoteEvent, ...]
    source: str = ""
    start: float = 0.0  # seconds of the first note in the whole score's timeline (nominal tempo)
    tempo: TempoMap | None = None  # the whole score's tempo map (its seconds are before ``start`` is removed)
    offset: float = 0.0  # quarter notes from the whole score's start to the selected passage's first measure

    @property
    def duration(self) -> float:
        return max(n.onset + n.duration for n in self.notes)

    def transposed(self, semitones: int) -> Theme:
        notes = tuple(replace(n, pitch=n.pitch + semitones) for n in self.notes)
        return Theme(notes, self.source, self.start, self.tempo, self.offset)


def parse_measures(text: str) -> tuple[int, int]:
    """A measure range as written by a user, ``"A-B"`` or ``"A"``, as ``(A, B)``; a one-line
    :class:`ThemeError` for anything else (the command line, the web API and training pairs share it)."""
    first, _, last = str(text).strip().partition("-")
    try:
        return int(first), int(last or first)
    except ValueError:
        raise ThemeError(f"measures must look like A-B (e.g. 5-12), got {str(text)[:40]!r}") from None


_READER_HINTS = {
    "no active default note length provided for note processing":
        "no default note length before the notes: an ABC header needs a line such as L:1/8",
}
"""What some of music21's messages mean to someone who wrote the score."""


def _plain_reason(error: Exception) -> str:
    """The first line of a reader's message, without the parser objects music21 appends
    (``tPrev: <music21.abcFormat.ABCNote 'a'>``), in plain words where known."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    reason = re.split(r"\s*(?:tPrev:|token:|<music21\.)", reason, maxsplit=1)[0].rstrip(" .,;:")[:120]
    return _READER_HINTS.get(reason, reason or type(error).__name__)


def parse_score(path: str | Path) -> music21.stream.Score:
    """Parse a score file with music21, never through its pickle cache.

    music21 by default writes every parsed file as a pickle into a shared temporary folder,
    named by a hash of the path, and loads it back on the next parse of that path: a pickle
    planted there would run code, and an edited file with an older mtime would be answered from
    the stale copy. Here the source is always parsed and nothing is written; a file music21
    would read as a pickle is refused.
    """
    path = Path(path)
    if path.is_dir():
        raise ThemeError(f"{path}: is a folder, not a score file")
    if not path.is_file():
        raise ThemeError(f"{path}: no such file")
    if music21.common.findFormatFile(path) == "pickle":
        raise ThemeError(f"{path}: pickled music21 streams are not read (they can run code); give the score file")
    try:
        with _time_limit(PARSE_SECONDS, f"{path}: parsing took longer than {PARSE_SECONDS:.0f} s; {_TOO_LONG}"):
            parsed = music21.converter.parseFile(path, forceSource=True, storePickle=False)
    except (ThemeError, MemoryError):
        raise
    except Exception as error:  # music21 raises many kinds for a file it cannot read
        raise ThemeError(f"{path}: not a readable score ({_plain_reason(error)})") from None
    if isinstance(parsed, music21.stream.Opus):
        parsed = parsed.scores[0] if parsed.scores else music21.stream.Score()
    if not isinstance(parsed, music21.stream.Score):
        score = music21.stream.Score()
        score.insert(0, parsed)
        parsed = score
    return parsed


@contextmanager
def _time_limit(seconds: float, message: str) -> Iterator[None]:
    """Raise :class:`ThemeTooLarge` with ``message`` if the block runs longer (main thread only: SIGALRM)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    class Expired(BaseException):  # not an Exception: music21's own handlers must not swallow it
        pass

    def expire(signum, frame):
        raise Expired

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except Expired:
        raise ThemeTooLarge(message) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _check_size(n_notes: int, name: str) -> None:
    if n_notes > MAX_THEME_NOTES:
        raise ThemeTooLarge(f"{name}: {n_notes} notes, too many for a theme (at most {MAX_THEME_NOTES}); {_TOO_LONG}")


def parse_corpus_work(work: str) -> music21.stream.Score:
    """A work of music21's bundled corpus (e.g. ``"bach/bwv66.6"``), parsed as :func:`parse_score`."""
    return parse_score(music21.corpus.getWork(work))


def select_part(score: music21.stream.Score, part: str | int, name: str) -> music21.stream.Score:
    parts = list(score.parts)
    if isinstance(part, int) or str(part).isdigit():
        index = int(part)
        if not 0 <= index < len(parts):
            raise ThemeError(f"{name}: part index {index} out of range (the score has {len(parts)} parts)")
        chosen = parts[index]
    else:
        matches = [p for p in parts if str(part).lower() in {str(p.partName).lower(), str(p.id).lower()}]
        if not matches:
            names = ", ".join(f"{i}: {_part_label(p)}" for i, p in enumerate(parts))
            raise ThemeError(f"{name}: no part named {part!r} (parts are {names})")
        chosen = matches[0]
    selected = music21.stream.Score()
    selected.insert(0, chosen)
    return selected


def select_measures(score: music21.stream.Score, measures: tuple[int, int],
                    name: str) -> tuple[music21.stream.Score, float]:
    """The measures ``first``–``last`` of ``score`` and the quarter-note offset where they start.

    The range is checked against the score's own :func:`measure_numbers` first: music21's
    ``score.measures(a, b)`` allocates in proportion to ``b``, whatever the score holds, so an
    absurd upper bound would exhaust memory.
    """
    first, last = measures
    if first < 0 or last < first:
        raise ThemeError(f"{name}: bad measure range {first}-{last}")
    numbers = measure_numbers(score)
    if not numbers:
        raise ThemeError(f"{name}: the score has no numbered measures to choose from")
    if last > numbers[-1]:
        raise ThemeError(f"{name}: measures {first}-{last} are not all in the score "
                         f"(its measures: {numbers[0]}-{numbers[-1]})")
    measure = score.parts[0].measure(first) if score.parts else None
    if measure is None:
        raise ThemeError(f"{name}: no measure {first} in the score")
    return score.measures(first, last), float(measure.getOffsetInHierarchy(score.parts[0]))


def measure_numbers(score: music21.stream.Score) -> list[int]:
    """The sorted measure numbers of the score's first part (empty for a score without measures)."""
    part = score.parts[0] if score.parts else score
    return sorted({int(m.number) for m in part.getElementsByClass(music21.stream.Measure)})


def _part_label(part: music21.stream.Part) -> str:
    """What a reader calls a part: its name, abbreviation or instrument (music21's ``id`` may be an object id)."""
    instrument = part.getInstrument(returnDefault=False)
    label = part.partName or part.partAbbreviation or (instrument.instrumentName if instrument else None)
    return str(label) if label else "(unnamed)"


def _bar_and_beat(part: music21.stream.Stream) -> Callable[[float], tuple[int, float]]:
    """Offset in ``part`` (quarter notes) → ``(measure number, beat)`` by its measures and time
    signatures (beats of ``TimeSignature.beatDuration``: a dotted quarter in 6/8); ``(0, 0.0)``
    for a part without measures."""
    bars = list(part.getElementsByClass(music21.stream.Measure))
    starts, numbers, beat_lengths, length = [], [], [], 1.0
    for bar in bars:
        if bar.timeSignature is not None:
            length = float(bar.timeSignature.beatDuration.quarterLength) or 1.0
        starts.append(float(part.elementOffset(bar)))
        numbers.append(int(bar.number))
        beat_lengths.append(length)

    def locate(offset: float) -> tuple[int, float]:
        i = bisect.bisect_right(starts, offset + 1e-9) - 1
        if i < 0:
            return 0, 0.0
        return numbers[i], round(1.0 + (offset - starts[i]) / beat_lengths[i], 3)

    return locate


def _tempo_map(score: music21.stream.Score, default_qpm: float) -> TempoMap:
    """The :class:`TempoMap` of the score's metronome marks."""
    marks = list(score.recurse().getElementsByClass(music21.tempo.MetronomeMark))
    if not marks:
        return TempoMap((0.0,), (0.0,), (60.0 / default_qpm,))
    offsets, secs, rates = [0.0], [0.0], [60.0 / default_qpm]
    for start, _, mark in score.metronomeMarkBoundaries():
        qpm = mark.getQuarterBPM() or default_qpm
        if start == offsets[-1]:
            rates[-1] = 60.0 / qpm
        else:
            secs.append(secs[-1] + (start - offsets[-1]) * rates[-1])
            offsets.append(float(start))
            rates.append(60.0 / qpm)
    return TempoMap(tuple(offsets), tuple(secs), tuple(rates))


def theme_from_stream(
    stream: music21.stream.Stream,
    *,
    part: str | int | None = None,
    measures: tuple[int, int] | None = None,
    expand_repeats: bool = False,
    default_qpm: float = DEFAULT_QPM,
    name: str = "score",
    whole_score: bool = False,
) -> Theme:
    """The :class:`Theme` of a music21 stream (a score, a part or a bare stream of notes).

    ``whole_score=True`` lifts the :data:`MAX_THEME_NOTES` limit, which guards queries: for
    rendering a full score or reading its labels, which are not themes.
    """
    score = stream if isinstance(stream, music21.stream.Score) else _wrap(stream)
    if part is None and measures is None and not whole_score:
        _check_size(sum(1 for _ in score.recurse().notes), name)
    if expand_repeats:
        try:
            score = score.expandRepeats()
        except Exception as error:  # music21's RepeatException and friends
            raise ThemeError(f"{name}: cannot expand repeats ({error})") from None
    score = _at_sounding_pitch(score)
    tempo = _tempo_map(score, default_qpm)
    base = 0.0  # quarter-note offset of the selection in the whole score
    if part is not None:
        score = select_part(score, part, name)
    if measures is not None:
        score, base = select_measures(score, measures, name)
    parts = list(score.parts) or [score]
    notes: list[NoteEvent] = []
    for index, p in enumerate(parts):
        instrument = p.getInstrument(returnDefault=True)
        program = instrument.midiProgram if instrument and instrument.midiProgram is not None else 0
        locate = _bar_and_beat(p)
        for element in p.flatten().stripTies().notes:
            if element.duration.isGrace or element.quarterLength <= 0:
                continue
            offset, length = float(element.getOffsetInHierarchy(p)), float(element.quarterLength)
            start = base + offset
            on, off = tempo.seconds(start), tempo.seconds(start + length)
            measure, beat = locate(offset)
            for pitch in element.pitches:
                notes.append(NoteEvent(on, off - on, int(round(pitch.ps)), int(program), index, start, length,
                                       measure, beat))
    if not notes:
        raise ThemeError(f"{name}: no notes in the selected score")
    if not whole_score:
        _check_size(len(notes), name)
    notes.sort(key=lambda n: (n.onset, n.pitch))
    t0 = notes[0].onset
    shifted = tuple(replace(n, onset=n.onset - t0) for n in notes)
    return Theme(shifted, name, t0, tempo, base)


def _at_sounding_pitch(score: music21.stream.Score) -> music21.stream.Score:
    """``score.toSoundingPitch()``, part by part and before anything has flattened the score.

    music21 deep-copies what it transposes, and the copy checks every element's sites against
    its streams: on a large orchestral score (Beethoven 9/4, 36 parts, 80,000 notes) the
    whole-score call, or a part's after the score was flattened once, takes many minutes; the
    parts of a fresh score one by one take seconds.
    """
    if not score.parts:
        return score.toSoundingPitch()
    sounding = music21.stream.Score()
    for element in score:
        converted = element.toSoundingPitch() if isinstance(element, music21.stream.Part) else element
        sounding.insert(score.elementOffset(element), converted)
    return sounding


def _wrap(stream: music21.stream.Stream) -> music21.stream.Score:
    score = music21.stream.Score()
    if isinstance(stream, music21.stream.Part):
        score.insert(0, stream)
    else:
        part = music21.stream.Part()
        for element in stream.flatten().notesAndRests:
            part.insert(element.getOffsetInHierarchy(stream), element)
        score.insert(0, part)
    return score


def load_theme(
    path: str | Path,
    *,
    part: str | int | None = None,
    measures: tuple[int, int] | None = None,
    expand_repeats: bool = False,
    default_qpm: float = DEFAULT_QPM,
    whole_score: bool = False,
) -> Theme:
    """Read a score file and return its :class:`Theme` (errors: :class:`ThemeError`, one line).

    ``whole_score``: as in :func:`theme_from_stream` (no note limit, for rendering and labels).
    """
    path = Path(path)
    score = parse_score(path)
    return theme_from_stream(score, part=part, measures=measures, expand_repeats=expand_repeats,
                             default_qpm=default_qpm, name=str(path), whole_score=whole_score)
