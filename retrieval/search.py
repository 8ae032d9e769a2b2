"""Score-to-audio search: ANN over shingles, per-recording aggregation, DTW re-ranking.

1. Every query variant (tempo scale × transposition, :mod:`retrieval.variants`) is cut into
   shingles (every :func:`query_hop` frames) and searched in the FAISS index.
2. A recording's ANN score for a variant is the mean, over the variant's shingles, of the best
   similarity among that shingle's hits in the recording that agree on where the theme starts
   (the shingle's k-th similarity when it has none there); its score is the best over variants.
   The top ``candidates`` go on.
3. Re-ranking: subsequence DTW (:func:`retrieval.dtw.subsequence_align`) of the best variants
   against the stored features around the best ANN hits gives the final score (mean cosine
   similarity along the path) and the matched time span; candidates are aligned on parallel
   threads (the compiled DTW releases the GIL). A theme of full texture whose variants carry CENS
   rows, against an index that keeps CENS, is also aligned by CENS with each candidate's whole
   CENS frames, and its score mixes the two (:func:`_fused`).

``exhaustive=True`` skips 1–2 and aligns every variant with every whole recording: the exact
reference the ANN pipeline is measured against.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from models.errors import ParameterError
from models.retrieval_features import IndexSettings, shingle_starts, shingles
from retrieval.dtw import subsequence_align
from retrieval.jit import njit_cached
from retrieval.options import CANDIDATES, QueryOptions
from retrieval.variants import QueryVariant

__all__ = ["Match", "SearchTimings", "alignment_pool", "candidates_for", "neighbours_for", "query_hop",
           "recording_frames", "search", "search_many"]

ANCHOR_BIN = 6
"""Frames (0.48 s at 12.5 Hz, the rate of large collections; 0.24 s at 25 Hz) within which the theme
starts implied by a variant's shingle hits must agree to add up in the ANN score
(:func:`_ann_candidates`). Chosen on the benchmarks at 12.5 Hz (docs/benchmarks.md): 4–10 give the
same MRR, 16 a little less. At 25 Hz the same 6 frames, not the same seconds (2026-12-08, all
queries): 4 frames gave the same MRR, 12 (0.48 s) lost 0.014 [0.003, 0.027] on hauptstimme."""


def query_hop(settings: IndexSettings) -> int:
    """Frames between a theme's query shingles: those between the index's stored ones (0.16 s in
    the default's 25 Hz and 12.5 Hz tiers alike), so that some query shingle starts within half a
    hop of every stored one's alignment.

    At 12.5 Hz, hop 1 searched twice as many shingles as 2 for no gain (all queries: MRR 0.902 →
    0.904 on bach_violin, 0.538 → 0.533 on hauptstimme; hop 3: 0.528, hop 4: 0.524 there; E6,
    docs/scaling.md). At 25 Hz, hop 4 instead of 2 (2026-12-08): hauptstimme 0.642 → 0.646,
    bach_violin 0.920 → 0.915 (−0.005 [−0.017, +0.003]), the FAISS stage about 1.6× faster.
    """
    return settings.shingle_hop

NEIGHBOURS = 256
"""FAISS neighbours fetched per query shingle (``k``) in collections of up to
:data:`NEIGHBOURS_SCALE` shingles, so that a theme's own recording keeps hits among the many
look-alike passages (a passage's neighbouring shingles fill several places each). E6, all
queries (docs/scaling.md): 64 → 256 moved MRR 0.533 → 0.555 on hauptstimme (exhaustive DTW:
0.549) and 0.904 → 0.900 on bach_violin, and at 100 h (40 themes) 0.31 → 0.48 for 11 ms more."""

NEIGHBOURS_SCALE = 3_000_000
"""Shingles (≈ 130 h of audio) beyond which :func:`neighbours_for` fetches more neighbours: twice as
many from twice this size, four times (:data:`MAX_NEIGHBOURS`) from four times. At 1046 h (23 M
shingles, 40 themes): k 256 → MRR 0.225 at 58 ms p50, 512 → 0.275 at 91 ms, 1024 → 0.319 at 132 ms
(E6, docs/scaling.md); at 100 h, 512 would cost ~15 ms more than the 50 ms budget allows."""

MAX_NEIGHBOURS = 4 * NEIGHBOURS
"""At most this many neighbours by default (1024: a query at 1000 h stays within ~150 ms; 2048
reached 0.344 at 210 ms)."""


MAX_CANDIDATES = 4 * CANDIDATES
"""At most this many recordings re-ranked by default (120, from 12 M shingles, ≈ 530 h): at
1046 h the right recording is among 100 re-ranked for 0.70 of 40 themes against 0.65 among 30
(MRR 0.633 against 0.604; docs/scaling.md, "More candidates at scale"), for ~30 ms of DTW."""



def _doublings(n_shingles: int) -> int:
    """How many times a collection of ``n_shingles`` doubles :data:`NEIGHBOURS_SCALE` (0 below it)."""
    return max(0, math.floor(math.log2(max(n_shingles, 1) / NEIGHBOURS_SCALE)))


def neighbours_for(n_shingles: int) -> int:
    """The default ``k`` for a collection of ``n_shingles``: :data:`NEIGHBOURS`, doubled for each
    doubling beyond :data:`NEIGHBOURS_SCALE`, at most :data:`MAX_NEIGHBOURS`."""
    return min(MAX_NEIGHBOURS, NEIGHBOURS << _doublings(n_shingles))


def candidates_for(n_shingles: int) -> int:
    """The default number of recordings re-ranked by DTW in a collection of ``n_shingles``:
    :data:`retrieval.options.CANDIDATES`, doubled for each doubling beyond
    :data:`NEIGHBOURS_SCALE`, at most :data:`MAX_CANDIDATES`. A theme's own recording falls further
    down the vote as look-alikes multiply; aligning more of the vote's list costs little beside
    the neighbours fetched."""
    return min(MAX_CANDIDATES, CANDIDATES << _doublings(n_shingles))


VERIFIED = 100
"""Recordings proposed by the vote whose best hypotheses are scored exactly along the theme
(:func:`_verified`) before the ``candidates`` best go to DTW (docs/scaling.md, "Verified
candidates": on 100 h with 20 h of corpus music MRR 0.547 → 0.611, what DTW on 100 candidates
reaches, at the cost of DTW on 30; at 1046 h 0.475 → 0.515; a pool of 300 gained nothing)."""

VERIFY_SLACK = 2
"""Frames each query shingle may sit early or late against its hypothesis's diagonal when
verified (tempo drift within the theme: the vote's anchor bins are 6 frames)."""

RERANK_VARIANTS = 3
"""Tempo variants of a candidate re-ranked by DTW: its three best by ANN score. 5 moved MRR by at
most ±0.016 in E3's sweep (docs/experiments.md) and was not adopted (re-ranking time grows with it)."""

RERANK_WINDOW = (1, 2)
"""DTW aligns a variant of ``L`` frames with the recording's frames ``[anchor − 1·L, anchor + 2·L)``
around each ANN anchor: the implied start can be early or late by up to a theme length (tempo
differences stretch it), and a match may end up to twice as long as the variant at the ×2 tempo."""


class SearchableIndex(Protocol):
    """What search needs of an index (:class:`db.store.IndexStore` provides it)."""

    settings: IndexSettings

    def vectors(self): ...
    def stored_frames(self): ...  # every recording's uint8 frames mapped (db.store.StoredFrames), or None
    def frames(self, recording_id: int) -> np.ndarray: ...
    def cens(self, recording_id: int) -> np.ndarray | None: ...  # stored CENS rows, where kept
    def recording(self, recording_id: int): ...
    def recordings(self, status: str | None = None) -> list: ...
    def longest_duration(self) -> float: ...


@dataclass(frozen=True)
class Match:
    """One ranked recording: where the theme sounds in it and how well it matches."""

    rank: int
    score: float  # mean cosine similarity of theme and excerpt along the DTW path (≤ 1); see _fused
    margin: float  # score minus the best score of any other recording (> 0 only for rank 1)
    confident: bool  # rank 1, score ≥ CONFIDENCE_THRESHOLD and margin ≥ CONFIDENCE_MARGIN
    recording_id: int
    path: str
    start: float  # seconds
    end: float
    tempo_scale: float  # performance tempo ÷ the theme's nominal tempo (of the best variant)
    transposition: int  # semitones the theme was shifted up to match
    ann_score: float | None = None
    occurrences: tuple = ()  # retrieval.occurrences.Occurrence: every place it sounds, when asked for
    notes: tuple = ()  # retrieval.following.NoteTime: when each theme note sounds in [start, end]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchTimings:
    """Seconds spent in each stage of one query."""

    ann: float = 0.0
    rerank: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.ann + self.rerank + sum(self.extra.values())


Hypotheses = list[tuple[float, int, tuple[int, ...]]]
"""A recording's ``(ann score, variant index, anchor frames)`` per variant, best first."""


def _ann_candidates(
    collection: SearchableIndex, variants: Sequence[QueryVariant], k: int, n_candidates: int
) -> dict[int, Hypotheses]:
    """Candidate recordings → their ``(ann score, variant index, anchor frames)``, best variant first.

    The steps, as audfprint's offset voting (``find_modes``): every query shingle's ANN hits
    (:func:`_shingle_hits`) imply where the theme starts in the recording (its *anchor*); hits of a
    variant vote for (variant, recording, anchor bin) (:func:`_votes`); each (variant, recording)
    keeps its best bin and its best bin a theme length away (:func:`_anchors`); recordings are
    ranked by their best variant (:func:`_candidates`). Scattered chance hits, and variants at the
    wrong tempo (whose shingles' anchors drift apart), score low.
    """
    return _vote(_shingle_hits(collection, [variants], k)[0], variants, n_candidates)


def _vote(hits: _Hits | None, variants: Sequence[QueryVariant], n_candidates: int) -> dict[int, Hypotheses]:
    """:func:`_ann_candidates` from one theme's hits."""
    if hits is None:
        return {}
    order = _anchor_order(hits.owner[hits.shingle], hits.recording, len(hits.recordings), hits.anchor)
    votes = [_votes(hits, len(variants), shift, order) for shift in (0, ANCHOR_BIN // 2)]
    score, variant, recording, anchor = (np.concatenate(column) for column in zip(*votes, strict=True))
    lengths = np.array([len(v.features) for v in variants])
    best, second = _anchors(score, variant * len(hits.recordings) + recording, anchor, lengths[variant])
    return _candidates(score, variant, hits.recordings[recording], anchor, best, second, n_candidates)


@dataclass(frozen=True)
class _Hits:
    """The ANN hits of all query shingles of all variants, one entry per hit (arrays ``(n_hits,)``),
    per query shingle (arrays ``(n_shingles,)``) its variant and its k-th similarity, and the
    recordings hit."""

    shingle: np.ndarray  # which query shingle hit
    similarity: np.ndarray  # cosine similarity of the hit
    recording: np.ndarray  # which recording was hit: an index into ``recordings``
    anchor: np.ndarray  # implied theme start: recording frame − the shingle's offset in the theme
    owner: np.ndarray  # (n_shingles,) variant of each query shingle
    floor: np.ndarray  # (n_shingles,) each shingle's k-th similarity: its score where it has no hit
    recordings: np.ndarray  # (n_recordings,) the ids of the recordings hit, ascending


def _shingle_hits(collection: SearchableIndex, themes: Sequence[Sequence[QueryVariant]], k: int) -> list[_Hits | None]:
    """Search every variant's shingles (:func:`query_hop`) of every theme in one batch; per theme its hits
    (``None`` when nothing was hit)."""
    settings = collection.settings
    queries, owner, offset, theme_of = [], [], [], []
    for ti, variants in enumerate(themes):
        for vi, variant in enumerate(variants):
            starts, vecs = shingles(variant.features, settings.shingle_length, query_hop(settings))
            queries.append(vecs)
            owner.append(np.full(len(starts), vi))
            offset.append(starts)
            theme_of.append(np.full(len(starts), ti))
    vectors, all_queries = collection.vectors(), np.concatenate(queries)
    sims, rids, frames = vectors.search(all_queries, k)
    stored = collection.stored_frames() if getattr(vectors, "lossy", False) else None
    if stored is not None:
        sims, rids, frames = _rescored(stored, all_queries, sims, rids, frames, settings.shingle_length)
    owner_a, offset_a, theme_a = np.concatenate(owner), np.concatenate(offset), np.concatenate(theme_of)
    found: list[_Hits | None] = []
    for ti in range(len(themes)):
        rows = np.flatnonzero(theme_a == ti)
        found.append(_hits(sims[rows], rids[rows], frames[rows], owner_a[rows], offset_a[rows]))
    return found


def _rescored(stored, queries: np.ndarray, sims: np.ndarray, rids: np.ndarray, frames: np.ndarray,
              length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hits ``(n_queries, k)`` of a lossy index with their exact cosine similarities, computed
    from the stored frames (``stored``: :class:`db.store.StoredFrames`; within the ``uint8`` error),
    each query's re-sorted best first as FAISS sorts them; the rows are split over
    :func:`alignment_pool`'s threads. A compressed code's error is of the order
    of the differences the vote must see: in a large collection the right passage's hits fall behind
    near-duplicates of others (docs/scaling.md, exact similarities in the vote)."""
    exact = np.empty(sims.shape, np.float32)
    queries, sims = np.ascontiguousarray(queries, np.float32), np.ascontiguousarray(sims, np.float32)
    rids, frames = np.ascontiguousarray(rids, np.int64), np.ascontiguousarray(frames, np.int64)
    bounds = np.linspace(0, len(queries), _cores() + 1).astype(int)
    jobs = [alignment_pool().submit(_exact_cosines, stored.frames, stored.offsets, stored.lengths, queries[a:b],
                                    rids[a:b], frames[a:b], sims[a:b], length, exact[a:b])
            for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    for job in jobs:
        job.result()
    order = np.argsort(-exact, axis=1, kind="stable")
    return (np.take_along_axis(exact, order, 1), np.take_along_axis(rids, order, 1),
            np.take_along_axis(frames, order, 1))


@njit_cached(nogil=True)
def _exact_cosines(stored: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, queries: np.ndarray,
                   rids: np.ndarray, starts: np.ndarray, fallback: np.ndarray, length: int,
                   out: np.ndarray) -> None:  # pragma: no cover (compiled)
    """``out[i, j]``: cosine similarity of unit query ``queries[i]`` ``(12·length,)`` and the stored
    shingle of recording ``rids[i, j]`` from frame ``starts[i, j]`` (``stored`` ``(F, 12)`` uint8,
    the recording's frames from ``offsets[r]``, ``lengths[r]`` of them; frames past its end count
    as zeros, as in :func:`models.retrieval_features.shingles`); ``-inf`` for no hit, ``fallback``
    where the recording has no stored frames."""
    for i in range(rids.shape[0]):
        for j in range(rids.shape[1]):
            r = rids[i, j]
            if r < 0:
                out[i, j] = -np.inf
                continue
            if r >= len(lengths) or lengths[r] == 0:
                out[i, j] = fallback[i, j]
                continue
            base = offsets[r] + starts[i, j]
            n = min(length, lengths[r] - starts[i, j])
            dot, norm = 0.0, 0.0
            for f in range(n):
                for c in range(12):
                    value = float(stored[base + f, c])
                    dot += value * queries[i, f * 12 + c]
                    norm += value * value
            out[i, j] = dot / np.sqrt(norm) if norm > 0 else 0.0


def _hits(sims: np.ndarray, rids: np.ndarray, frames: np.ndarray, owner: np.ndarray,
          offset: np.ndarray) -> _Hits | None:
    """One theme's :class:`_Hits` from its shingles' search results ``(n_shingles, k)``."""
    floors = np.where(np.isfinite(sims[:, -1]), sims[:, -1], 0.0)
    q_idx = np.repeat(np.arange(len(sims)), sims.shape[1])
    sim, rid, frame = sims.ravel(), rids.ravel(), frames.ravel()
    keep = rid >= 0
    if not keep.any():
        return None
    q_idx, rid = q_idx[keep], rid[keep]
    present = np.zeros(int(rid.max()) + 1, bool)  # recording ids are small: a dense map instead of a sort
    present[rid] = True
    recordings = np.flatnonzero(present)
    code = (np.cumsum(present) - 1)[rid]
    return _Hits(q_idx, sim[keep], code, frame[keep].astype(np.int64) - offset[q_idx], owner, floors, recordings)


def _anchor_order(variant: np.ndarray, recording: np.ndarray, n_recordings: int, anchor: np.ndarray) -> np.ndarray:
    """The hits ``(n_hits,)`` in order of (variant, recording, anchor): one sort of one integer key
    (the voting's main cost), shared by both binnings of :func:`_vote` since a bin grows with its
    anchor. ``recording`` are dense codes below ``n_recordings``."""
    offset, span = anchor - anchor.min(), int(anchor.max() - anchor.min()) + 1
    if (int(variant.max()) + 1) * n_recordings * span >= 2**62:  # anchors far apart: sort the columns instead
        return np.lexsort((anchor, recording, variant))
    return np.argsort((variant.astype(np.int64) * n_recordings + recording) * span + offset)


@njit_cached(nogil=True)
def _group_codes(variant: np.ndarray, recording: np.ndarray, bin_: np.ndarray, order: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover (compiled)
    """Dense codes ``(n_hits,)`` of the (variant, recording, bin) of every hit, numbered in
    lexicographic order, and per code its variant and recording ``(n_groups,)``, in one pass over
    the hits in ``order`` (:func:`_anchor_order`: by variant, recording and a key the bins follow)."""
    group = np.empty(len(order), np.int64)
    g_variant, g_recording = np.empty(len(order), np.int64), np.empty(len(order), np.int64)
    g, previous = -1, -1
    for i in order:
        if (previous < 0 or variant[i] != variant[previous] or recording[i] != recording[previous]
                or bin_[i] != bin_[previous]):
            g += 1
            g_variant[g], g_recording[g] = variant[i], recording[i]
        group[i] = g
        previous = i
    return group, g_variant[: g + 1], g_recording[: g + 1]


def _votes(hits: _Hits, n_variants: int, shift: int, order: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(score, variant, recording, anchor)`` per (variant, recording, anchor bin), in that order
    (``recording``: the code of :attr:`_Hits.recording`).

    Bins are :data:`ANCHOR_BIN` frames, moved by ``shift`` (two binnings half a bin apart keep
    agreeing hits from being split by a bin edge). A bin's score is the mean, over the variant's
    shingles, of the shingle's best hit in that bin (its k-th similarity where it has none); its
    anchor is its best hit's (of equal ones, the later query shingle's). ``order``: the hits by
    variant, recording and anchor (:func:`_anchor_order`).
    """
    per_variant_floor = np.bincount(hits.owner, weights=hits.floor, minlength=n_variants)
    n_shingles = np.bincount(hits.owner, minlength=n_variants)
    group, variant, recording = _group_codes(hits.owner[hits.shingle], hits.recording,
                                             (hits.anchor + shift) // ANCHOR_BIN, order)
    gain, anchor = _tally(hits.shingle, hits.similarity, hits.anchor, group, hits.floor, len(variant))
    score = (gain + per_variant_floor[variant]) / n_shingles[variant]
    return score, variant, recording, anchor


@njit_cached(nogil=True)
def _tally(shingle: np.ndarray, similarity: np.ndarray, anchor: np.ndarray, group: np.ndarray, floor: np.ndarray,
           n_groups: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover (compiled)
    """Per group ``(n_groups,)``: the sum over query shingles of their best hit's similarity in the
    group minus their k-th similarity ``floor``, and the anchor of the group's best hit (of equal
    ones, the later shingle's). One pass over the hits ``(n_hits,)``, which come shingle by shingle
    in ascending order, each shingle's best first (as FAISS sorts them)."""
    gain = np.zeros(n_groups)
    best = np.full(n_groups, -np.inf)
    best_anchor = np.zeros(n_groups, np.int64)
    last_shingle = np.full(n_groups, -1, np.int64)
    for i in range(len(shingle)):
        g, q = group[i], shingle[i]
        if last_shingle[g] == q:  # not this shingle's best hit in the group
            continue
        last_shingle[g] = q
        gain[g] += similarity[i] - floor[q]
        if similarity[i] >= best[g]:
            best[g], best_anchor[g] = similarity[i], anchor[i]
    return gain, best_anchor


def _anchors(score: np.ndarray, pair: np.ndarray, anchor: np.ndarray, length: np.ndarray) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """Per (variant, recording) ``pair`` (one integer ≥ 0 per vote): the index of its best vote, and
    of its best vote whose anchor lies at least a theme length (``length`` of the vote's variant,
    frames) away from that one's (a second occurrence: a repeated section, a recapitulation), where
    there is one; indices into the vote arrays ``(n_votes,)``, in ascending order of pair (of equal
    scores, the first vote)."""
    best, second = _best_votes(score, pair, anchor, length, int(pair.max()) + 1 if len(pair) else 0)
    return best[best >= 0], second[second >= 0]


@njit_cached(nogil=True)
def _best_votes(score: np.ndarray, pair: np.ndarray, anchor: np.ndarray, length: np.ndarray,
                n_pairs: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover (compiled)
    """:func:`_anchors` as two passes over the votes: per pair ``(n_pairs,)`` the index of its best
    vote and of its best vote a theme length from it, ``-1`` where there is none."""
    best = np.full(n_pairs, -1, np.int64)
    for i in range(len(score)):
        b = best[pair[i]]
        if b < 0 or score[i] > score[b]:
            best[pair[i]] = i
    second = np.full(n_pairs, -1, np.int64)
    for i in range(len(score)):
        p = pair[i]
        if abs(anchor[i] - anchor[best[p]]) >= length[i] and (second[p] < 0 or score[i] > score[second[p]]):
            second[p] = i
    return best, second


def _verified(collection: SearchableIndex, found: dict[int, Hypotheses], variants: Sequence[QueryVariant],
              keep: int) -> dict[int, Hypotheses]:
    """The ``keep`` recordings of ``found`` (the vote's, best first) whose best hypotheses fit the
    theme best, scored exactly: each of a recording's :data:`RERANK_VARIANTS` best variants at its
    best anchor, every query shingle's cosine similarity with the stored shingle on that diagonal
    (within :data:`VERIFY_SLACK` frames), averaged (:func:`_diagonal_scores`). The vote knows a
    recording only by the shingles that were among the nearest; this looks at all of them. Without
    a frames file (an index from before it) the vote's order is kept."""
    stored = collection.stored_frames() if len(found) > keep else None
    if stored is None:
        return dict(list(found.items())[:keep])
    length = collection.settings.shingle_length
    frames = [np.asarray(variant.features, np.float32) for variant in variants]
    starts = [shingle_starts(len(f), length, query_hop(collection.settings)) for f in frames]
    norms = [np.sqrt([np.sum(f[i : i + length] ** 2) for i in st]) for f, st in zip(frames, starts, strict=True)]
    frame_first = np.cumsum([0] + [len(f) for f in frames])
    shingle_first = np.cumsum([0] + [len(st) for st in starts])
    hypotheses = [(rid, vi, anchors[0]) for rid, triples in found.items()
                  for _, vi, anchors in triples[:RERANK_VARIANTS]]
    rid, vi, anchor = (np.array(column, np.int64) for column in zip(*hypotheses, strict=True))
    scores = np.empty(len(rid))
    _diagonal_scores(stored.frames, stored.offsets, stored.lengths, np.concatenate(frames), frame_first,
                     np.concatenate(starts).astype(np.int64), np.concatenate(norms), shingle_first, rid, vi, anchor,
                     length, VERIFY_SLACK, scores)
    best: dict[int, float] = {}
    for r, score in zip(rid.tolist(), scores.tolist(), strict=True):
        best[r] = max(best.get(r, -np.inf), score)
    chosen = sorted(found, key=lambda r: -best[r])[:keep]  # stable: equal scores keep the vote's order
    return {r: found[r] for r in chosen}


@njit_cached(nogil=True)
def _diagonal_scores(stored: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, frames: np.ndarray,
                     frame_first: np.ndarray, starts: np.ndarray, norms: np.ndarray, shingle_first: np.ndarray,
                     rids: np.ndarray, variant: np.ndarray, anchors: np.ndarray, length: int, slack: int,
                     out: np.ndarray) -> None:  # pragma: no cover (compiled)
    """``out[h]`` ``(H,)``: the mean, over the query shingles of variant ``variant[h]``, of each
    one's best cosine similarity with recording ``rids[h]``'s stored shingle that starts ``d``
    frames (``|d| ≤ slack``) from where the shingle sits on the diagonal from ``anchors[h]``.

    A variant's frames are ``frames[frame_first[v] : frame_first[v + 1]]`` ``(T, 12)``; its
    shingles start at ``starts[shingle_first[v] : shingle_first[v + 1]]`` with L2 norms ``norms``
    (over ``length`` frames, zeros past the end). ``stored`` ``(F, 12)`` uint8 as in
    :func:`_exact_cosines`; frames outside the recording count as zeros, a shingle starting before
    the recording is not compared. Frame products are computed once per offset and summed per
    shingle by prefix sums: shingles overlap by ``length − query_hop`` frames.
    """
    for h in range(len(rids)):
        r, v, a = rids[h], variant[h], anchors[h]
        f0, n_frames = frame_first[v], frame_first[v + 1] - frame_first[v]
        span = n_frames + length  # query frames and the padding a last shingle may reach
        dot = np.zeros((2 * slack + 1, span + 1))
        square = np.zeros((2 * slack + 1, span + 1))
        n_stored = lengths[r] if r < len(lengths) else 0
        for k in range(2 * slack + 1):
            for t in range(span):
                g = a + t + k - slack
                d, q = 0.0, 0.0
                if 0 <= g < n_stored:
                    for c in range(12):
                        value = float(stored[offsets[r] + g, c])
                        q += value * value
                        if t < n_frames:
                            d += value * frames[f0 + t, c]
                dot[k, t + 1] = dot[k, t] + d
                square[k, t + 1] = square[k, t] + q
        total = 0.0
        for i in range(shingle_first[v], shingle_first[v + 1]):
            best = 0.0
            for k in range(2 * slack + 1):
                if a + starts[i] + k - slack < 0:
                    continue
                s0, s1 = starts[i], starts[i] + length
                norm = np.sqrt(square[k, s1] - square[k, s0])
                if norm > 0 and norms[i] > 0:
                    cosine = (dot[k, s1] - dot[k, s0]) / (norm * norms[i])
                    if cosine > best:
                        best = cosine
            total += best
        out[h] = total / max(shingle_first[v + 1] - shingle_first[v], 1)


def _candidates(score: np.ndarray, variant: np.ndarray, recording: np.ndarray, anchor: np.ndarray,
                best: np.ndarray, second: np.ndarray, n_candidates: int) -> dict[int, Hypotheses]:
    """The ``n_candidates`` recordings of best score (ties: in the order of the vote arrays), each
    with its variants' hypotheses, best first."""
    ranked = best[np.argsort(-score[best], kind="stable")]
    chosen = _first_recordings(recording[ranked], n_candidates)
    is_chosen = np.zeros(int(recording.max()) + 1, bool)  # recording ids are small: a dense map
    is_chosen[chosen] = True
    second = second[is_chosen[recording[second]]]
    other_anchor = dict(zip(zip(variant[second].tolist(), recording[second].tolist(), strict=True),
                            anchor[second].tolist(), strict=True))
    scored: dict[int, Hypotheses] = {rec: [] for rec in chosen.tolist()}
    mine = ranked[is_chosen[recording[ranked]]]
    for s, v, r, a in zip(score[mine].tolist(), variant[mine].tolist(), recording[mine].tolist(),
                          anchor[mine].tolist(), strict=True):
        other = other_anchor.get((v, r))
        scored[r].append((s, v, (a,) if other is None else (a, other)))
    return scored


@njit_cached(nogil=True)
def _first_recordings(recording: np.ndarray, n: int) -> np.ndarray:  # pragma: no cover (compiled)
    """The first ``n`` distinct values of ``recording`` ``(n_votes,)`` (ids ≥ 0), in order of first
    appearance."""
    seen = np.zeros(recording.max() + 1, np.bool_)
    out = np.empty(min(n, len(recording)), recording.dtype)
    found = 0
    for r in recording:
        if found == len(out):
            break
        if not seen[r]:
            seen[r] = True
            out[found] = r
            found += 1
    return out[:found]


def recording_frames(collection: SearchableIndex, recording_id: int) -> np.ndarray:
    """A recording's frames ``(M, 12)`` for aligning a theme: from the mapped frames file (the
    snapshot the vote and verification read; no SQLite read, a copy of ~1 ms per hour of audio)
    where it holds them, else from the index's table. Call it from one thread: SQLite stays there."""
    stored = collection.stored_frames()
    frames = stored.decoded(recording_id) if stored is not None else None
    return frames if frames is not None else collection.frames(recording_id)


def _rerank(
    target: np.ndarray, variants: Sequence[QueryVariant], triples: Hypotheses, n_variants: int,
    cens_target: np.ndarray | None = None,
) -> tuple[float, int, int, int]:
    """Best ``(similarity, variant, start, end)`` of DTW around the anchors of the best variants
    in a recording's features ``target (M, 12)``; with ``cens_target`` (its CENS rows ``(M_c, 12)``),
    the similarity is :func:`_fused` with the best of the same variants against the whole of them:
    the deep chroma's anchors follow a texture's melody, which need not be where its harmony
    matches best (on piano, both weighted equally, windows around them reached 0.897 where the whole
    recording reached 0.937; every variant instead of these: 0.927)."""
    best = (float("-inf"), triples[0][1], 0, 0)
    aligned = set()
    for _, vi, anchors in triples[:n_variants]:
        length = len(variants[vi].features)
        for anchor in anchors:
            before, after = RERANK_WINDOW
            lo, hi = max(0, anchor - before * length), min(len(target), anchor + after * length)
            if hi <= lo:
                continue
            aligned.add(vi)
            alignment = subsequence_align(variants[vi].features, target[lo:hi])
            if alignment.similarity > best[0]:
                best = (alignment.similarity, vi, lo + alignment.start, lo + alignment.end)
    if cens_target is None or not aligned:
        return best
    harmony = max(subsequence_align(variants[vi].cens, cens_target).similarity for vi in aligned)
    return (_fused(best[0], harmony, variants[0].cens_weight),) + best[1:]


def _fused(deep: float, harmony: float, weight: float) -> float:
    """The score of a texture (a theme written out in full, or an audio excerpt: its variants carry
    CENS rows) against a recording whose CENS is stored: the deep chroma's DTW similarity and CENS's,
    CENS weighted ``weight`` (the variants' :attr:`~retrieval.variants.QueryVariant.cens_weight`).

    Deep chroma answers a texture with its melody, CENS with every pitch class that sounds; a
    piano excerpt of both staves needs both (docs/experiments.md, "CENS frames in the index");
    melody themes are never fused."""
    return (1.0 - weight) * deep + weight * harmony


def _cores() -> int:
    """CPU cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


@functools.cache
def alignment_pool() -> ThreadPoolExecutor:
    """Threads re-ranking candidates and re-scoring hits in parallel (the compiled kernels release
    the GIL), one per core."""
    return ThreadPoolExecutor(_cores(), thread_name_prefix="rerank")


def _align_whole(target: np.ndarray, variants: Sequence[QueryVariant],
                 cens_target: np.ndarray | None = None) -> tuple[float, int, int, int]:
    """Best ``(similarity, variant, start, end)`` of every variant against a whole recording
    (with ``cens_target``: :func:`_fused` with the best of every variant against its CENS rows)."""
    best = (float("-inf"), 0, 0, 0)
    for vi, variant in enumerate(variants):
        a = subsequence_align(variant.features, target)
        if a.similarity > best[0]:
            best = (a.similarity, vi, a.start, a.end)
    if cens_target is None:
        return best
    harmony = max(subsequence_align(variant.cens, cens_target).similarity for variant in variants)
    return (_fused(best[0], harmony, variants[0].cens_weight),) + best[1:]


def _cens_targets(collection: SearchableIndex, variants: Sequence[QueryVariant],
                  recording_ids: Sequence[int]) -> dict[int, np.ndarray | None]:
    """Each recording's stored CENS rows where the theme's variants carry CENS (a full texture
    rendered against an index that keeps it) and every one of the recordings has them; else
    ``None`` for all, so that every score of one theme is of one kind. From one thread: SQLite."""
    if any(v.cens is None for v in variants):
        return dict.fromkeys(recording_ids)
    found = {rid: collection.cens(rid) for rid in recording_ids}
    return found if all(c is not None for c in found.values()) else dict.fromkeys(recording_ids)


def _exhaustive(collection: SearchableIndex, variants: Sequence[QueryVariant]
                ) -> dict[int, tuple[float, int, int, int]]:
    ids = [rec.id for rec in collection.recordings("indexed")]
    harmony = _cens_targets(collection, variants, ids)
    jobs = {rid: alignment_pool().submit(_align_whole, collection.frames(rid), variants, harmony[rid]) for rid in ids}
    return {rid: job.result() for rid, job in jobs.items()}


def search(collection: SearchableIndex, variants: Sequence[QueryVariant], options: QueryOptions | None = None, *,
           timings: SearchTimings | None = None) -> list[Match]:
    """Rank the recordings of ``collection`` for one theme given as query ``variants``
    (:func:`search_many` with one theme)."""
    return search_many(collection, [variants], options, timings=None if timings is None else [timings])[0]


def search_many(
    collection: SearchableIndex,
    themes: Sequence[Sequence[QueryVariant]],
    options: QueryOptions | None = None,
    *,
    timings: Sequence[SearchTimings] | None = None,
    skip: Sequence[Callable[[int, tuple[float, int, int, int]], bool] | None] | None = None,
) -> list[list[Match]]:
    """Rank the recordings of ``collection`` for each theme, given as its query variants.

    ANN stage (:func:`_ann_candidates`, ``options.neighbours`` per shingle, by default
    :func:`neighbours_for` the collection's size; all themes' shingles in one FAISS search) → each
    theme's ``options.candidates`` best recordings (by default :func:`candidates_for` the size) →
    DTW re-ranking of their :data:`RERANK_VARIANTS` best tempo variants around the ANN anchors
    (:data:`RERANK_WINDOW`), all themes' candidates on the thread pool at once;
    ``options.exhaustive`` aligns every variant with every whole recording instead. Matches are
    marked confident by the rule of ``options.threshold`` and ``options.margin_threshold``
    (:data:`retrieval.options.CONFIDENCE_THRESHOLD`, :data:`retrieval.options.CONFIDENCE_MARGIN`);
    ``options.top`` are returned per theme (``options`` default:
    :class:`retrieval.options.QueryOptions`). ``timings`` (one per theme)
    receive each stage's time; with several themes, a shared stage's time is divided equally.
    ``skip`` (one per theme, or ``None``): ``skip(recording id, (score, variant index, start frame,
    end frame))`` true leaves a recording out of the ranking (an audio query's own source).
    """
    o = options or QueryOptions()
    if not themes or any(not variants for variants in themes):
        raise ParameterError("no query variants")
    timings = list(timings) if timings is not None else [SearchTimings() for _ in themes]
    n = len(themes)
    t0 = time.perf_counter()
    if o.exhaustive:
        aligned = [_exhaustive(collection, variants) for variants in themes]
        ann_scores: list[dict[int, float]] = [{} for _ in themes]
    else:
        if len(collection.vectors()) == 0:
            raise ParameterError("the index holds no searchable shingles yet (empty, or interrupted before its "
                             "first checkpoint): run `cli.py index` on the collection again")
        size = len(collection.vectors())
        k = neighbours_for(size) if o.neighbours is None else o.neighbours
        keep = max(candidates_for(size) if o.candidates is None else o.candidates, o.top)
        found = [_verified(collection, _vote(hits, variants, max(VERIFIED, keep)), variants, keep)
                 for hits, variants in zip(_shingle_hits(collection, themes, k), themes, strict=True)]
        ann = time.perf_counter() - t0
        t0 = time.perf_counter()
        targets = {rid: recording_frames(collection, rid) for f in found for rid in f}
        harmony = [_cens_targets(collection, variants, list(f)) for f, variants in zip(found, themes, strict=True)]
        jobs = [{rid: alignment_pool().submit(_rerank, targets[rid], variants, triples, RERANK_VARIANTS, h[rid])
                 for rid, triples in f.items()} for f, variants, h in zip(found, themes, harmony, strict=True)]
        aligned = [{rid: job.result() for rid, job in j.items()} for j in jobs]
        ann_scores = [{rid: triples[0][0] for rid, triples in f.items()} for f in found]
        for t in timings:
            t.ann = ann / n
    elapsed = time.perf_counter() - t0
    for t in timings:
        t.rerank = elapsed / n
    skip = list(skip) if skip is not None else [None] * n
    return [_matches(collection, variants, {r: v for r, v in a.items() if not (leave and leave(r, v))}, s, o.top,
                     o.threshold, o.margin_threshold)
            for variants, a, s, leave in zip(themes, aligned, ann_scores, skip, strict=True)]


def _matches(collection: SearchableIndex, variants: Sequence[QueryVariant],
             aligned: dict[int, tuple[float, int, int, int]],
             ann_scores: dict[int, float], top: int, threshold: float, margin_threshold: float) -> list[Match]:
    """The ``top`` :class:`Match` es of one theme from its recordings' ``(similarity, variant, start, end)``."""
    rate = collection.settings.rate
    order = [r for r in sorted(aligned, key=lambda r: aligned[r][0], reverse=True) if np.isfinite(aligned[r][0])]
    order = [r for r in order if collection.recording(r) is not None]
    scores = [aligned[r][0] for r in order]
    matches = []
    for i, rid in enumerate(order[:top]):
        similarity, vi, start, end = aligned[rid]
        rec = collection.recording(rid)
        others = scores[:i] + scores[i + 1 :]
        margin = similarity - max(others) if others else float("nan")
        confident = i == 0 and similarity >= threshold and (margin >= margin_threshold if others else True)
        matches.append(Match(
            rank=i + 1, score=round(similarity, 4), margin=round(margin, 4), confident=bool(confident),
            recording_id=rid, path=rec.path, start=round(start / rate, 2), end=round((end + 1) / rate, 2),
            tempo_scale=round(variants[vi].tempo_scale, 3), transposition=variants[vi].transposition,
            ann_score=round(ann_scores[rid], 4) if rid in ann_scores else None,
        ))
    return matches
