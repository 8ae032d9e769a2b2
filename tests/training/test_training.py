"""Learning chroma: targets, losses, augmentation, the training loop, resumption, models by path,
bad data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import music21
import numpy as np
import pytest
import soundfile as sf
import torch

from cli import main
from models.audio import load_audio
from models.extractor import ChromaExtractor
from models.registry import ModelError, load, model_digest
from models.tones import harmonic_tones
from retrieval.soundfont import TempoWarp
from training.augment import mix_log_hcqt, shift_bins
from training.cache import HCQTCache, network_input
from training.loop import SCRATCH, TrainConfig, TrainingInterrupted, _Batches, batch_loss, network_logits, train
from training.pairs import (
    Excerpt,
    LabelledNote,
    PairError,
    csv_pairs,
    cut_excerpts,
    melody_line,
    rendering_clock,
)
from training.targets import BLANK, ctc_target, linear_target, strong_target

NOTE_S, LEAD_IN = 0.5, 0.5


def _note(on: float, off: float, pitch: int, q0: float, q1: float) -> LabelledNote:
    return LabelledNote(on, off, pitch, q0, q1)


# -- targets -------------------------------------------------------------------------------------------


def test_melody_line_keeps_the_top_note_of_a_chord_and_repeated_notes():
    notes = [_note(0, 1, 60, 0, 1), _note(0, 1, 64, 0, 1), _note(1, 2, 62, 1, 2), _note(2, 3, 62, 2, 3)]
    line = melody_line(notes)
    assert [n.pitch for n in line] == [64, 62, 62]


def test_ctc_target_keeps_repeated_notes_as_separate_symbols():
    e = Excerpt(0, 0, 50, (_note(0, 0.5, 62, 0, 1), _note(0.5, 1, 62, 1, 2), _note(1.2, 2, 73, 2.5, 4)))
    assert ctc_target(e).tolist() == [2, 2, 1]


def test_strong_target_follows_the_times_with_blank_in_rests():
    # 25 Hz: note 1 frames 0-12, rest 13-19, note 2 frames 20-39, rest to 49
    e = Excerpt(0, 0, 50, (_note(0.0, 0.52, 60, 0, 1), _note(0.8, 1.6, 67, 2, 4)))
    t = strong_target(e)
    assert t[:13].tolist() == [0] * 13
    assert t[13:20].tolist() == [BLANK] * 7
    assert t[20:40].tolist() == [7] * 20
    assert t[40:].tolist() == [BLANK] * 10


def test_strong_target_is_relative_to_the_excerpt_start():
    e = Excerpt(0, 100, 125, (_note(4.0, 5.0, 65, 0, 1),))
    assert strong_target(e).tolist() == [5] * 25


def test_linear_target_stretches_the_score_over_the_excerpt():
    # score: quarter C, quarter rest, half E — 4 quarters over 40 frames, whatever the audio times say
    e = Excerpt(0, 0, 40, (_note(0.0, 0.1, 60, 0, 1), _note(1.5, 1.6, 64, 2, 4)))
    t = linear_target(e)
    assert t[:10].tolist() == [0] * 10
    assert t[10:20].tolist() == [BLANK] * 10
    assert t[20:].tolist() == [4] * 20


def test_rendering_clock_applies_tempo_marks_start_and_drift(tmp_path):
    # 4 quarters at 0.5 s, then 0.25 s per quarter; the rendering starts at the score's 0.5 s
    tempo = {"offsets": [0.0, 4.0], "seconds_at": [0.0, 2.0], "seconds_per_quarter": [0.5, 0.25]}
    steady, drifting = tmp_path / "steady.timing.json", tmp_path / "drifting.timing.json"
    steady.write_text(json.dumps({"start": 0.5, "tempo": tempo, "warp": {"depth": 0.0, "end": 10.0}}))
    warp = {"depth": 0.2, "end": 10.0, "period": 3.0, "seed": 7}
    drifting.write_text(json.dumps({"start": 0.5, "tempo": tempo, "warp": warp}))
    clock = rendering_clock(steady)
    assert [clock(q) for q in (1.0, 2.0, 6.0)] == pytest.approx([0.0, 0.5, 2.0])
    drift = rendering_clock(drifting)
    assert drift(6.0) == pytest.approx(TempoWarp(**warp)(2.0))
    assert abs(drift(6.0) - 2.0) > 1e-3  # the drift moves notes


def test_cut_excerpts_holds_whole_notes_within_the_length():
    notes = tuple(_note(i * 0.5, i * 0.5 + 0.5, 60 + i % 12, i, i + 1) for i in range(40))
    excerpts = cut_excerpts(0, notes, n_frames=500, seconds=4.0)
    assert len(excerpts) > 4
    for e in excerpts:
        assert e.notes[-1].offset - e.notes[0].onset <= 4.0 + 1e-9
        assert e.start == int(e.notes[0].onset * 25)
    assert excerpts[1].notes[0].onset == pytest.approx(2.0)  # half overlap
    assert cut_excerpts(0, notes, n_frames=30, seconds=4.0)[-1].stop <= 30  # notes past the audio dropped


# -- a small generated set: harmonic-tone melodies with their scores and alignments -------------------


def _write_pair(folder: Path, name: str, pitches: list[int]) -> dict:
    sf.write(folder / f"{name}.wav", harmonic_tones(pitches, note_seconds=NOTE_S, lead_in=LEAD_IN), 22050)
    part = music21.stream.Part([music21.tempo.MetronomeMark(number=120)])
    for p in pitches:
        part.append(music21.note.Note(p, quarterLength=1))
    part.write("musicxml", fp=folder / f"{name}.musicxml")
    with open(folder / f"{name}_align.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start", "end"])
        for i in range(len(pitches)):
            w.writerow([LEAD_IN + i * NOTE_S, LEAD_IN + (i + 1) * NOTE_S])
    return {"audio": f"{name}.wav", "score": f"{name}.musicxml", "alignment": f"{name}_align.csv"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(7)
    rows = [_write_pair(folder, f"r{i}", [int(p) for p in rng.integers(60, 72, 12)]) for i in range(4)]
    with open(folder / "pairs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["audio", "score", "alignment", "split"])
        w.writeheader()
        for i, row in enumerate(rows):
            w.writerow({**row, "split": "selection" if i == 3 else "train"})
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> HCQTCache:
    """One front-end cache for the module's tests (the front end of a recording is computed once)."""
    return HCQTCache(tmp_path_factory.mktemp("hcqt"))


