"""Reading a theme from a score: notes with onsets in seconds, at sounding pitch.

Any format music21 reads (MusicXML ``.xml/.musicxml/.mxl``, MIDI, Humdrum ``**kern``, ABC, MEI).
Transposing instruments are converted to sounding pitch, tied notes merged, grace notes dropped
(they take no metrical time), repeats expanded on request. A score without tempo marks is
timed at :data:`DEFAULT_QPM` (the query side varies tempo anyway).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import music21

__all__ = ["DEFAULT_QPM", "NoteEvent", "Theme", "ThemeError", "load_theme", "theme_from_stream"]

DEFAULT_QPM = 120.0
"""Quarter notes per minute for a score without tempo marks (MIDI's and music21's default)."""


class ThemeError(ValueError):
    """A score that cannot serve as a theme: unreadable, no notes, or a bad selection."""


@dataclass(frozen=True)
class NoteEvent:
    """One sounding note: onset and duration in seconds, MIDI pitch, GM program of its part."""

    onset: float
    duration: float
    pitch: int
    program: int = 0
    part: int = 0


@dataclass(frozen=True)
class Theme:
    """The notes of a theme, sorted by onset, the first starting at 0."""

    notes: tuple[NoteEvent, ...]
    source: str = ""
    start: float = 0.0  # seconds of the first note in the whole score's timeline (nominal tempo)

    @property
    def duration(self) -> float:
        return max(n.onset + n.duration for n in self.notes)

    def transposed(self, semitones: int) -> Theme:
        notes = tuple(NoteEvent(n.onset, n.duration, n.pitch + semitones, n.program, n.part) for n in self.notes)
        return Theme(notes, self.source, self.start)


def _parse(path: Path) -> music21.stream.Score:
    if not path.is_file():
        raise ThemeError(f"{path}: no such file")
    try:
        parsed = music21.converter.parse(str(path))
    except Exception as error:  # music21 raises many kinds for a file it cannot read
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise ThemeError(f"{path}: not a readable score ({reason})") from None
    if isinstance(parsed, music21.stream.Opus):
        parsed = parsed.scores[0] if parsed.scores else music21.stream.Score()
    if not isinstance(parsed, music21.stream.Score):
        score = music21.stream.Score()
        score.insert(0, parsed)
        parsed = score
    return parsed


def _select_part(score: music21.stream.Score, part: str | int, name: str) -> music21.stream.Score:
    parts = list(score.parts)
    if isinstance(part, int) or str(part).isdigit():
        index = int(part)
        if not 0 <= index < len(parts):
            raise ThemeError(f"{name}: part index {index} out of range (the score has {len(parts)} parts)")
        chosen = parts[index]
    else:
        matches = [p for p in parts if str(part).lower() in {str(p.partName).lower(), str(p.id).lower()}]
        if not matches:
            names = ", ".join(f"{i}: {p.partName or p.id}" for i, p in enumerate(parts))
            raise ThemeError(f"{name}: no part named {part!r} (parts are {names})")
        chosen = matches[0]
    selected = music21.stream.Score()
    selected.insert(0, chosen)
    return selected


def _tempo_map(score: music21.stream.Score, default_qpm: float) -> tuple[list[float], list[float], list[float]]:
    """Breakpoints ``(offsets_ql, seconds_at, seconds_per_ql)`` of the score's tempo marks."""
    marks = list(score.recurse().getElementsByClass(music21.tempo.MetronomeMark))
    if not marks:
        return [0.0], [0.0], [60.0 / default_qpm]
    offsets, secs, rates = [0.0], [0.0], [60.0 / default_qpm]
    for start, _, mark in score.metronomeMarkBoundaries():
        qpm = mark.getQuarterBPM() or default_qpm
        if start == offsets[-1]:
            rates[-1] = 60.0 / qpm
        else:
            secs.append(secs[-1] + (start - offsets[-1]) * rates[-1])
            offsets.append(float(start))
            rates.append(60.0 / qpm)
    return offsets, secs, rates


def _seconds(offset: float, tempo: tuple[list[float], list[float], list[float]]) -> float:
    offsets, secs, rates = tempo
    i = bisect.bisect_right(offsets, offset) - 1
    return secs[i] + (offset - offsets[i]) * rates[i]


def theme_from_stream(
    stream: music21.stream.Stream,
    *,
    part: str | int | None = None,
    measures: tuple[int, int] | None = None,
    expand_repeats: bool = False,
    default_qpm: float = DEFAULT_QPM,
    name: str = "score",
) -> Theme:
    """The :class:`Theme` of a music21 stream (a score, a part or a bare stream of notes)."""
    score = stream if isinstance(stream, music21.stream.Score) else _wrap(stream)
    if expand_repeats:
        try:
            score = score.expandRepeats()
        except Exception as error:  # music21's RepeatException and friends
            raise ThemeError(f"{name}: cannot expand repeats ({error})") from None
    score = _at_sounding_pitch(score)
    tempo = _tempo_map(score, default_qpm)
    base = 0.0  # quarter-note offset of the selection in the whole score
    if part is not None:
        score = _select_part(score, part, name)
    if measures is not None:
        first, last = measures
        if first < 0 or last < first:
            raise ThemeError(f"{name}: bad measure range {first}-{last}")
        measure = score.parts[0].measure(first) if score.parts else None
        if measure is None:
            raise ThemeError(f"{name}: no measure {first} in the score")
        base = float(measure.getOffsetInHierarchy(score.parts[0]))
        score = score.measures(first, last)
    parts = list(score.parts) or [score]
    notes: list[NoteEvent] = []
    for index, p in enumerate(parts):
        instrument = p.getInstrument(returnDefault=True)
        program = instrument.midiProgram if instrument and instrument.midiProgram is not None else 0
        for element in p.flatten().stripTies().notes:
            if element.duration.isGrace or element.quarterLength <= 0:
                continue
            start = base + float(element.getOffsetInHierarchy(p))
            on, off = _seconds(start, tempo), _seconds(start + float(element.quarterLength), tempo)
            for pitch in element.pitches:
                notes.append(NoteEvent(on, off - on, int(round(pitch.ps)), int(program), index))
    if not notes:
        raise ThemeError(f"{name}: no notes in the selected score")
    notes.sort(key=lambda n: (n.onset, n.pitch))
    t0 = notes[0].onset
    return Theme(tuple(NoteEvent(n.onset - t0, n.duration, n.pitch, n.program, n.part) for n in notes), name, t0)


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
) -> Theme:
    """Read a score file and return its :class:`Theme` (errors: :class:`ThemeError`, one line)."""
    path = Path(path)
    score = _parse(path)
    return theme_from_stream(
        score, part=part, measures=measures, expand_repeats=expand_repeats, default_qpm=default_qpm, name=str(path)
    )
