"""A theme → query features at the retrieval rate, symbolically or through audio.

``symbolic``: each note sets its pitch class for its duration on the 25 Hz grid of the audio
chroma; ``synthesised``: the theme is rendered with a SoundFont (:mod:`retrieval.soundfont`) and passed
through the same deep chroma extractor as the recordings; ``auto`` (the default) chooses by the
theme's texture (:func:`rendering_for`): a melody symbolically, a full texture (on average
:data:`POLYPHONY_FOR_AUDIO` or more notes at once: a piano excerpt of both staves) through audio,
because the deep model does not answer a chord with every pitch class the score holds, and the
theme's own rendering shows what it does answer. Both then take the recordings' path
(:func:`models.retrieval_features.retrieval_features`), so their frames are comparable.

A theme has no performance tempo: it is rendered at several tempo scales
(:data:`retrieval.options.TEMPO_SCALES`) around its nominal tempo, and in all 12 transpositions on
request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.errors import ParameterError
from models.frontend import FEATURE_RATE, SAMPLE_RATE
from models.retrieval_features import IndexSettings, cens_rows, retrieval_features
from retrieval.options import CENS_WEIGHT, RENDERINGS, TEMPO_SCALES
from retrieval.theme import NoteEvent, Theme

__all__ = ["POLYPHONY_FOR_AUDIO", "QueryVariant", "mean_polyphony", "query_variants",
           "rendering_for", "rendering_sources", "stretched", "symbolic_chroma", "synthesised_chroma"]

POLYPHONY_FOR_AUDIO = 2.0
"""``auto`` renders a theme through audio when this many notes or more sound at once on average."""


def mean_polyphony(notes: Sequence[NoteEvent]) -> float:
    """How many notes sound at once, averaged over the time any sounds (1.0 for a melody)."""
    events = sorted([(n.onset, 1) for n in notes] + [(n.onset + n.duration, -1) for n in notes])
    sounding, last, weighted, covered = 0, 0.0, 0.0, 0.0
    for time, change in events:
        if sounding:
            weighted += sounding * (time - last)
            covered += time - last
        sounding, last = sounding + change, time
    return weighted / covered if covered > 0 else 0.0


def rendering_for(theme: Theme, rendering: str = "auto") -> str:
    """``rendering``, with ``auto`` resolved by the theme's texture: ``synthesised`` when its
    :func:`mean_polyphony` is at least :data:`POLYPHONY_FOR_AUDIO`, else ``symbolic``."""
    if rendering not in RENDERINGS:
        raise ParameterError(f"rendering must be one of {RENDERINGS}, got {rendering!r}")
    if rendering != "auto":
        return rendering
    return "synthesised" if mean_polyphony(theme.notes) >= POLYPHONY_FOR_AUDIO else "symbolic"


@dataclass(frozen=True)
class QueryVariant:
    """The theme at one tempo scale and transposition, as retrieval features ``(T, 12)`` and, for
    a theme rendered through audio (or an audio excerpt) against an index that keeps CENS, its CENS
    rows ``(T_c, 12)`` (:func:`models.retrieval_features.cens_rows`) with their share
    ``cens_weight`` of a candidate's score (:func:`retrieval.search._fused`)."""

    tempo_scale: float
    transposition: int  # semitones the theme was shifted up
    features: np.ndarray
    cens: np.ndarray | None = None
    cens_weight: float = CENS_WEIGHT


def _scaled(notes: Sequence[NoteEvent], tempo_scale: float) -> list[NoteEvent]:
    """Notes played ``tempo_scale`` times faster."""
    return [NoteEvent(n.onset / tempo_scale, n.duration / tempo_scale, n.pitch, n.program, n.part) for n in notes]


def symbolic_chroma(notes: Sequence[NoteEvent], rate: float = FEATURE_RATE) -> np.ndarray:
    """Binary pitch-class activity ``(12, T)`` at ``rate`` Hz, L2-normalised per frame."""
    n_frames = max(1, int(np.ceil(max(n.onset + n.duration for n in notes) * rate)))
    chroma = np.zeros((12, n_frames), dtype=np.float32)
    for n in notes:
        start = min(int(round(n.onset * rate)), n_frames - 1)
        stop = max(start + 1, int(round((n.onset + n.duration) * rate)))
        chroma[n.pitch % 12, start:stop] = 1.0
    norms = np.linalg.norm(chroma, axis=0, keepdims=True)
    return np.where(norms > 0, chroma / np.maximum(norms, 1e-12), 1 / np.sqrt(12)).astype(np.float32)


