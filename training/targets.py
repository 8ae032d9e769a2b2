"""Training targets of an :class:`~training.pairs.Excerpt`, as the two seed papers define them.

Classes are the network's: 0–11 the pitch classes C..B, :data:`BLANK` (12) the CTC blank, which
frame-wise targets also use for frames where the melody rests.
"""

from __future__ import annotations

import numpy as np

from models.frontend import FEATURE_RATE
from training.pairs import Excerpt

__all__ = ["BLANK", "LOSSES", "ctc_target", "linear_target", "strong_target"]

BLANK = 12
LOSSES = ("ctc", "linear", "strong")


def ctc_target(excerpt: Excerpt) -> np.ndarray:
    """The pitch-class sequence ``(n_notes,)`` of the excerpt; repeated notes stay separate symbols."""
    return np.array([n.pitch % 12 for n in excerpt.notes], dtype=np.int64)


def _fill(n_frames: int, spans: list[tuple[float, float, int]]) -> np.ndarray:
    """Frame classes ``(n_frames,)``: blank, then each ``(first, stop, class)`` span in order (later wins)."""
    target = np.full(n_frames, BLANK, dtype=np.int64)
    for first, stop, pc in spans:
        a = int(np.clip(round(first), 0, n_frames - 1))
        b = int(np.clip(round(stop), a + 1, n_frames))
        target[a:b] = pc
    return target


def strong_target(excerpt: Excerpt) -> np.ndarray:
    """Frame-wise classes ``(n_frames,)`` from the notes' times in the audio (an alignment)."""
    spans = [(n.onset * FEATURE_RATE - excerpt.start, n.offset * FEATURE_RATE - excerpt.start, n.pitch % 12)
             for n in excerpt.notes]
    return _fill(excerpt.n_frames, spans)


def linear_target(excerpt: Excerpt) -> np.ndarray:
    """Frame-wise classes ``(n_frames,)``: the excerpt's score stretched linearly over its frames.

    Score time from the first note's onset to the last note's end (quarter notes) maps onto the
    excerpt's frames; only the excerpt's boundaries are taken from the audio.
    """
    q0 = excerpt.notes[0].score_onset
    q1 = max(n.score_offset for n in excerpt.notes)
    scale = excerpt.n_frames / max(q1 - q0, 1e-9)
    spans = [((n.score_onset - q0) * scale, (n.score_offset - q0) * scale, n.pitch % 12) for n in excerpt.notes]
    return _fill(excerpt.n_frames, spans)
