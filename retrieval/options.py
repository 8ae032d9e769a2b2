"""How a theme is searched: :class:`QueryOptions` and the defaults it starts from.

Kept apart from :mod:`retrieval.query` and :mod:`retrieval.search` so that the command line and the
web API can describe their options (``--help``) without loading music21, numba or PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import ParameterError

__all__ = ["CANDIDATES", "CONFIDENCE_MARGIN", "CONFIDENCE_THRESHOLD", "OCCURRENCE_SCORE", "RENDERINGS", "TEMPO_SCALES",
           "QueryOptions"]

CANDIDATES = 30
"""Recordings passed from the ANN stage to DTW re-ranking in collections of up to ~260 h (more in
larger ones: :func:`retrieval.search.candidates_for`). On hauptstimme the right recording was
among them in 33 of 42 queries; 50 moved MRR by at most ±0.016 and was not adopted
(docs/benchmarks.md)."""

CONFIDENCE_MARGIN = 0.06
"""Lead of the best score over the runner-up's from which the best match is called confident.

Chosen on the bach_violin benchmark (docs/benchmarks.md): 95 % of wrong top-1 answers lead by
less, three quarters of right ones by more than 0.1. The raw score alone separates poorly (it
depends on the theme's texture), the lead over the other recordings adapts to it.
"""

CONFIDENCE_THRESHOLD = 0.7
"""The DTW similarity a confident match needs in any case (a theme absent from the collection can
still lead the runner-up by chance, but at a low score: ~0.55–0.6 in the tests; right answers on
bach_violin score 0.81 and more in 95 % of cases)."""

OCCURRENCE_SCORE = 0.8
"""By default, ``--occurrences`` lists the places of a best recording whose match is not confident
only when it scores this much: what right first answers on bach_violin reach in 95 % of cases
(0.81). The rest of the default rule: :mod:`retrieval.occurrences`."""

CENS_WEIGHT = 0.8
"""CENS's share of a full-texture theme's score (:func:`retrieval.search._fused`); the deep
chroma's is the rest. Chosen on the piano and bach_violin benchmarks (2026-12-08; 0.35, 0.5, 0.65,
0.8, 1.0: piano 0.913, 0.937, 0.954, 0.961, 0.941; bach_violin 0.935, 0.935, 0.944, 0.951, 0.958),
which also report it; the deep chroma still chooses the candidates, their tempo and where the theme
sounds."""

EXCERPT_CENS_WEIGHT = 0.5
"""CENS's share of an audio excerpt's score: audio against audio, both features come from the same
kind of signal, so they count equally. On bach_violin's cross-performance excerpts (2026-12-08;
weights 0, 0.3, 0.5, 0.8: rendered excerpt → real recording MRR 0.699, 0.745, 0.756, 0.733; real
excerpt → rendering 0.965, 0.967, 0.962, 0.948), and an excerpt's own recording then scores above
every other performance (0.987 against at most 0.973; deep chroma alone: 0.977 against 0.993)."""

TEMPO_SCALES = tuple(float(2 ** (k / 3)) for k in range(-3, 4))
"""Performance tempo ÷ nominal tempo tried for every theme: 0.5 … 2 in steps of 2**(1/3)."""

RENDERINGS = ("auto", "symbolic", "synthesised")
"""How a theme becomes chroma (:func:`retrieval.variants.rendering_for`): ``auto`` by its texture,
``symbolic`` from its notes, ``synthesised`` through audio and the index's model."""

@dataclass(frozen=True)
class QueryOptions:
    """How a theme is searched. The CLI builds one from its flags; the web API from a request.

    Selection of the theme: ``part`` (name or index), ``measures`` ``(first, last)``,
    ``expand_repeats``. Query variants (:mod:`retrieval.variants`): ``rendering`` (``auto`` by the
    theme's texture, ``symbolic``, or ``synthesised`` through the index's model on ``device``, with
    GM ``program``), ``tempo_scales``,
    ``transpose`` (all 12). Search (:func:`retrieval.search.search`): ``top`` recordings listed,
    ``neighbours`` fetched per query shingle (default: by the collection's size,
    :func:`retrieval.search.neighbours_for`) and ``candidates`` re-ranked after the ANN stage (default:
    by the size too, :func:`retrieval.search.candidates_for`; more of either: better recall in large
    collections, slower), ``exhaustive`` DTW instead, and the confidence
    rule ``threshold`` / ``margin_threshold`` (see :data:`CONFIDENCE_THRESHOLD`). Every place the
    theme sounds (:mod:`retrieval.occurrences`): ``occurrences``, each scoring at least ``min_score``
    (default: the rule of :mod:`retrieval.occurrences`). A recording as the query (:mod:`retrieval.excerpt`):
    ``exclude_self`` leaves out the recording it was cut from.
    """

    top: int = 10
    part: str | int | None = None
    measures: tuple[int, int] | None = None
    expand_repeats: bool = False
    transpose: bool = False
    rendering: str = "auto"
    program: int | None = None
    tempo_scales: tuple[float, ...] = TEMPO_SCALES
    exhaustive: bool = False
    candidates: int | None = None
    neighbours: int | None = None
    threshold: float = CONFIDENCE_THRESHOLD
    margin_threshold: float = CONFIDENCE_MARGIN
    device: str = "cpu"
    occurrences: bool = False
    min_score: float | None = None
    exclude_self: bool = False

    def __post_init__(self) -> None:
        if self.top < 1 or any(n is not None and n < 1 for n in (self.candidates, self.neighbours)):
            raise ParameterError(f"top, candidates and neighbours must be at least 1, got {self.top}, "
                                 f"{self.candidates} and {self.neighbours}")
        if self.min_score is not None and not -1.0 <= self.min_score <= 1.0:
            raise ParameterError(f"min_score is a similarity in [-1, 1], got {self.min_score}")

    @property
    def occurrence_score(self) -> float:
        """The least score an occurrence may have: ``min_score``, else the confidence ``threshold``."""
        return self.threshold if self.min_score is None else self.min_score
