"""SoundFont rendering of notes to audio (TinySoundFont), with the General MIDI SoundFont that
ships inside the ``pretty_midi`` package (TimGM6mb, GPL-2, 6 MB) — nothing is downloaded.

Used to synthesise themes for the audio-side query rendering and to build test and benchmark
collections from scores.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from models.errors import ParameterError, RetrievalError
from models.frontend import SAMPLE_RATE
from retrieval.theme import NoteEvent

__all__ = ["SynthError", "TempoWarp", "default_soundfont", "render_notes", "tempo_warp_for", "vary_tempo"]


class SynthError(RetrievalError, RuntimeError):
    """The synthesiser or its SoundFont is not available."""


def default_soundfont() -> Path:
    """Path of the GM SoundFont bundled with ``pretty_midi``."""
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or spec.origin is None:
        raise SynthError("SoundFont rendering needs the pretty_midi package (it ships the GM SoundFont)")
    path = Path(spec.origin).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise SynthError(f"{path}: the SoundFont of pretty_midi is missing")
    return path


def _synth(sample_rate: int, soundfont: Path | None):
    try:
        import tinysoundfont
    except ImportError:
        raise SynthError(
            "SoundFont rendering needs tinysoundfont: pip install --no-deps tinysoundfont==0.3.7"
        ) from None
    synth = tinysoundfont.Synth(samplerate=sample_rate, gain=-6.0)
    return synth, synth.sfload(str(soundfont or default_soundfont()))


def render_notes(
    notes: Sequence[NoteEvent],
    sample_rate: int = SAMPLE_RATE,
    *,
    program: int | None = None,
    velocity: int | Sequence[int] = 90,
    tail: float = 1.0,
    soundfont: Path | None = None,
) -> np.ndarray:
    """Mono float32 audio of ``notes``; each part on its own channel with its GM program.

    ``program`` overrides every part's instrument (e.g. 40 = violin). ``velocity`` is one MIDI
    velocity for all notes or one per note (a louder melody). ``tail`` seconds of release
    follow the last note-off. Loud mixtures are scaled to a peak of 0.9 (no clipping in a file).
    """
    if not notes:
        raise ParameterError("no notes to render")
    velocities = np.broadcast_to(np.clip(np.asarray(velocity, dtype=int), 1, 127), (len(notes),))
    synth, sfid = _synth(sample_rate, soundfont)
    channels: dict[tuple[int, int], int] = {}
    events: list[tuple[float, int, int, int, int]] = []  # (time, 0=off/1=on, channel, pitch, velocity)
    for note, vel in zip(notes, velocities, strict=True):
        prog = program if program is not None else note.program
        key = (note.part, prog)
        if key not in channels:
            chan = len(channels) % 15
            chan += chan >= 9  # channel 9 is the GM drum kit
            channels[key] = chan
            synth.program_select(chan, sfid, 0, int(prog) % 128)
        pitch = int(np.clip(note.pitch, 0, 127))
        events.append((note.onset, 1, channels[key], pitch, int(vel)))
        events.append((note.onset + max(note.duration, 0.02), 0, channels[key], pitch, 0))
    events.sort()
    total = int((events[-1][0] + tail) * sample_rate)
    out = np.zeros(total, dtype=np.float32)
    position = 0
    for time, is_on, chan, pitch, vel in events:
        target = min(int(time * sample_rate), total)
        if target > position:
            out[position:target] = _generate(synth, target - position)
            position = target
        if is_on:
            synth.noteon(chan, pitch, vel)
        else:
            synth.noteoff(chan, pitch)
    if total > position:
        out[position:] = _generate(synth, total - position)
    peak = float(np.abs(out).max())
    return out * (0.9 / peak) if peak > 0.9 else out


def _generate(synth, n: int) -> np.ndarray:
    stereo = np.frombuffer(synth.generate(n), dtype=np.float32).reshape(-1, 2)
    return stereo.mean(axis=1)


@dataclass(frozen=True)
class TempoWarp:
    """A smooth random tempo curve: nominal seconds → performed seconds (a performance is never
    metronomic).

    The local tempo factor is ``exp(depth · s(t))`` with ``s`` a sum of three slow sinusoids of
    random phase (periods around ``period`` seconds), so tempo drifts by about ±``depth``. The
    curve is defined on ``[0, end]`` (linear beyond) and fully determined by its fields, so the
    time of any score event in a rendering can be recomputed from them (training labels).
    """

    depth: float
    end: float
    period: float = 10.0
    seed: int = 0

    @cached_property
    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        grid = np.arange(0.0, self.end + 0.01, 0.01)
        periods = self.period * rng.uniform(0.5, 2.0, 3)
        phases = rng.uniform(0, 2 * np.pi, 3)
        curve = sum(np.sin(2 * np.pi * grid / p + ph) for p, ph in zip(periods, phases, strict=True)) / np.sqrt(1.5)
        warped = np.concatenate([[0.0], np.cumsum(np.exp(-self.depth * curve[:-1]) * 0.01)])
        return grid, warped

    def __call__(self, t: float) -> float:
        """Performed time of nominal time ``t`` (seconds)."""
        if self.depth == 0:
            return float(t)
        grid, warped = self._table
        return float(np.interp(t, grid, warped))

    def as_dict(self) -> dict[str, float]:
        return {"depth": self.depth, "end": self.end, "period": self.period, "seed": self.seed}


def tempo_warp_for(notes: Sequence[NoteEvent], depth: float = 0.1, period: float = 10.0, seed: int = 0) -> TempoWarp:
    """The :class:`TempoWarp` :func:`vary_tempo` applies to ``notes``."""
    return TempoWarp(depth, max(n.onset + n.duration for n in notes) + 1.0, period, seed)


def vary_tempo(notes: Sequence[NoteEvent], depth: float = 0.1, period: float = 10.0, seed: int = 0) -> list[NoteEvent]:
    """Notes re-timed by the :class:`TempoWarp` of :func:`tempo_warp_for`."""
    if depth == 0:
        return list(notes)
    warp = tempo_warp_for(notes, depth, period, seed)
    return [NoteEvent(warp(n.onset), warp(n.onset + n.duration) - warp(n.onset), n.pitch, n.program, n.part)
            for n in notes]
