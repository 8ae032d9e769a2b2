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

import functools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import music21
import numpy as np

from models.audio import is_audio_file
from models.retrieval_features import IndexSettings
from retrieval.excerpt import SAME_FRAMES, SELF_SIMILARITY, Excerpt, excerpt_variants, load_excerpt
from retrieval.following import with_notes
from retrieval.occurrences import Occurrence, all_occurrences, default_choice, with_occurrences
from retrieval.options import QueryOptions
from retrieval.search import Match, SearchableIndex, SearchTimings, search_many
from retrieval.theme import Theme, ThemeTooLarge, load_theme, theme_from_stream
from retrieval.variants import QueryVariant, query_variants, rendering_for

__all__ = ["QueryOptions", "QueryResult", "query", "query_many"]


@dataclass
class QueryResult:
    """Matches, best first, with the theme (or audio excerpt) searched and the time each stage took."""

    matches: list[Match]
    theme: Theme | Excerpt
    timings: SearchTimings = field(default_factory=SearchTimings)

    @property
    def confident(self) -> bool:
        """Whether the best match is a confident one (else: "no confident match")."""
        return bool(self.matches) and self.matches[0].confident

    @property
    def occurrences(self) -> list[Occurrence]:
        """Every place the theme sounds in the matched recordings, best first (with ``occurrences=True``)."""
        return all_occurrences(self.matches)

    def as_dict(self) -> dict:
        found = {
            "theme": self.theme.source,
            "query_kind": "audio" if isinstance(self.theme, Excerpt) else "score",
            "confident_match": self.confident,
            "timings": {"parse": self.timings.extra.get("parse", 0.0),
                        "render": self.timings.extra.get("render", 0.0), "ann": self.timings.ann,
                        "rerank": self.timings.rerank, "total": self.timings.total},
            "matches": [m.as_dict() for m in self.matches],
        }
        if any(m.occurrences for m in self.matches):
            found["occurrences"] = [o.as_dict() for o in self.occurrences]
        return found


@functools.lru_cache(maxsize=2)
def _extractor_for(settings: IndexSettings, device: str):
    """The index's model, loaded once per process (a network takes seconds to load; queries repeat)."""
    from models.extractor_factory import make_extractor  # PyTorch: only for themes that need the model

    return make_extractor(settings.model_id, device=device)


def _check_fits(theme: Theme | Excerpt, longest: float, fastest: float) -> None:
    """Refuse a theme that, even at the fastest tempo tried, lasts longer than every recording
    (``longest`` seconds)."""
    if longest and theme.duration / fastest > longest:
        what = "the excerpt lasts" if isinstance(theme, Excerpt) else "the theme lasts"
        raise ThemeTooLarge(
            f"{theme.source}: {what} {theme.duration:.0f} s"
            + ("" if isinstance(theme, Excerpt) else " at its marked tempo") + " "
            f"({theme.duration / fastest:.0f} s at the fastest tempo tried), longer than every recording "
            f"(the longest is {longest:.0f} s); "
            + ("cut a shorter excerpt" if isinstance(theme, Excerpt)
               else "choose a passage with --measures A-B and/or one part with --part")
        )


def query(
    collection: SearchableIndex,
    theme: Theme | str | Path | music21.stream.Stream,
    options: QueryOptions | None = None,
    *,
    extractor=None,
    **overrides,
) -> QueryResult:
    """Find the recordings of an index that contain a theme, best first, and where.

    The stages are those of :func:`retrieval.search.search`: the theme's query variants
    (:mod:`retrieval.variants`) → nearest stored shingles → vote → DTW re-ranking of the candidates.

    Parameters
    ----------
    collection : db.IndexStore
        An open index (``IndexStore.open(path, readonly=True)``), or anything with the methods of
        :class:`retrieval.search.SearchableIndex`.
    theme : Theme, str, Path or music21.stream.Stream
        A score file (MusicXML/MXL, MIDI, kern, ABC, MEI), a parsed stream, or a :class:`Theme`.
    options : QueryOptions, optional
        How to search (default :class:`QueryOptions`: top 10, candidates by the collection's size, rendering ``auto``).
    extractor : models.ChromaExtractor, optional
        The index's model, for themes rendered through audio; made from the index's settings
        when needed and not given.
    **overrides
        Any field of :class:`QueryOptions`: ``query(store, "theme.xml", top=5, transpose=True)``.

    Returns
    -------
    QueryResult
        ``matches`` (:class:`retrieval.search.Match`: ``rank``, ``score`` in [−1, 1], ``confident``,
        ``path``, ``start`` and ``end`` in seconds), the ``theme`` searched, and ``timings`` per
        stage (``extra["parse"]``: reading the theme).

    Raises
    ------
    ThemeError
        The score cannot be read, selects no notes, has more than
        :data:`retrieval.theme.MAX_THEME_NOTES` notes or is longer than every recording.
    models.errors.ParameterError
        An option out of range, or an index without searchable shingles yet.

    Examples
    --------
    >>> from db import IndexStore
    >>> from retrieval import query
    >>> store = IndexStore.open("demo/index.db", readonly=True)       # doctest: +SKIP
    >>> query(store, "demo/theme.musicxml", top=1).matches[0].path    # doctest: +SKIP
    '.../demo/audio/haydn_op74.wav'
    """
    return query_many(collection, [theme], options, extractor=extractor, **overrides)[0]