def stretched(chroma: np.ndarray, tempo_scale: float) -> np.ndarray:
    """``chroma`` ``(12, T)`` played ``tempo_scale`` times faster: ``(12, round(T / tempo_scale))``
    frames, each interpolated linearly between the two nearest of the original."""
    n = max(1, int(round(chroma.shape[1] / tempo_scale)))
    at = np.minimum(np.arange(n) * tempo_scale, chroma.shape[1] - 1)
    lower = np.floor(at).astype(int)
    upper = np.minimum(lower + 1, chroma.shape[1] - 1)
    weight = (at - lower).astype(chroma.dtype)
    return chroma[:, lower] * (1 - weight) + chroma[:, upper] * weight


def synthesised_chroma(notes: Sequence[NoteEvent], extractor, program: int | None = None,
                       cens: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's chroma ``(12, T)`` of ``notes`` rendered with a SoundFont at their own tempo,
    and with ``cens`` the CENS ``(12, T)`` of the same front end (else ``None``)."""
    from retrieval.soundfont import render_notes  # the synthesiser: for synthesised renderings only

    signal = render_notes(notes, SAMPLE_RATE, program=program, tail=0.3)
    found = extractor.from_signal(signal, cens=True) if cens else extractor.from_signal(signal)
    return found.chroma, found.cens


def rendering_sources(tempo_scales: Sequence[float]) -> dict[float, float]:
    """Each tempo scale → the scale whose synthesised rendering it is stretched from.

    Every second scale in order, counted from the one nearest the nominal tempo, is rendered; each
    other scale takes its rendered neighbour (of two, the one nearer the nominal tempo). For the
    seven default scales that is three passes through the model instead of seven, a third of the
    audio, at no measured cost in MRR (docs/experiments.md, "Chordal themes rendered at three
    tempi"): the model's answer changes little over a third of an octave of tempo, while rendering
    only the nominal tempo lost 0.013 on bach_violin.
    """
    ordered = sorted(set(tempo_scales))
    nominal = min(range(len(ordered)), key=lambda i: abs(np.log(ordered[i])))
    rendered = range(nominal % 2, len(ordered), 2)
    return {s: ordered[min(rendered, key=lambda j: (abs(j - i), abs(j - nominal)))] for i, s in enumerate(ordered)}


def query_variants(
    theme: Theme,
    settings: IndexSettings,
    *,
    rendering: str = "auto",
    tempo_scales: Sequence[float] = TEMPO_SCALES,
    transpose: bool = False,
    extractor=None,
    program: int | None = None,
) -> list[QueryVariant]:
    """Every (tempo scale, transposition) of ``theme`` as retrieval features.

    ``extractor`` (a :class:`models.ChromaExtractor` of the index's model) is needed where the
    rendering is (or ``auto`` resolves to) ``synthesised``; ``program`` is the GM instrument it
    renders with (default: the score's own). Transpositions rotate the chroma (pitch-class shifts
    of the theme). A synthesised theme passes through the model at every second tempo scale only
    and the others are :func:`stretched` from the nearest of those (:func:`rendering_sources`);
    where the index keeps CENS (``settings.cens_frames``) its variants carry CENS rows too.
    """
    rendering = rendering_for(theme, rendering)
    if rendering == "synthesised" and extractor is None:
        raise ParameterError("synthesised rendering needs the index's chroma extractor")
    if any(s <= 0 for s in tempo_scales):
        raise ParameterError(f"tempo scales must be positive, got {tempo_scales}")
    rendered = {}
    with_cens = rendering == "synthesised" and settings.cens_frames
    if rendering == "synthesised":
        sources = rendering_sources(tempo_scales)
        rendered = {b: synthesised_chroma(_scaled(theme.notes, b), extractor, program, with_cens)
                    for b in set(sources.values())}
    variants = []
    for scale in tempo_scales:
        cens = None
        if rendering == "synthesised":
            ratio = scale / sources[scale]
            chroma, cens = (None if c is None else stretched(c, ratio) for c in rendered[sources[scale]])
        else:
            chroma = symbolic_chroma(_scaled(theme.notes, scale))
        for shift in range(12) if transpose else (0,):
            features = retrieval_features(np.roll(chroma, shift, axis=0), settings.downsample, settings.smoothing)
            variants.append(QueryVariant(scale, shift, features,
                                         None if cens is None else cens_rows(np.roll(cens, shift, axis=0), settings)))
    return variants
