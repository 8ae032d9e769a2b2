"""The query API: a theme (score file, music21 stream or :class:`Theme`) → ranked matches.

::

    from db import IndexStore
    from retrieval import query

    store = IndexStore.open("music_index.db")
    result = query(store, "theme.musicxml", top=5)
    for match in result.matches:
        print(match.rank, match.score, match.path, match.start, match.end)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import music21

from models.retrieval_features import FeatureSettings
from retrieval.search import CONFIDENCE_MARGIN, CONFIDENCE_THRESHOLD, Collection, Match, SearchTimings, search
from retrieval.theme import Theme, ThemeError, load_theme, theme_from_stream
from retrieval.variants import TEMPO_SCALES, query_variants

__all__ = ["QueryResult", "query"]


@dataclass
class QueryResult:
    """Matches, best first, with the theme searched and the time each stage took."""

    matches: list[Match]
    theme: Theme
    timings: SearchTimings = field(default_factory=SearchTimings)

    @property
    def confident(self) -> bool:
        """Whether the best match is a confident one (else: "no confident match")."""
        return bool(self.matches) and self.matches[0].confident

    def as_dict(self) -> dict:
        return {
            "theme": self.theme.source,
            "confident_match": self.confident,
            "timings": {"parse": self.timings.extra.get("parse", 0.0),
                        "render": self.timings.extra.get("render", 0.0), "ann": self.timings.ann,
                        "rerank": self.timings.rerank, "total": self.timings.total},
            "matches": [m.as_dict() for m in self.matches],
        }


def _extractor_for(settings: FeatureSettings, device: str):
    from models.extractor import make_extractor

    return make_extractor(settings.model_id, device=device)


def _check_fits(theme: Theme, collection: Collection, fastest: float) -> None:
    """Refuse a theme that, even at the fastest tempo tried, lasts longer than every recording."""
    longest = max((r.duration or 0.0 for r in collection.recordings("indexed")), default=0.0)
    if longest and theme.duration / fastest > longest:
        raise ThemeError(
            f"{theme.source}: the theme lasts {theme.duration:.0f} s at its marked tempo "
            f"({theme.duration / fastest:.0f} s at the fastest tempo tried), longer than every recording "
            f"(the longest is {longest:.0f} s); "
            "choose a passage with --measures A-B and/or one part with --part"
        )


def query(
    collection: Collection,
    theme: Theme | str | Path | music21.stream.Stream,
    *,
    top: int = 10,
    part: str | int | None = None,
    measures: tuple[int, int] | None = None,
    expand_repeats: bool = False,
    transpose: bool = False,
    rendering: str = "symbolic",
    program: int | None = None,
    tempo_scales: Sequence[float] = TEMPO_SCALES,
    exhaustive: bool = False,
    candidates: int = 30,
    threshold: float = CONFIDENCE_THRESHOLD,
    margin_threshold: float = CONFIDENCE_MARGIN,
    extractor=None,
    device: str = "cpu",
) -> QueryResult:
    """Search ``collection`` for ``theme`` (see :func:`retrieval.search.search` for the stages).

    A theme longer than every recording, or with more than
    :data:`retrieval.theme.MAX_THEME_NOTES` notes, is refused with a :class:`ThemeError`.
    ``result.timings`` includes reading the theme (``extra["parse"]``).
    """
    timings = SearchTimings()
    t0 = time.perf_counter()
    if not isinstance(theme, Theme):
        if isinstance(theme, music21.stream.Stream):
            theme = theme_from_stream(theme, part=part, measures=measures, expand_repeats=expand_repeats)
        else:
            theme = load_theme(theme, part=part, measures=measures, expand_repeats=expand_repeats)
    timings.extra["parse"] = time.perf_counter() - t0
    _check_fits(theme, collection, max(tempo_scales))
    t0 = time.perf_counter()
    if rendering == "synthesised" and extractor is None:
        extractor = _extractor_for(collection.settings, device)
    variants = query_variants(
        theme, collection.settings, rendering=rendering, tempo_scales=tempo_scales, transpose=transpose,
        extractor=extractor, program=program,
    )
    timings.extra["render"] = time.perf_counter() - t0
    matches = search(
        collection, variants, top=top, candidates=candidates, exhaustive=exhaustive, threshold=threshold,
        margin_threshold=margin_threshold,
        timings=timings,
    )
    return QueryResult(matches, theme, timings)
