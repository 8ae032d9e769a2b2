"""The PyTorch models and front end against the outputs of the ORIGINAL TensorFlow models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.audio import load_audio
from models.extractor import ChromaExtractor, exact_cuda, reference_hcqt
from models.hcqt import FastHCQT
from models.network import chroma_from_probabilities
from models.pitch_fft import with_pitch_fft
from models.registry import MODEL_IDS, load

from ..conftest import EXCERPTS

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="no CUDA device on this machine: CUDA equality unchecked")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("excerpt", EXCERPTS)
def test_network_equals_original_for_all_25_models(reference_dir, excerpt, device):
    if device == "cuda":
        exact_cuda()
    x = np.load(reference_dir / f"{excerpt}__hcqt.npz")["hcqt_norm"]
    batch = torch.from_numpy(x).permute(2, 0, 1)[None].to(device)
    for model_id in MODEL_IDS:
        ref = np.load(reference_dir / f"{excerpt}__{model_id}.npz")
        for net in (load(model_id, device), with_pitch_fft(load(model_id, device))):  # direct, and the fast path's
            with torch.inference_mode():
                probs = net(batch)[0].cpu()
            assert np.abs(probs.numpy().T - ref["probabilities"]).max() < 1e-4, model_id
            assert np.abs(chroma_from_probabilities(probs).numpy().T - ref["chroma"]).max() < 1e-4, model_id


@pytest.mark.parametrize("excerpt", EXCERPTS)
def test_reference_front_end_equals_original(reference_dir, recordings_dir, excerpt):
    ref = np.load(reference_dir / f"{excerpt}__hcqt.npz")
    y, _ = load_audio(recordings_dir / f"{excerpt}.wav")
    hcqt = reference_hcqt(y)
    assert hcqt.shape == ref["hcqt"].shape
    assert np.abs(hcqt - ref["hcqt"]).max() < 1e-4


@pytest.mark.parametrize("pyramid_on_device", [False, True], ids=["soxr-pyramid", "decimator-pyramid"])
@pytest.mark.parametrize("excerpt", EXCERPTS)
def test_fast_front_end_equals_original(reference_dir, recordings_dir, excerpt, pyramid_on_device):
    """Also with the resampling pyramid computed as on a GPU (models.resample), here on the CPU."""
    ref = np.load(reference_dir / f"{excerpt}__hcqt.npz")
    y, _ = load_audio(recordings_dir / f"{excerpt}.wav")
    extractor = ChromaExtractor()
    extractor.hcqt = FastHCQT("cpu", pyramid_on_device=pyramid_on_device)
    x = extractor.front_end(y).numpy()
    assert x.shape == ref["hcqt_norm"].shape
    assert np.abs(x - ref["hcqt_norm"]).max() < 1e-4


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("excerpt", EXCERPTS)
def test_audio_file_to_probabilities_for_all_25_models(reference_dir, recordings_dir, excerpt, device):
    wav = recordings_dir / f"{excerpt}.wav"
    for model_id in MODEL_IDS:
        ref = np.load(reference_dir / f"{excerpt}__{model_id}.npz")
        features = ChromaExtractor(model_id, device=device).from_file(wav)
        assert features.probabilities.shape == ref["probabilities"].shape
        assert np.abs(features.probabilities - ref["probabilities"]).max() < 1e-3, model_id
        assert np.abs(features.chroma - ref["chroma"]).max() < 1e-3, model_id
        np.testing.assert_allclose(features.times, ref["time_ax"], atol=1e-9)
