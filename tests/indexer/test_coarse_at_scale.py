"""Indexes whose 25 Hz features turn coarse when the collection is large (``coarse_at_scale``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import db.store
from cli import main
from db.store import FEATURE_STEP, IndexStore
from indexer.build import index_collection
from models.errors import ParameterError
from models.registry import DEFAULT_MODEL
from models.retrieval_features import (
    COARSE_RATES,
    PRESETS,
    IndexSettings,
    SettingsMismatchError,
    coarsened,
    retrieval_features,
)
from retrieval.query import query
from retrieval.theme import parse_corpus_work

FINE = IndexSettings(model_id=DEFAULT_MODEL)
"""The default rates with one network (cheaper to extract than the default's two)."""


def test_coarsened_frames_equal_features_extracted_at_the_coarse_rates():
    rng = np.random.default_rng(0)
    chroma = rng.random((12, 301)).astype(np.float32) ** 4
    chroma[:, 40] = 1.0  # a silent frame: the networks' chroma holds the uniform row there (fill=True)
    chroma /= np.linalg.norm(chroma, axis=0)  # the networks' chroma: unit frames
    fine = retrieval_features(chroma, 1, 1)
    direct = retrieval_features(chroma, COARSE_RATES["downsample"], COARSE_RATES["smoothing"])
    assert coarsened(fine).shape == direct.shape == (151, 12)
    assert np.abs(coarsened(fine) - direct).max() < 1e-6
    stored = db.store.decode_features(db.store.encode_features(fine, "uint8"), "uint8")
    assert np.abs(coarsened(stored) - direct).max() < 2 * FEATURE_STEP  # from the index's uint8 frames
    with pytest.raises(ParameterError, match=r"shape \(T, 12\)"):
        coarsened(chroma)


def test_the_default_turns_coarse_at_scale_and_other_rates_stay():
    default = PRESETS["default"].apply()
    assert default.coarse_at_scale and default.rate == 25.0 and default.dim == 384
    large = default.at_scale()
    assert (large.downsample, large.smoothing, large.shingle_length, large.shingle_hop) == (2, 5, 16, 2)
    assert large.model_id == default.model_id and not large.coarse_at_scale and large.dim == 192
    for coarse in (PRESETS["fast"].apply(), IndexSettings(downsample=2, smoothing=5), IndexSettings(smoothing=3)):
        assert not coarse.coarse_at_scale and coarse.at_scale() == coarse  # only 25 Hz frames turn coarse


def _theme_answer(store: IndexStore) -> str:
    return Path(query(store, parse_corpus_work("haydn/opus74no1/movement3"), measures=(9, 12), top=1)
                .matches[0].path).stem


def test_a_large_collection_turns_coarse_from_its_stored_frames(rendered_dir, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "audio"
    shutil.copytree(rendered_dir, folder)
    path = tmp_path / "fine.db"
    index_collection(folder, path, FINE, progress=False)
    store = IndexStore.open(path)
    fine = {r.path: store.frames(r.id) for r in store.recordings("indexed")}
    fine_cens = {r.path: store.cens(r.id) for r in store.recordings("indexed")}
    assert store.settings == FINE and store.vectors().dim == 384 and _theme_answer(store) == "haydn_op74"
    store.close()

    monkeypatch.setattr(db.store, "IVF_FLAT_LIMIT", 100)  # the test collection counts as large
    shutil.copy(rendered_dir / "mozart_k155.wav", folder / "mozart_copy.wav")  # arrives with the crossing run
    index_collection(folder, path, FINE, progress=False)
    store = IndexStore.open(path, readonly=True)
    assert store.declared == FINE and store.settings == FINE.at_scale() and store.vectors().dim == 192
    assert store.db.execute("PRAGMA freelist_count").fetchone()[0] == 0  # the file shrunk to what it holds
    by_path = {r.path: r for r in store.recordings("indexed")}
    for file, frames in fine.items():
        assert by_path[file].n_frames == len(coarsened(frames))
        assert np.abs(store.frames(by_path[file].id) - coarsened(frames)).max() <= FEATURE_STEP
        np.testing.assert_array_equal(store.cens(by_path[file].id), fine_cens[file][::2])  # CENS rows: every second
    stored = store.stored_frames()  # the frames file the vote reads holds the coarse frames
    rid = by_path[str(folder / "haydn_op74.wav")].id
    assert stored.decoded(rid).shape == (by_path[str(folder / "haydn_op74.wav")].n_frames, 12)
    assert np.abs(stored.decoded(rid) - store.frames(rid)).max() < 1e-6
    assert _theme_answer(store) == "haydn_op74"
    store.close()

    shutil.copy(rendered_dir / "joplin_maple_leaf.wav", folder / "joplin_copy.wav")  # extracted at 12.5 Hz directly
    report = index_collection(folder, path, FINE, progress=False)
    assert report.added == [str(folder / "joplin_copy.wav")]
    store = IndexStore.open(path, readonly=True)
    copy, original = (store.frames(r.id) for r in sorted(store.recordings("indexed"), key=lambda r: r.path)
                      if Path(r.path).stem in ("joplin_copy", "joplin_maple_leaf"))
    assert copy.shape == original.shape and np.abs(copy - original).max() <= 2 * FEATURE_STEP
    copy_cens, original_cens = (store.cens(r.id) for r in sorted(store.recordings("indexed"), key=lambda r: r.path)
                                if Path(r.path).stem in ("joplin_copy", "joplin_maple_leaf"))
    assert copy_cens.shape == original_cens.shape and np.abs(copy_cens - original_cens).max() <= 2 * FEATURE_STEP
    assert main(["status", "--db", str(path), "--json"]) == 0 and '"coarsened": true' in capsys.readouterr().out
    store.close()
    with pytest.raises(SettingsMismatchError, match=r"coarse_at_scale=True \(asked False\)"):  # as made, not as turned
        index_collection(folder, path, FINE.at_scale(), progress=False)
