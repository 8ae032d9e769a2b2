"""Small synthetic test signals: harmonic tones, for demos and tests that need known pitches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.errors import ParameterError
from models.frontend import SAMPLE_RATE

__all__ = ["harmonic_tones"]


def harmonic_tones(
    midi_pitches: Sequence[int],
    note_seconds: float = 0.5,
    sr: int = SAMPLE_RATE,
    n_partials: int = 3,
    rolloff: float = 0.3,
    lead_in: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """A melody of plucked harmonic tones after ``lead_in`` seconds of near-silence.

    Partial ``k`` has amplitude ``rolloff**(k-1)``; each note decays exponentially and sounds
    for ``note_seconds``. (The pretrained models, trained on real recordings, mistake tones
    with strong upper partials for other pitch classes, so the default timbre is mellow.)
    A little noise keeps silent frames non-degenerate.
    """
    if note_seconds <= 0 or n_partials < 1:
        raise ParameterError("note_seconds must be positive and n_partials at least 1")
    t = np.arange(int(note_seconds * sr)) / sr
    envelope = np.exp(-3.0 * t) * np.minimum(1.0, t / 0.01)
    notes = []
    for pitch in midi_pitches:
        f0 = 440.0 * 2.0 ** ((pitch - 69) / 12)
        partials = [
            np.sin(2 * np.pi * k * f0 * t) * rolloff ** (k - 1) for k in range(1, n_partials + 1) if k * f0 < sr / 2
        ]
        notes.append(envelope * np.sum(partials, axis=0))
    y = np.concatenate([np.zeros(int(lead_in * sr))] + notes) * 0.3
    y += 1e-4 * np.random.default_rng(seed).standard_normal(len(y))
    return y.astype(np.float32)
