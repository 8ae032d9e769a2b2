"""Every place a theme sounds in the recordings found: several per recording, none overlapping.

A ranked :class:`retrieval.search.Match` names one span per recording. A musicologist tracing a
theme wants all of them (repeats, recapitulations, a leitmotif's returns): each matched recording
is aligned whole with the theme at the match's tempo and its neighbours (one step of
:data:`retrieval.options.TEMPO_SCALES` either side, same transposition), and the matching
function's separate minima scoring at least the threshold are kept
(:func:`retrieval.dtw.subsequence_matches`).

Which places are listed (:func:`default_choice`): with a ``min_score`` given, every one scoring that
much; by default, those scoring at least the confidence threshold and within
:data:`OCCURRENCE_SPREAD` of their recording's best, in the best recording when its match is
confident or scores :data:`retrieval.options.OCCURRENCE_SCORE`, and in any other whose best
reaches :data:`SURE_SCORE`. A short theme (a bar of running sixteenths) scores nearly as well on
many similar figures as on its real returns; a real return is played like the first time, so it
scores about as well (bach_violin, docs/benchmarks.md: 90 % of annotated returns within 0.03 of the
best, 90 % of other places more than 0.08 below).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from retrieval.dtw import subsequence_matches
from retrieval.options import OCCURRENCE_SCORE
from retrieval.search import Match, SearchableIndex, alignment_pool
from retrieval.variants import QueryVariant

__all__ = ["MAX_PER_RECORDING", "OCCURRENCE_SPREAD", "SURE_SCORE", "TEMPO_NEIGHBOURHOOD", "Occurrence",
           "all_occurrences", "default_choice", "occurrences_in", "with_occurrences"]

TEMPO_NEIGHBOURHOOD = 1.3
"""Variants whose tempo scale lies within this factor of the match's are aligned too: a repeat is
played at about the tempo of the first time (the scales are 2**(1/3) ≈ 1.26 apart)."""

OCCURRENCE_SPREAD = 0.05
"""By default, places scoring more than this below their recording's best are not listed."""

SURE_SCORE = 0.95
"""By default, a recording other than the best lists its places only when its best reaches this:
a near-certain match (a second performance of the work), not a chance resemblance."""

MAX_PER_RECORDING = 50
"""Most occurrences listed per recording (a theme of one bar in a long work could match anywhere)."""


@dataclass(frozen=True)
class Occurrence:
    """One place the theme sounds: recording, span in seconds, score as :class:`Match`'s."""

    recording_id: int
    path: str
    start: float
    end: float
    score: float
    tempo_scale: float
    transposition: int
    measures: tuple[int, int] | None = None  # the theme's first and last measure (all of it is aligned)

    def as_dict(self) -> dict:
        return asdict(self)


def _neighbourhood(variants: Sequence[QueryVariant], match: Match) -> list[int]:
    """Indices of the variants at the match's transposition within :data:`TEMPO_NEIGHBOURHOOD` of its tempo."""
    return [i for i, v in enumerate(variants) if v.transposition == match.transposition
            and max(v.tempo_scale, match.tempo_scale) / min(v.tempo_scale, match.tempo_scale) <= TEMPO_NEIGHBOURHOOD]


def occurrences_in(target: np.ndarray, variants: Sequence[QueryVariant], chosen: Sequence[int],
                   min_score: float) -> list[tuple[float, int, int, int]]:
    """Non-overlapping ``(score, variant, start frame, end frame)`` of the ``chosen`` variants in a
    recording's features ``target (M, 12)``, best first: each variant's separate matches
    (:func:`retrieval.dtw.subsequence_matches`), then, over all of them, the best that overlaps
    none better."""
    found = [(a.similarity, vi, a.start, a.end) for vi in chosen
             for a in subsequence_matches(variants[vi].features, target, min_score, MAX_PER_RECORDING)]
    kept: list[tuple[float, int, int, int]] = []
    for candidate in sorted(found, key=lambda f: -f[0]):
        if all(candidate[3] < k[2] or candidate[2] > k[3] for k in kept):
            kept.append(candidate)
    return kept[:MAX_PER_RECORDING]


def with_occurrences(collection: SearchableIndex, variants: Sequence[QueryVariant], matches: Sequence[Match],
                     min_score: float, measures: tuple[int, int] | None = None) -> list[Match]:
    """``matches`` with their :attr:`Match.occurrences` filled: for each match scoring at least
    ``min_score``, every place in its recording the theme scores that much (its own span among
    them, the best first); the recordings are aligned on the re-ranking threads."""
    rate = collection.settings.rate
    targets = {m.recording_id: collection.frames(m.recording_id) for m in matches if m.score >= min_score}
    jobs = {m.recording_id: alignment_pool().submit(occurrences_in, targets[m.recording_id], variants,
                                          _neighbourhood(variants, m), min_score)
            for m in matches if m.recording_id in targets}
    out = []
    for m in matches:
        found = jobs[m.recording_id].result() if m.recording_id in jobs else []
        out.append(replace(m, occurrences=tuple(
            Occurrence(m.recording_id, m.path, round(start / rate, 2), round((end + 1) / rate, 2), round(score, 4),
                       round(variants[vi].tempo_scale, 3), variants[vi].transposition, measures)
            for score, vi, start, end in found)))
    return out


def default_choice(matches: Sequence[Match]) -> list[Match]:
    """``matches`` (best first) keeping, of their occurrences, those the default rule lists (module docstring)."""
    out = []
    for m in matches:
        top = max((o.score for o in m.occurrences), default=None)
        sure = m.rank == 1 and (m.confident or m.score >= OCCURRENCE_SCORE)
        listed = top is not None and (sure or top >= SURE_SCORE)
        kept = tuple(o for o in m.occurrences if listed and o.score >= top - OCCURRENCE_SPREAD)
        out.append(replace(m, occurrences=kept))
    return out


def all_occurrences(matches: Sequence[Match]) -> list[Occurrence]:
    """The occurrences of every match in one list, best score first."""
    return sorted((o for m in matches for o in m.occurrences), key=lambda o: -o.score)