def test_csv_pairs_read_scores_and_alignments(generated):
    pairs = csv_pairs(generated / "pairs.csv")
    assert len(pairs) == 4 and all(p.aligned for p in pairs)
    assert len(pairs[0].notes) == 12
    assert pairs[0].notes[3].onset == pytest.approx(LEAD_IN + 3 * NOTE_S)
    assert pairs[0].notes[3].score_onset == pytest.approx(3.0)


def test_pairs_without_alignment_are_stretched_over_the_audio(generated, tmp_path):
    (tmp_path / "p.csv").write_text(f"audio,score\n{generated / 'r0.wav'},{generated / 'r0.musicxml'}\n")
    (pair,) = csv_pairs(tmp_path / "p.csv")
    assert not pair.aligned
    assert pair.notes[-1].offset == pytest.approx(LEAD_IN + 12 * NOTE_S, abs=0.01)


def _batches(generated, loss: str, cache: HCQTCache) -> _Batches:
    pairs = csv_pairs(generated / "pairs.csv")[:2]
    config = TrainConfig(init=SCRATCH, loss=loss, excerpt_seconds=2.0, batch_size=4)
    return _Batches(pairs, cache, config, context=5)


def _fit(data: _Batches, shuffle: bool, steps: int = 8) -> tuple[float, float]:
    torch.manual_seed(0)
    net = load()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x, targets, lengths = data.batch(np.arange(4), np.random.default_rng(0))

    def relabel(perm):
        return [np.where(t == BLANK, BLANK, perm[np.minimum(t, 11)]) for t in targets]

    first = last = None
    for _ in range(steps):
        labels = relabel(rng.permutation(12)) if shuffle else targets
        loss = batch_loss(network_logits(net, x, 5), labels, lengths, data.config.loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    with torch.no_grad():
        labels = relabel(rng.permutation(12)) if shuffle else targets
        last = float(batch_loss(network_logits(net, x, 5), labels, lengths, data.config.loss))
    return first, last


@pytest.mark.parametrize("loss", ["ctc", "strong"])
def test_steps_lower_the_loss_and_shuffled_labels_do_not(generated, cache, loss):
    data = _batches(generated, loss, cache)
    first, last = _fit(data, shuffle=False)
    assert last < 0.7 * first
    # labels whose pitch-class mapping changes every step: only what they share (timing) can be learnt
    _, last_shuffled = _fit(data, shuffle=True)
    assert last < 0.5 * last_shuffled


def test_strong_loss_refuses_unaligned_pairs(generated, tmp_path, cache):
    (tmp_path / "p.csv").write_text(f"audio,score\n{generated / 'r0.wav'},{generated / 'r0.musicxml'}\n")
    config = TrainConfig(init=SCRATCH, loss="strong", excerpt_seconds=3.0)
    with pytest.raises(ValueError, match="strong labels need aligned pairs"):
        _Batches(csv_pairs(tmp_path / "p.csv"), cache, config, context=5)


# -- the loop: save/load, resumption --------------------------------------------------------------------


def _config(**changes) -> TrainConfig:
    base = dict(init="v2_ctc_train123valid4", loss="ctc", epochs=2, batch_size=2, excerpt_seconds=1.5,
                steps_per_epoch=3, lr=1e-3)
    return TrainConfig(**{**base, **changes})


def test_saved_model_loads_with_identical_outputs(generated, tmp_path, cache):
    pairs = csv_pairs(generated / "pairs.csv")[:2]
    result = train(_config(epochs=1), pairs, tmp_path / "m", cache, progress=False)
    assert result.best_epoch == 1
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    assert card["loss"] == "ctc" and card["init"] == "v2_ctc_train123valid4" and len(card["validation_history"]) == 1
    trained, pretrained = load(str(tmp_path / "m")), load("v2_ctc_train123valid4")
    x = torch.from_numpy(network_input(cache.get(pairs[0].audio))).permute(2, 0, 1)[None, :, :100]
    with torch.no_grad():
        ours, theirs = trained(x), pretrained(x)
    checkpoint = {k[4:]: v for k, v in __import__("safetensors.torch").torch.load_file(
        tmp_path / "m" / "checkpoint.safetensors").items() if k.startswith("net.")}
    again = load(str(tmp_path / "m" / "weights.safetensors"))
    assert torch.equal(again(x), ours)
    assert all(torch.equal(checkpoint[k], v) for k, v in trained.state_dict().items())
    assert (ours - theirs).abs().max() > 1e-4  # it did learn something
    assert model_digest(str(tmp_path / "m")) != ""


def test_an_interrupted_run_resumes_at_its_step(generated, tmp_path, monkeypatch, cache):
    pairs = csv_pairs(generated / "pairs.csv")[:2]
    train(_config(), pairs, tmp_path / "whole", cache, progress=False)

    calls = {"n": 0}
    original = _Batches.batch

    def interrupting(self, indices, rng):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2, step 2
            raise KeyboardInterrupt
        return original(self, indices, rng)

    monkeypatch.setattr(_Batches, "batch", interrupting)
    with pytest.raises(TrainingInterrupted, match="epoch 2, step 1"):
        train(_config(), pairs, tmp_path / "split", cache, progress=False)
    monkeypatch.setattr(_Batches, "batch", original)
    state = json.loads((tmp_path / "split" / "checkpoint.json").read_text())["state"]
    assert (state["epoch"], state["step"]) == (1, 1)
    train(_config(), pairs, tmp_path / "split", cache, progress=False)
    whole, split = load(str(tmp_path / "whole")), load(str(tmp_path / "split"))
    for (name, a), b in zip(whole.state_dict().items(), split.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_a_checkpoint_of_other_settings_is_not_resumed(generated, tmp_path, cache):
    pairs = csv_pairs(generated / "pairs.csv")[:2]
    train(_config(epochs=1, steps_per_epoch=1), pairs, tmp_path / "m", cache, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        train(_config(epochs=1, steps_per_epoch=1, loss="linear"), pairs, tmp_path / "m", cache, progress=False)


# -- the CLI: train, then use the model by path everywhere ------------------------------------------------


def test_cli_train_then_index_and_query_with_the_model(generated, tmp_path, capsys):
    out = tmp_path / "model"
    code = main(["train", "--data", str(generated / "pairs.csv"), "--out", str(out), "--epochs", "1", "--batch-size",
                 "2", "--excerpt-seconds", "1.5", "--steps-per-epoch", "1", "--quiet", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["best_epoch"] == 1 and (out / "weights.safetensors").is_file()
    db = tmp_path / "index.db"
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(3):
        (audio / f"r{i}.wav").symlink_to(generated / f"r{i}.wav")
    assert main(["index", str(audio), "--db", str(db), "--model", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["query", str(generated / "r1.musicxml"), "--db", str(db), "--json"]) == 0
    best = json.loads(capsys.readouterr().out)["matches"][0]
    assert Path(best["path"]).stem == "r1"
    # the same query naming another model is refused, naming the difference
    assert main(["query", str(generated / "r1.musicxml"), "--db", str(db), "--model", "v2_ctc_train123valid4"]) == 2
    assert "model_id" in capsys.readouterr().err


# -- bad data and bad models: one line naming the file ------------------------------------------------------


def test_bad_pairs_name_the_file(generated, tmp_path):
    (tmp_path / "a.csv").write_text("audio,score\nmissing.wav,x.musicxml\n")
    with pytest.raises(PairError, match="missing.wav: no such audio file"):
        csv_pairs(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text(f"audio,score\n{generated / 'r0.wav'},{tmp_path / 'none.musicxml'}\n")
    with pytest.raises(PairError, match="none.musicxml: no such file"):
        csv_pairs(tmp_path / "b.csv")
    long_align = tmp_path / "long.csv"
    long_align.write_text("start,end\n" + "".join(f"{i * 2},{i * 2 + 2}\n" for i in range(12)))
    (tmp_path / "c.csv").write_text(f"audio,score,alignment\n{generated / 'r0.wav'},{generated / 'r0.musicxml'},"
                                    f"{long_align}\n")
    with pytest.raises(PairError, match="long.csv: alignment ends at 24.0 s, after the end of"):
        csv_pairs(tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("audio\nx.wav\n")
    with pytest.raises(PairError, match="d.csv: not a pairs CSV"):
        csv_pairs(tmp_path / "d.csv")


def test_an_excerpt_free_set_is_refused(generated, cache):
    pairs = csv_pairs(generated / "pairs.csv")[:1]
    silent = [type(pairs[0])(pairs[0].audio, (), "w", "n", True)]
    with pytest.raises(ValueError, match="no training excerpts"):
        _Batches(silent, cache, _config(), context=5)


def test_bad_models_name_the_file(tmp_path, capsys):
    with pytest.raises(ModelError, match="no such model file"):
        load(str(tmp_path / "nothing" / "weights.safetensors"))
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(3)}, foreign)
    with pytest.raises(ModelError, match="foreign.safetensors: not a chroma model"):
        load(str(foreign))
    text = tmp_path / "text.safetensors"
    text.write_text("hello")
    with pytest.raises(ModelError, match="text.safetensors: not a safetensors model file"):
        load(str(text))
    assert main(["index", str(tmp_path), "--db", str(tmp_path / "i.db"), "--model", "nope", "--quiet"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "i.db").exists()


# -- augmentation, and the cache it reads (the log-HCQT) -----------------------------------------------

THREE_DB = 10 * np.log10(2) / 80  # a signal added to itself: twice the power, on the (1/80)·dB scale


def _log_hcqt(seed: int, floor_share: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.2, 1.0, (50, 6, 216)).astype(np.float32)
    v[rng.random(v.shape) < floor_share] = 0.0  # bins at the 80 dB floor
    return v


def test_mixing_silence_changes_nothing_and_a_copy_adds_3_db():
    a = _log_hcqt(0)
    assert np.allclose(mix_log_hcqt(a, np.zeros_like(a), 0.0), a, atol=1e-6)
    doubled = mix_log_hcqt(a, a, 0.0)
    assert np.allclose(doubled[a > 0], a[a > 0] + THREE_DB, atol=1e-6) and not doubled[a == 0].any()


def test_mixing_applies_the_gain_and_the_floor():
    a, b = np.zeros((50, 6, 216), np.float32), _log_hcqt(1, floor_share=0.0)
    b[:, :, :20] = 0.1  # 12 dB down, these fall below the floor
    quieter = mix_log_hcqt(a, b, -12.0)  # b alone, 12 dB down: 12/80 lower, at least the floor
    assert np.allclose(quieter, np.maximum(b - 12 / 80, 0.0), atol=1e-6)
    assert (quieter == 0).any() and quieter.min() >= 0.0


def test_shift_bins_moves_pitch_and_fills_zeros():
    x = np.random.default_rng(2).random((4, 216, 6)).astype(np.float32)
    up = shift_bins(x, 3)
    assert np.array_equal(up[:, 3:], x[:, :-3]) and not up[:, :3].any()
    assert np.array_equal(shift_bins(x, 0), x) and np.array_equal(shift_bins(up, -3)[:, :-3], x[:, :-3])


def test_cache_holds_the_log_hcqt_whose_normalisation_is_the_network_input(generated, cache):
    audio = generated / "r0.wav"
    y, _ = load_audio(audio)
    expected = ChromaExtractor().front_end(y).numpy()
    cached = cache.get(audio)
    assert cached.dtype == np.float16 and cached.shape == (len(expected), 6, 216)
    assert np.abs(network_input(cached) - expected).max() < 2e-3  # float16 storage


def test_mixed_batches_keep_their_targets_and_change_their_inputs(generated, cache):
    pairs = csv_pairs(generated / "pairs.csv")[:3]
    plain, mixed = (_Batches(pairs, cache, TrainConfig(init=SCRATCH, excerpt_seconds=2.0, mix=m), context=5)
                    for m in (0.0, 1.0))
    chosen = np.arange(4)
    x0, t0, l0 = plain.batch(chosen, np.random.default_rng(0))
    x1, t1, l1 = mixed.batch(chosen, np.random.default_rng(0))
    assert l0 == l1 and all(np.array_equal(a, b) for a, b in zip(t0, t1, strict=True))
    assert x0.shape == x1.shape and not np.allclose(x0.numpy(), x1.numpy(), atol=1e-3)
    frames = x1.numpy()[:, 0].reshape(-1, 216)  # the first harmonic of every frame, padding included
    norms = np.linalg.norm(frames, axis=1)
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-4)  # still normalised per frame; padding stays zero


def test_mix_share_is_validated():
    with pytest.raises(Exception, match="mix"):
        TrainConfig(mix=1.5)


# -- validation ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("downsample", [1, 2])
def test_evaluate_features_searches_at_the_rate_of_its_settings(tmp_path, downsample):
    """A theme planted 20 s into one of two noise recordings is found there, in seconds, at either
    retrieval rate: the temporary index and the queries take the given settings, not the default."""
    from models.retrieval_features import IndexSettings, retrieval_features
    from retrieval.theme import NoteEvent, Theme
    from retrieval.variants import symbolic_chroma
    from training.validation import evaluate_features

    rng = np.random.default_rng(0)
    theme = Theme(tuple(NoteEvent(0.4 * i, 0.4, 60 + int(p)) for i, p in enumerate(rng.integers(0, 12, 20))))
    settings = IndexSettings(downsample=downsample)
    audios, features = [], []
    for name in ("a", "b"):
        chroma = rng.random((12, 1500)).astype(np.float32) ** 4  # 60 s at 25 Hz
        if name == "a":
            planted = symbolic_chroma(theme.notes)
            chroma[:, 500 : 500 + planted.shape[1]] = planted
        audios.append(tmp_path / f"{name}.wav")
        audios[-1].touch()
        features.append(retrieval_features(chroma, settings.downsample, settings.smoothing))
    rows = [{"query_id": "q", "recording": "a", "query": theme}]
    metrics, table = evaluate_features(audios, features, rows, settings=settings)
    assert metrics["mrr"] == 1.0
    assert table[0]["start"] == pytest.approx(20.0, abs=0.3)