def query_many(
    collection: SearchableIndex,
    themes: list[Theme | str | Path | music21.stream.Stream],
    options: QueryOptions | None = None,
    *,
    extractor=None,
    **overrides,
) -> list[QueryResult]:
    """:func:`query` for several themes at once, in their order: one batched FAISS search for all
    their shingles and their candidates re-ranked on parallel threads (:func:`retrieval.search.search_many`);
    the results equal those of one :func:`query` per theme. The ANN and re-ranking times of each
    result are the batch's divided by the number of themes."""
    o = replace(options or QueryOptions(), **overrides)
    longest = collection.longest_duration()
    parsed: list[Theme | Excerpt] = []
    variant_sets: list[list[QueryVariant]] = []
    timings, skips = [], []
    for theme in themes:
        t = SearchTimings()
        t0 = time.perf_counter()
        audio = isinstance(theme, Excerpt) or (isinstance(theme, str | Path) and is_audio_file(theme))
        if audio and not isinstance(theme, Excerpt):
            extractor = extractor or _extractor_for(collection.settings, o.device)
            theme = load_excerpt(theme, extractor, collection.settings)
        elif not isinstance(theme, Theme | Excerpt):
            if isinstance(theme, music21.stream.Stream):
                theme = theme_from_stream(theme, part=o.part, measures=o.measures, expand_repeats=o.expand_repeats)
            else:
                theme = load_theme(theme, part=o.part, measures=o.measures, expand_repeats=o.expand_repeats)
        t.extra["parse"] = time.perf_counter() - t0
        _check_fits(theme, longest, max(o.tempo_scales))
        t0 = time.perf_counter()
        if isinstance(theme, Excerpt):
            variant_sets.append(excerpt_variants(theme, collection.settings, tempo_scales=o.tempo_scales,
                                                 transpose=o.transpose))
        else:
            rendering = rendering_for(theme, o.rendering)
            if rendering == "synthesised" and extractor is None:
                extractor = _extractor_for(collection.settings, o.device)
            variant_sets.append(query_variants(
                theme, collection.settings, rendering=rendering, tempo_scales=o.tempo_scales,
                transpose=o.transpose, extractor=extractor, program=o.program,
            ))
        t.extra["render"] = time.perf_counter() - t0
        skips.append(_own_source(collection, theme, variant_sets[-1]) if isinstance(theme, Excerpt) and o.exclude_self
                     else None)
        parsed.append(theme)
        timings.append(t)
    found = search_many(collection, variant_sets, o, timings=timings, skip=skips)
    results = []
    for matches, theme, variants, t in zip(found, parsed, variant_sets, timings, strict=True):
        t0 = time.perf_counter()
        if o.occurrences:
            matches = with_occurrences(collection, variants, matches, o.occurrence_score, _measure_range(theme))
            if o.min_score is None:
                matches = default_choice(matches)
        if isinstance(theme, Theme):
            matches = with_notes(collection, theme, variants, matches)
        t.extra["follow"] = time.perf_counter() - t0
        results.append(QueryResult(matches, theme, t))
    return results


def _measure_range(theme: Theme | Excerpt) -> tuple[int, int] | None:
    """The first and last measure of a theme's notes (``None``: an excerpt, or a score without measures)."""
    numbers = [n.measure for n in theme.notes if n.measure]
    return (min(numbers), max(numbers)) if numbers else None


def _own_source(collection: SearchableIndex, excerpt: Excerpt, variants: list[QueryVariant]):
    """``skip`` for :func:`retrieval.search.search_many`: the recording an excerpt was cut from — the
    same file, or the same audio: a match scoring :data:`SELF_SIMILARITY` whose frames also follow
    the excerpt's as it is (tempo scale 1, no transposition) frame by frame (:func:`_same_audio`)."""
    source = Path(excerpt.source).resolve()
    plain = next(v.features for v in variants if v.tempo_scale == 1.0 and v.transposition == 0)

    def own(recording_id: int, alignment: tuple[float, int, int, int]) -> bool:
        if alignment[0] >= SELF_SIMILARITY and _same_audio(plain, collection.frames(recording_id)):
            return True
        recording = collection.recording(recording_id)
        return recording is not None and Path(recording.path).resolve() == source

    return own


def _same_audio(excerpt: np.ndarray, recording: np.ndarray) -> bool:
    """Whether ``excerpt`` ``(N, 12)`` lies in ``recording`` ``(M, 12)`` unwarped: at some start the
    mean cosine of frame pairs on the straight diagonal reaches :data:`SAME_FRAMES`. Another
    performance drifts off any straight diagonal within seconds. Every start is tried, not only
    where the alignment put the excerpt: a passage that returns in its recording (a repeat) may align
    best with its return, while the excerpt was cut from its first statement."""
    n = len(excerpt)
    if n == 0 or len(recording) < n:
        return False
    windows = np.lib.stride_tricks.sliding_window_view(recording, (n, 12))[:, 0]  # (M − N + 1, N, 12)
    return bool(np.einsum("wnc,nc->w", windows, excerpt).max() / n >= SAME_FRAMES)
