"""A recording as the query: an audio excerpt → query variants, as a theme's.

The excerpt passes through the index's own chroma extractor and the recordings' path to retrieval
features (:func:`models.retrieval_features.retrieval_features`), so its frames are what the
collection stores; where the index keeps CENS (``settings.cens_frames``) the excerpt's CENS comes
from the same pass, and its candidates are scored by both, as a full-texture theme's
(:func:`retrieval.search._fused`, CENS weighted :data:`retrieval.options.EXCERPT_CENS_WEIGHT`):
an excerpt is a texture. Its tempo is a performer's, not the collection's: like a theme it is tried at
the :data:`retrieval.options.TEMPO_SCALES` (its 25 Hz chroma resampled in time,
:func:`retrieval.variants.stretched`) and, on request, in all 12 transpositions. The rest of the search is the theme's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.audio import AudioError, check_readable, decode_audio
from models.frontend import FEATURE_RATE
from models.retrieval_features import IndexSettings, cens_rows, retrieval_features
from retrieval.options import EXCERPT_CENS_WEIGHT, TEMPO_SCALES
from retrieval.variants import QueryVariant, stretched

__all__ = ["SAME_FRAMES", "SELF_SIMILARITY", "Excerpt", "excerpt_variants", "load_excerpt"]

SELF_SIMILARITY = 0.95
"""``exclude_self``: a match scoring this much may be the excerpt's own audio (bach_violin,
docs/benchmarks.md: excerpts cut from a recording score 0.987–1 against it; another performance
of the passage up to 0.973 after warping) — it is when its frames also follow the excerpt's
unwarped (:data:`SAME_FRAMES`)."""

SAME_FRAMES = 0.91
"""Mean cosine of an excerpt's frames (tempo scale 1) and a recording's on a straight diagonal from
which they are the same audio: cut excerpts reach 0.92–0.99 against their source (the cut falls
between frames), another performance of the passage at most 0.89 (bach_violin, 36 excerpts)."""


@dataclass(frozen=True)
class Excerpt:
    """An audio excerpt as the query: its chroma ``(12, T)`` at 25 Hz, the file it came from, and
    its CENS ``(12, T)`` at 25 Hz where the index keeps CENS (else ``None``)."""

    chroma: np.ndarray
    source: str
    cens: np.ndarray | None = None
    notes: tuple = ()  # an excerpt has no score notes to follow

    @property
    def duration(self) -> float:
        return self.chroma.shape[1] / FEATURE_RATE


def load_excerpt(path: str | Path, extractor, settings: IndexSettings) -> Excerpt:
    """Decode an audio file and extract its chroma with ``extractor`` (the index's model), and its
    CENS where ``settings.cens_frames``.

    Raises :class:`models.audio.AudioError` (one line naming the file) for unreadable audio and
    for an excerpt shorter than one shingle of ``settings`` (nothing to search with).
    """
    path = Path(path)
    check_readable(path)
    samples = decode_audio(path).samples
    found = extractor.from_signal(samples, cens=True) if settings.cens_frames else extractor.from_signal(samples)
    chroma = found.chroma
    shortest = settings.shingle_length / settings.rate
    if chroma.shape[1] / FEATURE_RATE < shortest:
        raise AudioError(f"{path}: the excerpt lasts {chroma.shape[1] / FEATURE_RATE:.2f} s; "
                         f"a query needs at least {shortest:.2f} s of audio")
    return Excerpt(chroma, str(path), found.cens)


def excerpt_variants(excerpt: Excerpt, settings: IndexSettings, *, tempo_scales: Sequence[float] = TEMPO_SCALES,
                     transpose: bool = False) -> list[QueryVariant]:
    """Every (tempo scale, transposition) of ``excerpt`` as retrieval features, in the order of
    :func:`retrieval.variants.query_variants`, with CENS rows (:func:`models.retrieval_features.cens_rows`)
    where the excerpt has CENS and ``settings`` keep it."""
    with_cens = excerpt.cens is not None and settings.cens_frames
    variants = []
    for scale in tempo_scales:
        chroma = stretched(excerpt.chroma, scale)
        cens = stretched(excerpt.cens, scale) if with_cens else None
        for shift in range(12) if transpose else (0,):
            features = retrieval_features(np.roll(chroma, shift, axis=0), settings.downsample, settings.smoothing)
            variants.append(QueryVariant(scale, shift, features,
                                         None if cens is None else cens_rows(np.roll(cens, shift, axis=0), settings),
                                         EXCERPT_CENS_WEIGHT))
    return variants
