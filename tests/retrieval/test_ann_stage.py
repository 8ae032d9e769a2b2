"""The ANN stage scores hits that agree on where the theme starts, and keeps repeats."""

from __future__ import annotations

import numpy as np

from models.retrieval_features import IndexSettings
from retrieval.options import CANDIDATES
from retrieval.search import (
    MAX_CANDIDATES,
    MAX_NEIGHBOURS,
    NEIGHBOURS,
    NEIGHBOURS_SCALE,
    _anchor_order,
    _anchors,
    _ann_candidates,
    _first_recordings,
    _group_codes,
    _tally,
    candidates_for,
    neighbours_for,
    query_hop,
)
from retrieval.variants import QueryVariant


class _Vectors:
    """FAISS stand-in: per query shingle ``i`` (starting at frame ``HOP·i`` of the theme), the hits
    ``(similarity, recording, frame(i))``."""

    def __init__(self, hits):
        self.hits = hits

    def search(self, queries, k):
        rows = [sorted((hit(i) for hit in self.hits), reverse=True)[:k] for i in range(len(queries))]
        sims, rids, frames = (np.array([[h[j] for h in row] for row in rows]) for j in range(3))
        return sims.astype(np.float32), rids.astype(np.int64), frames.astype(np.int64)


class _Collection:
    settings = IndexSettings(shingle_length=4, shingle_hop=2)

    def __init__(self, hits):
        self._vectors = _Vectors(hits)

    def vectors(self):
        return self._vectors


HOP = query_hop(_Collection.settings)


def test_consistent_hits_beat_scattered_better_ones_and_repeats_are_kept():
    rng = np.random.default_rng(0)
    scattered = rng.integers(0, 5000, size=100)
    collection = _Collection(
        [
            lambda i: (0.90, 2, int(scattered[i])),  # recording 2: closer hits, but anywhere
            lambda i: (0.80, 1, 100 + HOP * i),  # recording 1: every shingle agrees: theme at frame 100
            lambda i: (0.75, 1, 300 + HOP * i),  # ... and again at frame 300 (a repeat)
        ]
    )
    variant = QueryVariant(1.0, 0, np.eye(12, dtype=np.float32)[np.arange(20) % 12])  # 17 frames of shingle starts
    found = _ann_candidates(collection, [variant], k=3, n_candidates=5)
    assert list(found) == [1, 2]
    score, vi, anchors = found[1][0]
    assert vi == 0 and anchors == (100, 300)
    assert score > 0.79 and found[2][0][0] < 0.77  # 0.8 everywhere vs one 0.9 hit per bin


def test_group_codes_number_groups_in_order_also_for_bins_far_apart():
    variant, recording = np.array([1, 0, 1, 0, 1]), np.array([0, 2, 0, 1, 0])
    for bins in (np.array([5, 7, 5, -3, 6]), np.array([5, 2**61, 5, -3, 6])):  # the second overflows packing
        group, g_variant, g_recording = _group_codes(variant, recording, bins,
                                                     _anchor_order(variant, recording, 3, bins))
        hits = list(zip(variant.tolist(), recording.tolist(), bins.tolist(), strict=True))
        keys = sorted(set(hits))
        assert group.tolist() == [keys.index(key) for key in hits]
        assert g_variant.tolist() == [key[0] for key in keys] and g_recording.tolist() == [key[1] for key in keys]


def test_tally_counts_each_shingles_best_hit_once_and_prefers_the_later_shingle_on_ties():
    # hits shingle by shingle, each shingle's best first; all in group 0 but the last
    shingle = np.array([0, 0, 1, 1, 2])
    similarity = np.array([0.9, 0.8, 0.9, 0.7, 0.5], np.float32)
    anchor = np.array([10, 11, 20, 21, 30])
    group = np.array([0, 0, 0, 0, 1])
    floor = np.array([0.1, 0.2, 0.3], np.float32)
    gain, best_anchor = _tally(shingle, similarity, anchor, group, floor, 2)
    np.testing.assert_allclose(gain, [(0.9 - 0.1) + (0.9 - 0.2), 0.5 - 0.3], rtol=1e-6)
    assert best_anchor.tolist() == [20, 30]


def test_anchors_are_each_pairs_best_vote_and_its_best_a_theme_length_away():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        pair, anchor = rng.integers(0, 8, n), rng.integers(0, 300, n)
        score, length = np.round(rng.random(n), 1), (pair % 3 + 1) * 40  # rounded: equal scores occur
        best, second = _anchors(score, pair, anchor, length)
        expected_best, expected_second = [], []
        for p in sorted(set(pair.tolist())):
            votes = [i for i in range(n) if pair[i] == p]
            top = min(votes, key=lambda i: (-score[i], i))  # of equal scores, the first vote
            expected_best.append(top)
            away = [i for i in votes if abs(anchor[i] - anchor[top]) >= length[i]]
            if away:
                expected_second.append(min(away, key=lambda i: (-score[i], i)))
        assert best.tolist() == expected_best and second.tolist() == expected_second


def test_candidates_are_the_first_distinct_recordings_in_vote_order():
    votes = np.array([5, 3, 5, 9, 3, 1, 9])
    assert _first_recordings(votes, 3).tolist() == [5, 3, 9]
    assert _first_recordings(votes, 10).tolist() == [5, 3, 9, 1]


def test_neighbours_grow_with_the_collection_up_to_a_cap():
    assert neighbours_for(0) == neighbours_for(NEIGHBOURS_SCALE - 1) == NEIGHBOURS
    assert neighbours_for(2 * NEIGHBOURS_SCALE - 1) == NEIGHBOURS
    assert neighbours_for(2 * NEIGHBOURS_SCALE) == 2 * NEIGHBOURS
    assert neighbours_for(4 * NEIGHBOURS_SCALE) == MAX_NEIGHBOURS == 4 * NEIGHBOURS
    assert neighbours_for(10**12) == MAX_NEIGHBOURS


def test_candidates_grow_with_the_collection_as_the_neighbours_do():
    assert candidates_for(0) == candidates_for(NEIGHBOURS_SCALE - 1) == CANDIDATES
    assert candidates_for(2 * NEIGHBOURS_SCALE) == 2 * CANDIDATES
    assert candidates_for(4 * NEIGHBOURS_SCALE) == MAX_CANDIDATES == 4 * CANDIDATES
    assert candidates_for(10**12) == MAX_CANDIDATES
