"""How a score's performance marks are played: loudness from dynamics, hairpins and accents, note
lengths from articulation, pizzicato strings — so that renderings balance their parts as the
composer marked them, as an orchestra does.

Used to render benchmark and training collections (``bench/render_scores.py --expression``). Each
part follows its own marks:

- a dynamic mark (``pp`` … ``ff``) sets the part's level from its offset on (:data:`DYNAMIC_DB`,
  in dB relative to *forte*); an unmarked part plays *mezzo-forte*;
- ``sf``/``sfz``/``fz``/``rf``/``rfz`` accent the note(s) at their offset only (at least *forte*,
  :data:`SFORZANDO_DB` above the current level); ``fp``/``sfp`` play that note forte (or accented)
  and the level drops to *piano* after it;
- a hairpin (wedge) or a written *cresc.*/*dim.* changes the level linearly from its start to the
  next dynamic mark (within :data:`HAIRPIN_REACH` quarter notes of its end), else by
  :data:`HAIRPIN_DB`;
- accent and marcato add :data:`ARTICULATION_DB`; staccato and friends shorten a note to a
  fraction of its written length (:data:`ARTICULATION_LENGTH`), other notes sound for
  :data:`LEGATO` of it;
- *pizz.* … *arco* in a string part switches it to GM program 45 (Pizzicato Strings).

For pianists, :func:`sustain_pedal` holds notes until the next pedal change and :func:`humanize`
adds the small onset and loudness deviations of a human performance.

Loudness becomes a MIDI velocity by :func:`velocity_for`; with the SoundFont renderer
(:mod:`retrieval.soundfont`) a note's amplitude is proportional to its velocity, so a mark's dB
value is the level change heard.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import music21
import numpy as np

from retrieval.theme import NoteEvent

__all__ = ["ARTICULATION_DB", "ARTICULATION_LENGTH", "DYNAMIC_DB", "HAIRPIN_DB", "HAIRPIN_REACH", "LEGATO",
           "NoteExpression", "SFORZANDO_DB", "expressive_notes", "humanize", "score_expression", "sustain_pedal",
           "velocity_for"]

DYNAMIC_DB: dict[str, float] = {
    "pppp": -30.0, "ppp": -24.0, "pp": -18.0, "p": -12.0, "mp": -7.0,
    "mf": -3.5, "f": 0.0, "ff": 3.5, "fff": 6.0, "ffff": 6.0,
}
"""Level of each dynamic mark in dB relative to *forte* (about 6 dB per step from p to pp, 3.5 near f)."""

UNMARKED_DB = DYNAMIC_DB["mf"]
SFORZANDO_DB = 6.0
"""An ``sf``-type mark plays its note this much above the current level (and at least at ``f`` + this)."""
ARTICULATION_DB: dict[type, float] = {music21.articulations.StrongAccent: 6.0, music21.articulations.Accent: 4.0}
ARTICULATION_LENGTH: dict[type, float] = {
    music21.articulations.Staccatissimo: 0.3,
    music21.articulations.Spiccato: 0.4,
    music21.articulations.Staccato: 0.5,
    music21.articulations.Tenuto: 1.0,
}
LEGATO = 0.95
"""Sounding fraction of a note's written length without a length articulation."""
HAIRPIN_DB = 6.0
HAIRPIN_REACH = 4.0
TEXT_HAIRPIN_QUARTERS = 8.0
"""A written *cresc.*/*dim.* with no dynamic mark in reach ramps over this many quarter notes."""
FORTE_VELOCITY = 64
PIZZICATO_PROGRAM = 45
STRING_PROGRAMS = range(40, 52)

_SFORZANDI = {"sf", "sfz", "sffz", "fz", "rf", "rfz", "sfzp"}
_FORTEPIANI = {"fp": 0.0, "sfp": SFORZANDO_DB}


@dataclass(frozen=True)
class NoteExpression:
    """How one written note is played: ``level_db`` relative to *forte*, ``length`` as a fraction of
    its written duration, ``program`` a GM program replacing the part's (pizzicato) or None."""

    level_db: float = UNMARKED_DB
    length: float = LEGATO
    program: int | None = None


def velocity_for(level_db: float) -> int:
    """MIDI velocity (1–127) of a level in dB relative to *forte* (velocity :data:`FORTE_VELOCITY`)."""
    return int(np.clip(round(FORTE_VELOCITY * 10 ** (level_db / 20)), 1, 127))


