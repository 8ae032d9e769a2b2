"""The ANN stage scores hits that agree on where the theme starts, and keeps repeats."""

from __future__ import annotations

import numpy as np

from models.retrieval_features import FeatureSettings
from retrieval.search import QUERY_HOP, _ann_candidates
from retrieval.variants import QueryVariant


class _Vectors:
    """FAISS stand-in: per query shingle ``i`` (starting at frame ``QUERY_HOP·i`` of the theme), the hits
    ``(similarity, recording, frame(i))``."""

    def __init__(self, hits):
        self.hits = hits

    def search(self, queries, k):
        rows = [sorted((hit(i) for hit in self.hits), reverse=True)[:k] for i in range(len(queries))]
        sims, rids, frames = (np.array([[h[j] for h in row] for row in rows]) for j in range(3))
        return sims.astype(np.float32), rids.astype(np.int64), frames.astype(np.int64)


class _Collection:
    settings = FeatureSettings(shingle_length=4)

    def __init__(self, hits):
        self._vectors = _Vectors(hits)

    def vectors(self):
        return self._vectors


def test_consistent_hits_beat_scattered_better_ones_and_repeats_are_kept():
    rng = np.random.default_rng(0)
    scattered = rng.integers(0, 5000, size=100)
    collection = _Collection(
        [
            lambda i: (0.90, 2, int(scattered[i])),  # recording 2: closer hits, but anywhere
            lambda i: (0.80, 1, 100 + QUERY_HOP * i),  # recording 1: every shingle agrees: theme at frame 100
            lambda i: (0.75, 1, 300 + QUERY_HOP * i),  # ... and again at frame 300 (a repeat)
        ]
    )
    variant = QueryVariant(1.0, 0, np.eye(12, dtype=np.float32)[np.arange(20) % 12])  # 17 frames of shingle starts
    found = _ann_candidates(collection, [variant], k=3, n_candidates=5)
    assert list(found) == [1, 2]
    score, vi, anchors = found[1][0]
    assert vi == 0 and anchors == (100, 300)
    assert score > 0.79 and found[2][0][0] < 0.77  # 0.8 everywhere vs one 0.9 hit per bin
