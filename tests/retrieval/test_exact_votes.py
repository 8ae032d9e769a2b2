"""Exact similarities in the vote of a lossy index: the frames file, its upkeep, and what it finds."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from db.store import FEATURE_STEP, FILE_ROW, IndexStore
from indexer.demo_collection import DEMO_THEME
from models.retrieval_features import shingles
from retrieval.query import query
from retrieval.search import _rescored
from retrieval.theme import parse_corpus_work

PQ = "IVF16,PQ16x4fs"  # lossy codes small enough to train on the demo collection


def _copy_recordings(source: IndexStore, store: IndexStore) -> None:
    """Every recording of ``source`` with its frames into ``store``."""
    for rec, frames in source.iter_frames():
        store.put_indexed({c: getattr(rec, c) for c in FILE_ROW} | {"model_id": rec.model_id}, frames)


@pytest.fixture(scope="module")
def lossy(indexed, tmp_path_factory) -> Path:
    """The demo collection's index with PQ codes instead of exact vectors."""
    db = tmp_path_factory.mktemp("lossy") / "index.db"
    source = IndexStore.open(indexed, readonly=True)
    store = IndexStore.create(db, replace(source.settings, index_factory=PQ))
    _copy_recordings(source, store)
    store.rebuild_vectors(PQ)
    store.close()
    source.close()
    return db


def test_an_index_copied_to_another_name_reads_its_own_frames_not_the_originals(lossy, tmp_path):
    original, copy = tmp_path / "index.db", tmp_path / "copy.db"
    for file in lossy.parent.glob("index.db*"):
        shutil.copy(file, tmp_path / file.name)
        shutil.copy(file, tmp_path / file.name.replace("index.db", "copy.db"))
    frames_file = next(tmp_path.glob("index.db.frames-*"))
    frames_file.write_bytes(bytes(frames_file.stat().st_size))  # the original's frames changed under it
    reader = IndexStore.open(copy, readonly=True)
    stored = reader.stored_frames()
    for rec in reader.recordings("indexed"):
        assert np.array_equal(stored.decoded(rec.id), reader.frames(rec.id))  # what re-ranking reads
    assert stored.decoded(len(stored.lengths)) is None and stored.decoded(-1) is None
    assert reader.stats()["frames_bytes"] == frames_file.stat().st_size
    reader.close()
    assert IndexStore.open(original, readonly=True).stored_frames().frames.max() == 0


def test_hits_are_rescored_to_the_stored_shingles_cosine(lossy):
    store = IndexStore.open(lossy, readonly=True)
    assert store.vectors().lossy and store.stored_frames() is not None
    length = store.settings.shingle_length
    queries = shingles(store.frames(3), length, 2)[1][5:25]
    sims, rids, frames = store.vectors().search(queries, 40)
    exact, rids, frames = _rescored(store.stored_frames(), queries, sims, rids, frames, length)
    direct = np.array([[shingles(store.frames(int(r)), length, 1)[1][f] @ q for r, f in zip(row_r, row_f, strict=True)]
                       for q, row_r, row_f in zip(queries, rids, frames, strict=True)])
    assert np.abs(exact - direct).max() < 4 * FEATURE_STEP  # the uint8 rounding, nothing more
    assert np.all(np.diff(exact, axis=1) <= 0)  # each query's hits best first, as FAISS gives them
    assert np.abs(sims - np.sort(direct, axis=1)[:, ::-1]).max() > 0.05  # the codes alone are far off
    store.close()


def test_the_frames_file_follows_updates_and_removals(lossy, tmp_path):
    db = tmp_path / "index.db"
    for suffix in ("", ".faiss"):
        shutil.copy(f"{lossy}{suffix}", f"{db}{suffix}")
    for file in lossy.parent.glob("index.db.frames-*"):
        shutil.copy(file, tmp_path / file.name)
    store = IndexStore.open(db)
    rows = {r.id: r for r in store.recordings()}
    changed = store.frames(2)[::-1].copy()  # "re-indexed" with other content
    store.put_indexed({c: getattr(rows[2], c) for c in ("path", "size", "mtime", "hash", "duration", "sample_rate",
                                                         "channels", "model_id")}, changed)
    store.delete([4])
    store.checkpoint()
    store.close()
    reader = IndexStore.open(db, readonly=True)
    stored = reader.stored_frames()
    for rec in reader.recordings("indexed"):
        assert np.array_equal(stored.decoded(rec.id), reader.frames(rec.id))  # what re-ranking reads
    assert stored.decoded(len(stored.lengths)) is None and stored.decoded(-1) is None
    assert stored.lengths[4] == 0 if len(stored.lengths) > 4 else True
    reader.close()