@dataclass
class _Ramp:
    start: float
    end: float
    direction: float  # +1 crescendo, -1 diminuendo
    target: float | None = None


class _Levels:
    """One part's level as a function of score offset: steps at dynamic marks, linear ramps."""

    def __init__(self, marks: _Marks, ramps: list[_Ramp]):
        self.times: list[float] = []
        self.values: list[float] = []
        self.accents: dict[float, float] = {}  # offset → level of the accented note(s)
        level = UNMARKED_DB
        for offset, value in sorted(marks, key=lambda m: m[0]):
            if value in DYNAMIC_DB:
                level = DYNAMIC_DB[value]
                self._step(offset, level)
            elif value in _SFORZANDI:
                self.accents[offset] = max(level, DYNAMIC_DB["f"]) + SFORZANDO_DB
            elif value in _FORTEPIANI:
                self.accents[offset] = DYNAMIC_DB["f"] + _FORTEPIANI[value]
                level = DYNAMIC_DB["p"]
                self._step(offset + 1e-6, level)
        self.ramps = []
        for ramp in sorted(ramps, key=lambda r: r.start):
            start_level = self._step_level(ramp.start)
            target = self._next_mark_level(ramp.end, marks)
            if target is None:
                target = float(np.clip(start_level + ramp.direction * HAIRPIN_DB,
                                       DYNAMIC_DB["pppp"], DYNAMIC_DB["fff"]))
            self._step(ramp.end, target, keep_existing=True)
            self.ramps.append((ramp.start, ramp.end, start_level, target))

    def _step(self, offset: float, level: float, keep_existing: bool = False) -> None:
        i = bisect.bisect_right(self.times, offset)
        if keep_existing and i < len(self.times) and self.times[i] == offset:
            return
        self.times.insert(i, offset)
        self.values.insert(i, level)

    def _step_level(self, offset: float) -> float:
        i = bisect.bisect_right(self.times, offset)
        return self.values[i - 1] if i else UNMARKED_DB

    @staticmethod
    def _next_mark_level(end: float, marks: _Marks) -> float | None:
        later = [(o, v) for o, v in marks if v in DYNAMIC_DB and end - 1e-6 <= o <= end + HAIRPIN_REACH]
        return DYNAMIC_DB[min(later)[1]] if later else None

    def at(self, offset: float) -> float:
        """Level in dB at ``offset`` (a sforzando accent replaces it on its note)."""
        for start, end, first, last in self.ramps:
            if start <= offset < end:
                return first + (last - first) * (offset - start) / (end - start)
        return self._step_level(offset)


_Marks = list[tuple[float, str]]


def _part_marks(part: music21.stream.Part, flat: music21.stream.Stream
                ) -> tuple[_Marks, list[_Ramp], list[tuple[float, bool]]]:
    """Dynamic marks, hairpins (wedges and written cresc./dim.) and pizz./arco switches of one part."""
    marks = [(float(flat.elementOffset(d)), str(d.value)) for d in flat.getElementsByClass(music21.dynamics.Dynamic)]
    ramps, pizzicato = [], []
    for wedge in part.spannerBundle.getByClass(music21.dynamics.DynamicWedge):
        first, last = wedge.getFirst(), wedge.getLast()
        try:
            start, end = float(first.getOffsetInHierarchy(part)), float(last.getOffsetInHierarchy(part))
        except music21.sites.SitesException:
            continue
        if end <= start:
            end = start + float(last.quarterLength or 1.0)
        ramps.append(_Ramp(start, end, 1.0 if isinstance(wedge, music21.dynamics.Crescendo) else -1.0))
    dynamic_offsets = sorted(o for o, v in marks if v in DYNAMIC_DB)
    for text in flat.getElementsByClass(music21.expressions.TextExpression):
        words, offset = (text.content or "").strip().lower(), float(flat.elementOffset(text))
        if words.startswith(("cresc", "dim", "decresc")):
            i = bisect.bisect_right(dynamic_offsets, offset)
            end = dynamic_offsets[i] if i < len(dynamic_offsets) else offset + TEXT_HAIRPIN_QUARTERS
            if end - offset > 4 * TEXT_HAIRPIN_QUARTERS:
                end = offset + TEXT_HAIRPIN_QUARTERS
            ramps.append(_Ramp(offset, end, 1.0 if words.startswith("cresc") else -1.0))
        elif words.startswith("pizz"):
            pizzicato.append((offset, True))
        elif words.startswith("arco"):
            pizzicato.append((offset, False))
    return marks, ramps, sorted(pizzicato)


