"""Chunked, batched processing equals whole-signal processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.errors import ParameterError
from models.extractor import CPU_CHUNK_SECONDS, GPU_CHUNK_SECONDS, ChromaExtractor, default_chunk_seconds
from models.frontend import FEATURE_RATE
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


def test_windowed_salience_equals_the_whole_input():
    rng = np.random.default_rng(5)
    y = harmonic_tones(rng.integers(40, 90, size=40), note_seconds=0.5)
    extractor = ChromaExtractor(batch_frames=64, batch_size=3)
    x = extractor.front_end(y)  # (T, 216, 6)
    windowed = extractor.network_many([x], fn=extractor.net.salience)[0]
    with torch.inference_mode():
        whole = extractor.net.salience(x.permute(2, 0, 1)[None])[0]
    assert windowed.shape == whole.shape == (len(x), 216)
    assert len(x) > 3 * 64  # several windows, so their seams are checked
    assert torch.abs(windowed - whole).max() < 1e-5


def test_a_network_input_without_frames_is_refused():
    extractor = ChromaExtractor()
    with pytest.raises(ParameterError, match="no frames"):
        extractor.network_many([np.zeros((0, 216, 6), np.float32)])


def test_default_chunk_is_longer_on_an_accelerator():
    """120 s front-end chunks on the CPU, 600 s on a GPU (faster there: docs/scaling.md)."""
    assert default_chunk_seconds("cpu") == CPU_CHUNK_SECONDS == 120.0
    assert default_chunk_seconds(torch.device("cuda", 0)) == GPU_CHUNK_SECONDS == 600.0
    assert ChromaExtractor().chunk_groups == CPU_CHUNK_SECONDS * FEATURE_RATE
    assert ChromaExtractor(chunk_seconds=37.0).chunk_groups == 37 * FEATURE_RATE