def test_an_index_without_a_frames_file_votes_on_codes_and_the_next_run_adds_it(lossy, rendered_dir, tmp_path):
    db = tmp_path / "index.db"
    for suffix in ("", ".faiss"):
        shutil.copy(f"{lossy}{suffix}", f"{db}{suffix}")
    with sqlite3.connect(db) as conn:  # as an index made before the frames file
        conn.execute("DROP TABLE frame_offsets")
        conn.execute("DELETE FROM settings WHERE key = 'frames_file'")
    theme = tmp_path / "theme.musicxml"
    parse_corpus_work("haydn/opus74no1/movement3").measures(9, 12).parts[0].write("musicxml", fp=theme)
    reader = IndexStore.open(db, readonly=True)
    assert reader.stored_frames() is None
    assert query(reader, theme, top=1).matches[0].path.endswith("haydn_op74.wav")
    reader.close()
    writer = IndexStore.open(db)
    writer.checkpoint()  # the next index run: the frames of every recording are written once
    writer.close()
    reader = IndexStore.open(db, readonly=True)
    assert reader.stored_frames() is not None and (reader.stored_frames().lengths > 0).sum() == 5
    reader.close()


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_an_index_whose_frames_file_was_lost_writes_every_recording_again(lossy, tmp_path, damage):
    """Copied without its frames file (or the file cut short), an index's rows point at frames no
    longer there: the next run must not append new recordings over those offsets."""
    db = tmp_path / "index.db"
    for suffix in ("", ".faiss"):
        shutil.copy(f"{lossy}{suffix}", f"{db}{suffix}")
    if damage == "truncated":
        for file in lossy.parent.glob("index.db.frames-*"):
            (tmp_path / file.name).write_bytes(file.read_bytes()[: file.stat().st_size // 3])
    store = IndexStore.open(db)
    rows = {r.id: r for r in store.recordings()}
    for i in range(3):  # new recordings, appended by the next run
        store.put_indexed({c: getattr(rows[1], c) for c in ("size", "mtime", "hash", "duration", "sample_rate",
                                                             "channels", "model_id")} | {"path": f"/new/{i}.wav"},
                          store.frames(1 + i % 2)[::-1].copy())
    store.checkpoint()
    store.close()
    reader = IndexStore.open(db, readonly=True)
    stored = reader.stored_frames()
    assert stored is not None
    for rec in reader.recordings("indexed"):
        assert np.array_equal(stored.decoded(rec.id), reader.frames(rec.id)), rec.path
    reader.close()


def test_a_planted_theme_is_found_first_among_many_lookalike_shingles(indexed, tmp_path):
    """200,000 shingles of random chroma with the same smoothness as music, plus the demo collection."""
    source = IndexStore.open(indexed, readonly=True)
    factory = "IVF256,PQ16x4fs"
    store = IndexStore.create(tmp_path / "large.db", replace(source.settings, index_factory=factory))
    rng = np.random.default_rng(0)
    chord, n_frames = 16 // source.settings.downsample, round(320 * source.settings.rate)
    for i in range(100):
        steps = rng.random((n_frames // chord, 12)) ** 4  # a chord every 0.64 s, held
        noise = np.repeat(steps, chord, axis=0) + 0.05 * rng.random((n_frames, 12))
        features = (noise / np.linalg.norm(noise, axis=1, keepdims=True)).astype(np.float32)
        store.put_indexed({"path": f"/noise/{i}.wav", "size": 0, "mtime": 0.0, "hash": "", "duration": 320.0,
                           "sample_rate": 22050, "channels": 1, "model_id": source.settings.model_id}, features)
    _copy_recordings(source, store)
    store.rebuild_vectors(factory)
    store.close()
    source.close()
    work, measures, part = DEMO_THEME
    theme = tmp_path / "theme.musicxml"
    parse_corpus_work(work).measures(*measures).parts[part].write("musicxml", fp=theme)
    reader = IndexStore.open(tmp_path / "large.db", readonly=True)
    assert len(reader.vectors()) > 200_000
    best = query(reader, theme, top=1).matches[0]
    assert best.path.endswith("haydn_op74.wav") and 10.0 < best.start < 14.0
    reader.stored_frames = lambda: None  # the vote on the codes' similarities alone: not even a candidate
    assert not any(m.path.endswith("haydn_op74.wav") for m in query(reader, theme, top=30).matches)
    reader.close()


def test_diagonal_scores_are_the_mean_best_cosine_along_the_hypothesis(lossy):
    from models.retrieval_features import shingle_starts
    from retrieval.search import _diagonal_scores

    store = IndexStore.open(lossy, readonly=True)
    stored = store.stored_frames()
    theme = store.frames(3)[40:90].astype(np.float32)  # a variant's frames: a passage of recording 3
    starts = shingle_starts(len(theme), 16, 2)
    queries = shingles(theme, 16, 2)[1]
    norms = np.array([np.linalg.norm(theme[s : s + 16]) for s in starts])
    rids = np.array([3, 3, 1, 4], np.int64)
    anchors = np.array([40, 45, 0, 10_000], np.int64)  # the right place, 5 frames off, elsewhere, past the end
    out = np.empty(4)
    _diagonal_scores(stored.frames, stored.offsets, stored.lengths, theme, np.array([0, len(theme)]),
                     starts.astype(np.int64), norms, np.array([0, len(starts)]), rids, np.zeros(4, np.int64), anchors,
                     16, 2, out)

    def direct(rid: int, anchor: int) -> float:
        frames = store.frames(rid)
        stored_shingles = shingles(np.concatenate([frames, np.zeros((40, 12))]), 16, 1)[1]
        best = [max((stored_shingles[a] @ q for d in range(-2, 3) if 0 <= (a := anchor + s + d) < len(frames)),
                    default=0.0) for s, q in zip(starts, queries, strict=True)]
        return float(np.mean(best))

    np.testing.assert_allclose(out, [direct(int(r), int(a)) for r, a in zip(rids, anchors, strict=True)],
                               atol=4 * FEATURE_STEP)
    assert out[0] > 0.99 and out[0] > out[1] > out[2] and out[3] == 0.0
    store.close()


def test_verification_keeps_the_right_recording_among_fewer_candidates(lossy):
    """Of the vote's recordings, the exactly verified best two still hold the theme's own."""
    from retrieval.search import _shingle_hits, _verified, _vote
    from retrieval.variants import query_variants

    store = IndexStore.open(lossy, readonly=True)
    work, measures, part = DEMO_THEME
    theme = parse_corpus_work(work).measures(*measures).parts[part]
    from retrieval.theme import theme_from_stream

    variants = query_variants(theme_from_stream(theme), store.settings, rendering="symbolic")
    found = _vote(_shingle_hits(store, [variants], 64)[0], variants, 5)
    kept = _verified(store, found, variants, 2)
    names = {store.recording(r).name for r in kept}
    assert len(found) == 5 and len(kept) == 2 and "haydn_op74" in names
    store.close()


def test_the_default_candidates_follow_the_collections_size(lossy, monkeypatch):
    """Without ``candidates`` a search re-ranks ``candidates_for`` the index's size; asked, as many as asked."""
    import retrieval.search as search

    sizes, aligned = [], []
    monkeypatch.setattr(search, "candidates_for", lambda n: sizes.append(n) or 2)
    rerank = search._rerank
    monkeypatch.setattr(search, "_rerank", lambda *a: aligned.append(1) or rerank(*a))
    store = IndexStore.open(lossy, readonly=True)
    work, measures, part = DEMO_THEME
    theme = parse_corpus_work(work).measures(*measures).parts[part]
    query(store, theme, top=1)
    assert sizes == [len(store.vectors())] and len(aligned) == 2
    aligned.clear()
    query(store, theme, top=1, candidates=4)
    assert len(aligned) == 4
    store.close()


def test_query_shingles_are_cut_at_the_index_s_own_hop(lossy, monkeypatch):
    """A theme's shingles start every ``shingle_hop`` frames of the index (0.16 s at 25 Hz and 12.5 Hz)."""
    from models.retrieval_features import shingle_starts
    from retrieval.search import search
    from retrieval.theme import theme_from_stream
    from retrieval.variants import query_variants

    store = IndexStore.open(lossy, readonly=True)
    work, measures, part = DEMO_THEME
    variants = query_variants(theme_from_stream(parse_corpus_work(work).measures(*measures).parts[part]),
                              store.settings, rendering="symbolic")
    searched = []
    vectors = store.vectors()
    original = vectors.search
    monkeypatch.setattr(vectors, "search", lambda queries, k: searched.append(len(queries)) or original(queries, k))
    assert search(store, variants)[0].path.endswith("haydn_op74.wav")
    s = store.settings
    assert s.shingle_hop == 4 and searched == [sum(len(shingle_starts(len(v.features), s.shingle_length, 4))
                                                   for v in variants)]
    store.close()