def score_expression(score: music21.stream.Score) -> dict[tuple[int, float], NoteExpression]:
    """Every note's :class:`NoteExpression`, keyed by (part index, score offset in quarter notes
    rounded to 4 decimals) — the ``part`` and ``score_onset`` of the :class:`NoteEvent` s that
    :func:`retrieval.theme.theme_from_stream` makes of the same score."""
    expression: dict[tuple[int, float], NoteExpression] = {}
    parts = list(score.parts) or [score]
    for index, part in enumerate(parts):
        flat = part.flatten()
        marks, ramps, pizzicato = _part_marks(part, flat)
        levels = _Levels(marks, ramps)
        accent_offsets = sorted(levels.accents)
        instrument = part.getInstrument(returnDefault=True)
        strings = instrument is not None and instrument.midiProgram in STRING_PROGRAMS
        switch_offsets = [o for o, _ in pizzicato]
        for element in flat.stripTies().notes:
            if element.duration.isGrace or element.quarterLength <= 0:
                continue
            offset = float(element.getOffsetInHierarchy(part))
            key = (index, round(offset, 4))
            if key in expression:
                continue
            level = levels.at(offset)
            i = bisect.bisect_left(accent_offsets, offset - 1e-6)
            if i < len(accent_offsets) and abs(accent_offsets[i] - offset) < 1e-6:
                level = levels.accents[accent_offsets[i]]
            length = LEGATO
            for articulation in element.articulations:
                level += ARTICULATION_DB.get(type(articulation), 0.0)
                length = ARTICULATION_LENGTH.get(type(articulation), length)
            program = None
            j = bisect.bisect_right(switch_offsets, offset)
            if strings and j and pizzicato[j - 1][1]:
                program, length = PIZZICATO_PROGRAM, min(length, 0.5)
            expression[key] = NoteExpression(level, length, program)
    return expression


def expressive_notes(notes: Sequence[NoteEvent], expression: dict[tuple[int, float], NoteExpression]
                     ) -> tuple[list[NoteEvent], list[int]]:
    """``notes`` as played: lengths and programs per :func:`score_expression`, and one MIDI
    velocity per note (same order). Notes without an entry play unmarked (mf, legato)."""
    played, velocities = [], []
    for note in notes:
        how = expression.get((note.part, round(note.score_onset, 4)), NoteExpression())
        played.append(replace(note, duration=max(note.duration * how.length, 0.05),
                              program=note.program if how.program is None else how.program))
        velocities.append(velocity_for(how.level_db))
    return played, velocities


def sustain_pedal(notes: Sequence[NoteEvent], seconds: Callable[[float], float], period: float = 2.0
                  ) -> list[NoteEvent]:
    """``notes`` held by a sustain pedal that changes every ``period`` quarter notes: each note
    sounds at least until the first pedal change after its onset (a change at score offset ``q``
    sounds at ``seconds(q)``, the rendering's clock before tempo drift)."""
    held = []
    for note in notes:
        change = (np.floor(note.score_onset / period + 1e-9) + 1) * period
        held.append(replace(note, duration=max(note.duration, seconds(change) - note.onset)))
    return held


def humanize(notes: Sequence[NoteEvent], velocities: Sequence[int], seed: int, *, onset_ms: float = 15.0,
             velocity_db: float = 1.5) -> tuple[list[NoteEvent], list[int]]:
    """A performer's small deviations: each onset moved by Gaussian noise of ``onset_ms`` (standard
    deviation, never before 0) and each velocity by ``velocity_db``; the top note of each chord
    is voiced ``velocity_db`` louder, as pianists bring out the melody. Reproducible by ``seed``."""
    rng = np.random.default_rng(seed)
    top: dict[float, int] = {}
    for note in notes:
        top[round(note.onset, 4)] = max(top.get(round(note.onset, 4), -1), note.pitch)
    moved, loudness = [], []
    for note, velocity in zip(notes, velocities, strict=True):
        shift = float(rng.normal(0.0, onset_ms / 1000))
        gain = float(rng.normal(0.0, velocity_db)) + (velocity_db if note.pitch == top[round(note.onset, 4)] else 0.0)
        moved.append(replace(note, onset=max(note.onset + shift, 0.0)))
        loudness.append(int(np.clip(round(velocity * 10 ** (gain / 20)), 1, 127)))
    return moved, loudness
