"""The compact index format: uint8 features and the conversion of older float32 indexes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cli import main
from db.store import FEATURE_STEP, FILE_ROW, IndexStore, decode_features, encode_features
from retrieval.query import query
from retrieval.theme import parse_corpus_work

from ..retrieval.test_query import THEMES


def test_uint8_features_are_within_half_a_step():
    features = np.random.default_rng(0).random((500, 12)).astype(np.float32)
    stored = decode_features(encode_features(features, "uint8"), "uint8")
    assert stored.dtype == np.float32 and stored.shape == features.shape
    assert np.abs(stored - features).max() <= FEATURE_STEP / 2 + 1e-7
    assert np.array_equal(decode_features(encode_features(features, "float32"), "float32"), features)


@pytest.fixture(scope="module")
def float32_index(indexed, tmp_path_factory):
    """The test collection's index as an older index: float32 features (the features of the
    uint8 index, so both hold the same values)."""
    source = IndexStore.open(indexed, readonly=True)
    path = tmp_path_factory.mktemp("old") / "old.db"
    old = IndexStore.create(path, source.settings, features_dtype="float32")
    for rec, features in source.iter_frames():
        old.put_indexed({**{c: getattr(rec, c) for c in FILE_ROW}, "model_id": rec.model_id},
                        features + np.float32(FEATURE_STEP / 4))  # off the uint8 grid, as computed features are
    old.checkpoint()
    old.close()
    source.close()
    return path


def _answers(store: IndexStore) -> list[tuple[str, float, float]]:
    out = []
    for _, work, measures, part in THEMES:
        best = query(store, parse_corpus_work(work), measures=measures, part=part, top=3).matches[0]
        out.append((best.path, best.start, best.end))
    return out


def test_converting_keeps_answers_and_shrinks_the_features(float32_index, tmp_path, capsys):
    path = tmp_path / "converted.db"
    for name, file in IndexStore.files(float32_index).items():
        if file.exists() and name != "lock":
            shutil.copy(file, IndexStore.files(path)[name])
    old = IndexStore.open(path, readonly=True)
    before, features = _answers(old), {r.id: old.frames(r.id) for r in old.recordings("indexed")}
    old.close()
    size = path.stat().st_size
    assert main(["compact", "--db", str(path), "--json"]) == 0
    capsys.readouterr()
    new = IndexStore.open(path, readonly=True)
    assert new.features_dtype == "uint8"
    for rid, f in features.items():
        assert np.abs(new.frames(rid) - f).max() <= FEATURE_STEP / 2 + 1e-6
    after = _answers(new)
    new.close()
    frame = 1 / new.settings.rate
    for (p0, s0, e0), (p1, s1, e1) in zip(before, after, strict=True):
        assert p0 == p1 and abs(s0 - s1) <= frame + 1e-9 and abs(e0 - e1) <= frame + 1e-9
    assert path.stat().st_size < 0.5 * size  # 12 bytes a frame instead of 48
    assert main(["compact", "--db", str(path)]) == 0
    assert "already compact" in capsys.readouterr().out
