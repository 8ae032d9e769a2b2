"""Note by note: when each note of a theme sounds in a matched recording.

The DTW path between the theme's query variant and the recording (:func:`retrieval.dtw.subsequence_path`)
maps every theme frame to a recording frame; a note's time is that of the frame its onset falls on
(at the variant's tempo). The page uses these times to highlight the sounding note of the engraved
theme while the match plays, and to seek the player to a clicked note.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from retrieval.dtw import subsequence_path
from retrieval.search import Match, SearchableIndex, recording_frames
from retrieval.theme import NoteEvent, Theme
from retrieval.variants import QueryVariant

__all__ = ["NoteTime", "note_times", "with_notes"]

WINDOW_SLACK = 2
"""Frames either side of a match's span that its note path may use (the span is the best path's own)."""


@dataclass(frozen=True)
class NoteTime:
    """One theme note and when it sounds in the recording (seconds)."""

    measure: int  # 0 where the score has no measures
    beat: float
    pitch: int  # MIDI, as written (before any transposition the match needed)
    time: float
    quarter: float = 0.0  # quarter notes from the passage's first measure (an engraving's time stamp)

    def as_dict(self) -> dict:
        return asdict(self)


def note_times(notes: Sequence[NoteEvent], variant: QueryVariant, path: np.ndarray, first_frame: int,
               rate: float, offset: float = 0.0) -> tuple[NoteTime, ...]:
    """Each note's time in the recording, from the warping ``path`` ``(K, 2)`` (theme frame, frame of
    the aligned excerpt starting at recording frame ``first_frame``) of ``variant`` (the theme at
    ``variant.tempo_scale``), at ``rate`` frames per second. A note's onset ``t`` seconds into the
    theme at nominal tempo is theme frame ``round(t / tempo_scale · rate)``; its time is the first
    recording frame the path pairs with that theme frame. ``offset``: the passage's start in the
    score (quarter notes, :attr:`retrieval.theme.Theme.offset`), so that ``quarter`` counts from it."""
    if len(path) == 0:
        return ()
    last = len(variant.features) - 1
    frames = np.array([min(last, int(round(n.onset / variant.tempo_scale * rate))) for n in notes])
    rows = np.minimum(np.searchsorted(path[:, 0], frames, side="left"), len(path) - 1)
    times = (first_frame + path[rows, 1]) / rate
    return tuple(NoteTime(n.measure, n.beat, n.pitch, round(float(t), 3), round(n.score_onset - offset, 4))
                 for n, t in zip(notes, times, strict=True))


def _variant_of(variants: Sequence[QueryVariant], match: Match) -> QueryVariant:
    """The variant a match was found with (its tempo scale is rounded to 3 places in the match)."""
    same = [v for v in variants if v.transposition == match.transposition] or list(variants)
    return min(same, key=lambda v: abs(v.tempo_scale - match.tempo_scale))


def with_notes(collection: SearchableIndex, theme: Theme, variants: Sequence[QueryVariant],
               matches: Sequence[Match]) -> list[Match]:
    """``matches`` with :attr:`Match.notes` filled: the ``theme``'s notes timed in each match's span
    (the variant it was found with, aligned again within the span and :data:`WINDOW_SLACK` frames)."""
    rate = collection.settings.rate
    out = []
    for m in matches:
        variant = _variant_of(variants, m)
        features = recording_frames(collection, m.recording_id)
        lo = max(0, int(round(m.start * rate)) - WINDOW_SLACK)
        hi = min(len(features), int(round(m.end * rate)) + WINDOW_SLACK)
        _, path = subsequence_path(variant.features, features[lo:hi])
        out.append(replace(m, notes=note_times(theme.notes, variant, path, lo, rate, theme.offset)))
    return out
