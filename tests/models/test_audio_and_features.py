"""Bad inputs give one-line errors that name the file; in folder mode the rest is still done."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from models.audio import AudioError, load_audio, mix_down
from models.registry import MODEL_IDS, UnknownModelError, load
from models.tones import harmonic_tones

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def collection(tmp_path: Path) -> Path:
    """Two good recordings (stereo 44.1 kHz FLAC, mono 16 kHz Ogg Vorbis) and four bad files."""
    root = tmp_path / "collection"
    (root / "sub").mkdir(parents=True)
    tone = harmonic_tones([60, 64, 67], note_seconds=0.5, sr=44100)
    sf.write(root / "good_stereo.flac", np.stack([tone, 0.5 * tone], axis=1), 44100)
    sf.write(root / "sub" / "good.ogg", harmonic_tones([62, 65], sr=16000), 16000, format="OGG", subtype="VORBIS")
    (root / "empty.wav").write_bytes(b"")
    (root / "text.wav").write_text("this is not audio\n")
    wav = (root / "good_stereo.flac").read_bytes()
    (root / "sub" / "corrupt.flac").write_bytes(wav[:64] + bytes(4000))
    (root / "notes.txt").write_text("ignored: not an audio extension")
    return root


@pytest.mark.parametrize(
    "name, reason",
    [
        ("missing.wav", "no such file"),
        ("empty.wav", "empty file"),
        ("text.wav", "not a decodable audio file"),
        ("sub/corrupt.flac", "corrupt audio data"),
    ],
)
def test_bad_file_raises_one_line_error_naming_it(collection, name, reason):
    path = collection / name
    with pytest.raises(AudioError) as info:
        load_audio(path)
    message = str(info.value)
    assert str(path) in message and reason in message and "\n" not in message


def test_load_audio_equals_librosa_load_for_any_rate_and_channels(collection):
    for name in ("good_stereo.flac", "sub/good.ogg"):
        y, _ = load_audio(collection / name)
        expected, _ = librosa.load(collection / name, sr=22050)
        assert y.shape == expected.shape
        assert np.abs(y - expected).max() < 1e-6


@pytest.mark.parametrize("channels", [1, 2, 3, 6, 8])
def test_mix_down_equals_numpy_mean_bit_for_bit(channels):
    block = np.random.default_rng(channels).standard_normal((5000, channels)).astype(np.float32) * 0.3
    mono = mix_down(block)
    assert mono.dtype == np.float32 and np.array_equal(mono, block.mean(axis=1, dtype=np.float32))
    assert np.shares_memory(mono, block) is False


def test_unknown_model_id_lists_the_valid_ones():
    with pytest.raises(UnknownModelError) as info:
        load("v3_magic")
    assert "v3_magic" in str(info.value)
    assert all(model_id in str(info.value) for model_id in MODEL_IDS)


def test_shipped_models_load_by_id_with_their_cards():
    from models.registry import SHIPPED_DIR, SHIPPED_IDS, model_digest, weights_path

    for model_id in SHIPPED_IDS:
        card = json.loads((SHIPPED_DIR / model_id / "model.json").read_text())
        assert weights_path(model_id) == SHIPPED_DIR / model_id / "weights.safetensors"
        assert model_digest(model_id) == ""  # immutable, like the pretrained ids: indexes record the id
        trained, start = load(model_id).state_dict(), load(card["init"]).state_dict()
        assert trained.keys() == start.keys()
        assert any(not torch.equal(trained[k], start[k]) for k in trained)  # really trained, not a copy
        assert "NonCommercial" not in json.dumps(card["data"]) and card["licence"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_folder_mode_reports_bad_files_and_extracts_the_rest(collection, tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "missing.mp3"
    result = _cli("chroma", str(collection), str(missing), "-o", str(out), "--json", "-q")
    assert result.returncode == 1  # some files failed
    report = json.loads(result.stdout)
    assert sorted(Path(p).relative_to(out).as_posix() for p in report["written"]) == ["good_stereo.npz", "sub/good.npz"]
    failed = {Path(f["path"]).name: f["error"] for f in report["failed"]}
    assert set(failed) == {"empty.wav", "text.wav", "corrupt.flac", "missing.mp3"}
    for line in result.stderr.strip().splitlines():
        assert line.startswith("error: ")
    assert all(name in result.stderr for name in failed)
    data = np.load(out / "good_stereo.npz")
    n = len(data["times"])
    assert data["probabilities"].shape == (13, n) and data["chroma"].shape == (12, n)
    np.testing.assert_allclose(data["probabilities"].sum(axis=0), 1.0, atol=1e-5)
    assert abs(data["times"][-1] - 2.0) <= 0.04 + 1e-9  # 0.5 s lead-in + 3 notes of 0.5 s, 25 Hz frames
    assert not list(out.rglob(".*.npz"))  # no temporary files left behind


def test_cli_unknown_model_is_a_one_line_error(collection, tmp_path):
    result = _cli("chroma", str(collection / "good_stereo.flac"), "-o", str(tmp_path), "--model", "nope")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "unknown model 'nope'" in result.stderr


def test_fold_mean_averages_exactly_its_family_members():
    """``v1_ctc_mean`` averages the five three-fold v1 models (not the four-fold ones), frame by frame."""
    from models.errors import ParameterError
    from models.extractor import ChromaExtractor
    from models.extractor_factory import MeanExtractor, family_members

    members = family_members("v1_ctc")
    assert members == ["v1_ctc_train123valid4", "v1_ctc_train234valid5", "v1_ctc_train345valid1",
                       "v1_ctc_train451valid2", "v1_ctc_train512valid3"]
    assert family_members("v2_strong") == [m for m in MODEL_IDS if m.startswith("v2_strong_")]
    with pytest.raises(ParameterError, match="no model family 'v3_ctc'"):
        family_members("v3_ctc")
    y = harmonic_tones([57, 61, 64], note_seconds=0.4, sr=22050)
    mean = MeanExtractor("v1_ctc_mean").from_signal(y).probabilities
    singles = [ChromaExtractor(m).from_signal(y).probabilities for m in members]
    np.testing.assert_allclose(mean, np.mean(singles, axis=0), atol=1e-6)
    assert np.abs(singles[0] - singles[1]).max() > 1e-3  # the members differ, so the mean is a real average


def test_a_mean_of_named_models_averages_exactly_those_models():
    """``A+B`` averages the probabilities of the pretrained models it names; other ids are no mean."""
    from models.extractor import ChromaExtractor
    from models.extractor_factory import MeanExtractor, family_members, make_extractor, mean_members

    pair = "v2_ctc_train123valid4+v2_ctc_train512valid3"
    assert mean_members(pair) == ["v2_ctc_train123valid4", "v2_ctc_train512valid3"]
    assert mean_members("v2_ctc_mean") == family_members("v2_ctc")
    for other in ("v2_ctc_train123valid4", "v2_ctc_train123valid4+cens", "v2_ctc_train123valid4+v2_ctc_train123valid4",
                  "v2_ctc_train123valid4+nope"):
        assert mean_members(other) is None
    y = harmonic_tones([60, 64, 67], note_seconds=0.4, sr=22050)
    extractor = make_extractor(pair)
    assert isinstance(extractor, MeanExtractor) and extractor.model_id == pair
    mean = extractor.from_signal(y).probabilities
    singles = [ChromaExtractor(m).from_signal(y).probabilities for m in mean_members(pair)]
    np.testing.assert_allclose(mean, (singles[0] + singles[1]) / 2, atol=1e-6)
    assert np.abs(mean - singles[0]).max() > 1e-3


def test_cens_from_the_deep_front_end_equals_librosa_cens_and_fusion_averages_the_two():
    """``<model>+cens`` adds the deep chroma and a CENS computed from the same HCQT (no second CQT):
    that CENS agrees with librosa's frame by frame, and the fusion is their normalised sum."""
    from models.cens import cens_from_log_hcqt
    from models.extractor import ChromaExtractor
    from models.extractor_factory import CensExtractor, make_extractor

    rng = np.random.default_rng(0)
    chords = [[60, 64, 67], [57, 60, 64, 69], [55, 59, 62, 65], [53, 57, 60, 72]]
    y = np.concatenate([harmonic_tones(list(rng.choice(c, 3, replace=False)), note_seconds=0.3, sr=22050)
                        for c in chords * 3]).astype(np.float32)
    deep = ChromaExtractor("v2_ctc_train123valid4")
    ours = cens_from_log_hcqt(deep.log_hcqt(y))
    reference = CensExtractor().from_signal(y).chroma
    n = min(ours.shape[1], reference.shape[1])
    cosines = np.sum(ours[:, :n] * reference[:, :n], axis=0)
    assert np.median(cosines) > 0.99 and np.percentile(cosines, 5) > 0.95
    fused = make_extractor("v2_ctc_train123valid4+cens").from_signal(y)
    expected = deep.from_signal(y).chroma + ours
    np.testing.assert_allclose(fused.chroma, expected / np.linalg.norm(expected, axis=0), atol=1e-5)
    assert fused.probabilities.shape == (13, fused.chroma.shape[1]) and not fused.probabilities[12].any()
