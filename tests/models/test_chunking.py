"""Chunked, batched processing equals whole-signal processing."""

from __future__ import annotations

import numpy as np

from models.extractor import ChromaExtractor
from models.tones import harmonic_tones


def test_chunked_ten_minute_signal_equals_whole_signal():
    rng = np.random.default_rng(3)
    pitches = rng.integers(40, 90, size=1210)  # 1210 notes × 0.5 s ≈ 10 min 5 s
    y = harmonic_tones(pitches, note_seconds=0.5)
    assert len(y) / 22050 >= 600
    whole = ChromaExtractor(chunk_seconds=1e6, batch_frames=10**6, batch_size=1).from_signal(y)
    chunked = ChromaExtractor(chunk_seconds=37.0, batch_frames=333, batch_size=3).from_signal(y)
    assert chunked.probabilities.shape == whole.probabilities.shape == (13, len(whole.times))
    assert np.abs(chunked.probabilities - whole.probabilities).max() < 1e-5
    assert np.abs(chunked.chroma - whole.chroma).max() < 1e-5


def test_windows_batched_across_signals_equal_each_signal_alone():
    rng = np.random.default_rng(4)
    signals = [harmonic_tones(rng.integers(40, 90, size=n), note_seconds=0.5) for n in (30, 71, 9)]
    extractor = ChromaExtractor(batch_frames=100, batch_size=4)  # windows of three files share batches
    together = extractor.from_signals(signals)
    for y, mixed in zip(signals, together, strict=True):
        alone = ChromaExtractor(batch_frames=100, batch_size=1).from_signal(y)
        assert mixed.probabilities.shape == alone.probabilities.shape
        assert np.abs(mixed.probabilities - alone.probabilities).max() < 1e-5
