"""Indexer and database: incremental runs, failures, crash safety, settings, vector removal."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

from cli import main
from db.store import IndexStore
from db.vectors import (
    CODE_DIM,
    FLAT_LIMIT,
    IVF_FLAT_LIMIT,
    NPROBE,
    PQ_CODE,
    VectorIndex,
    auto_factory,
    nprobe_for,
)
from indexer.build import index_collection
from models.retrieval_features import IndexSettings, SettingsMismatchError, shingle_starts
from retrieval.theme import parse_corpus_work

from ..conftest import PIECES

ROOT = Path(__file__).resolve().parents[2]


def expected_vectors(store: IndexStore) -> int:
    s = store.settings
    return sum(len(shingle_starts(max(r.n_frames, s.shingle_length), s.shingle_length, s.shingle_hop))
               for r in store.recordings("indexed"))


def check_consistent(db: Path) -> IndexStore:
    """The database passes integrity_check and the FAISS file holds exactly the indexed shingles."""
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = IndexStore.open(db)
    assert all(r.in_index == 1 for r in store.recordings("indexed"))
    assert len(store.vectors()) == expected_vectors(store)
    first = store.frames(store.recordings("indexed")[0].id)[: store.settings.shingle_length]
    ids = {int(rid) for rid in store.vectors().search(first.reshape(1, -1) / 4.0, 1000)[1][0] if rid >= 0}
    assert ids <= {r.id for r in store.recordings("indexed")}
    return store


def test_index_status_and_list(indexed, capsys):
    store = check_consistent(indexed)
    assert len(store.recordings("indexed")) == len(PIECES)
    assert all(r.duration > 15 and r.sample_rate == 22050 and r.hash for r in store.recordings())
    assert store.factory == "IDMap2,Flat"
    assert main(["status", "--db", str(indexed), "--json"]) == 0
    import json

    stats = json.loads(capsys.readouterr().out)
    assert stats["recordings"] == len(PIECES) and stats["shingles"] == expected_vectors(store) > 0
    assert stats["failed"] == [] and stats["faiss_bytes"] > 0
    assert main(["list", "--db", str(indexed), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(Path(r["path"]).stem for r in listed) == sorted(PIECES)


def test_reindex_adds_updates_removes_exactly_what_changed(rendered_dir, tmp_path):
    folder = tmp_path / "audio"
    names = list(PIECES)
    folder.mkdir()
    for name in names[:4]:
        shutil.copy(rendered_dir / f"{name}.wav", folder / f"{name}.wav")
    db = tmp_path / "i.db"
    first = index_collection(folder, db, progress=False)
    assert len(first.added) == 4
    before = {r.path: r for r in IndexStore.open(db).recordings()}

    (folder / f"{names[0]}.wav").unlink()  # removed
    shutil.copy(rendered_dir / f"{names[4]}.wav", folder / f"{names[4]}.wav")  # added
    shutil.copy(rendered_dir / f"{names[4]}.wav", folder / f"{names[1]}.wav")  # content changed
    os.utime(folder / f"{names[2]}.wav", (time.time() + 100, time.time() + 100))  # touched only
    second = index_collection(folder, db, progress=False)
    resolved = {n: str((folder / f"{n}.wav").resolve()) for n in names}
    assert second.added == [resolved[names[4]]]
    assert second.updated == [resolved[names[1]]]
    assert second.removed == [resolved[names[0]]]
    assert sorted(second.unchanged) == sorted([resolved[names[2]], resolved[names[3]]])
    store = check_consistent(db)
    after = {r.path: r for r in store.recordings()}
    assert after[resolved[names[1]]].id == before[resolved[names[1]]].id  # kept its id
    assert after[resolved[names[1]]].hash != before[resolved[names[1]]].hash
    assert after[resolved[names[2]]].indexed_at == before[resolved[names[2]]].indexed_at  # not re-extracted

    third = index_collection(folder, db, progress=False)
    assert not (third.added or third.updated or third.removed or third.failed)
    assert len(third.unchanged) == 4


def test_corrupted_file_is_reported_and_the_rest_still_answers(rendered_dir, tmp_path, capsys):
    folder = tmp_path / "audio"
    shutil.copytree(rendered_dir, folder)
    db = tmp_path / "i.db"
    index_collection(folder, db, progress=False)
    bad = folder / "haydn_op74.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10)
    report = index_collection(folder, db, progress=False)
    assert [p for p, _ in report.failed] == [str(bad.resolve())]
    assert "haydn_op74.wav" in report.failed[0][1] and "\n" not in report.failed[0][1]
    store = check_consistent(db)
    failed = store.recordings("failed")
    assert [r.path for r in failed] == [str(bad.resolve())]
    assert len(store.recordings("indexed")) == len(PIECES) - 1
    assert main(["status", "--db", str(db)]) == 0
    assert "haydn_op74.wav" in capsys.readouterr().out

    from retrieval.query import query

    result = query(store, _corpus("mozart/k155/movement1"), measures=(5, 8), top=3)
    assert Path(result.matches[0].path).stem == "mozart_k155"
    assert all(Path(m.path).stem != "haydn_op74" for m in result.matches)


def _corpus(work: str):
    return parse_corpus_work(work)


def test_sigkill_mid_run_leaves_a_consistent_database_that_resumes(rendered_dir, tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    for i, name in enumerate(list(PIECES) * 2):  # 10 files, so that the kill lands mid-run
        shutil.copy(rendered_dir / f"{name}.wav", folder / f"{i:02d}_{name}.wav")
    db = tmp_path / "i.db"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "index", str(folder), "--db", str(db), "--workers", "1", "-q"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as conn:
                    done = conn.execute("SELECT count(*) FROM recordings").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 3:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= done < 10

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT count(*) FROM recordings").fetchone()[0]
    assert 3 <= rows < 10
    IndexStore.open(db).stats()  # opens and reads

    report = index_collection(folder, db, progress=False)
    assert len(report.added) == 10 - rows and len(report.unchanged) == rows and not report.failed
    store = check_consistent(db)
    assert len(store.recordings("indexed")) == 10


def test_a_recording_and_its_features_are_written_together_or_not_at_all(tmp_path):
    store = IndexStore.create(tmp_path / "i.db", IndexSettings())
    row = {"path": "a.wav", "size": 1, "mtime": 0.0, "hash": "h", "duration": 1.0, "sample_rate": 22050,
           "channels": 1, "model_id": "m"}
    store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON features BEGIN SELECT RAISE(ABORT, 'disk'); END")
    with pytest.raises(sqlite3.IntegrityError, match="disk"):
        store.put_indexed(row, np.zeros((40, 12), np.float32))
    assert store.recordings() == []  # the recording row went back with its features
    store.db.execute("DROP TRIGGER refuse")
    rid = store.put_indexed(row, np.zeros((40, 12), np.float32))
    assert [r.id for r in store.recordings("indexed")] == [rid] and store.frames(rid).shape == (40, 12)


def test_a_failed_save_marks_nothing_as_saved(tmp_path):
    store = IndexStore.create(tmp_path / "i.db", IndexSettings())
    row = {"path": "a.wav", "size": 1, "mtime": 0.0, "hash": "h", "duration": 1.0, "sample_rate": 22050,
           "channels": 1, "model_id": "m"}
    store.put_indexed(row, np.random.default_rng(0).random((40, 12), np.float32))
    store.sync_vectors()
    for when in ("INSERT", "UPDATE"):  # the save's last write fails
        store.db.execute(f"CREATE TRIGGER refuse_{when} BEFORE {when} ON settings WHEN NEW.key = 'frames_file' "
                         "BEGIN SELECT RAISE(ABORT, 'disk'); END")
    with pytest.raises(sqlite3.IntegrityError, match="disk"):
        store.save_vectors()
    assert store.db.execute("SELECT in_index FROM recordings").fetchall() == [(0,)]
    assert store.db.execute("SELECT value FROM settings WHERE key = 'faiss_fingerprint'").fetchone() is None
    for when in ("INSERT", "UPDATE"):
        store.db.execute(f"DROP TRIGGER refuse_{when}")
    store.checkpoint()
    assert store.db.execute("SELECT in_index FROM recordings").fetchall() == [(1,)]
    assert store.vector_file_problem() is None


def test_other_settings_are_refused(indexed, tmp_path, rendered_dir, capsys):
    theme = tmp_path / "theme.musicxml"
    _corpus("mozart/k155/movement1").measures(5, 8).write("musicxml", fp=theme)
    assert main(["index", str(rendered_dir), "--db", str(indexed), "--shingle-length", "10", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "shingle_length=32 (asked 10)" in err and len(err.splitlines()) == 1
    assert main(["query", str(theme), "--db", str(indexed), "--model", "v1_ctc_train123valid4"]) == 2
    err = capsys.readouterr().err.strip()
    assert ("model_id='v2_ctc_train123valid4+v2_ctc_train512valid3' (asked 'v1_ctc_train123valid4')" in err
            and len(err.splitlines()) == 1)
    with pytest.raises(SettingsMismatchError):
        index_collection(rendered_dir, indexed, IndexSettings(downsample=3), progress=False)
    assert main(["query", str(theme), "--db", str(indexed), "--model", "v2_ctc_train123valid4+v2_ctc_train512valid3",
                 "--json"]) == 0
    with pytest.raises(SystemExit):  # index-only settings are not query options
        main(["query", str(theme), "--db", str(indexed), "--shingle-length", "16"])


def test_vector_removal_and_factories():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 24)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex.create("IDMap2,Flat", 24)
    index.add(1, np.arange(100), vectors[:100])
    index.add(2, np.arange(200), vectors[100:])
    assert index.remove([1]) == 100 and len(index) == 200
    sims, rids, frames = index.search(vectors[150:151], 1)
    assert rids[0, 0] == 2 and frames[0, 0] == 50 and sims[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert index.remove([5]) == 0 and len(index) == 200  # a recording with no vectors: nothing changes
    index.add(3, np.arange(40), vectors[:40])
    index.add(4, np.arange(60), vectors[40:100])
    assert index.remove([3, 9, 4]) == 100 and len(index) == 200  # several at once, absent ones ignored
    sims, rids, frames = index.search(vectors[[150, 250]], 1)
    assert rids[:, 0].tolist() == [2, 2] and frames[:, 0].tolist() == [50, 150]

    ivf = VectorIndex.create("IVF4,Flat", 24, training=vectors)
    ivf.add(7, np.arange(300), vectors)
    assert ivf.remove([7]) == 300 and len(ivf) == 0
    with pytest.raises(ValueError, match="invalid FAISS index factory"):
        VectorIndex.create("NoSuchIndex", 24)

    assert auto_factory(FLAT_LIMIT, 192) == "IDMap2,Flat"
    assert auto_factory(FLAT_LIMIT + 1, 192).startswith("IVF") and auto_factory(FLAT_LIMIT + 1, 192).endswith(",Flat")
    large = auto_factory(IVF_FLAT_LIMIT + 1, 192)
    assert large.startswith(f"PCA{CODE_DIM},L2norm,IVF") and large.endswith(f"_HNSW32,{PQ_CODE}")
    assert auto_factory(IVF_FLAT_LIMIT + 1, CODE_DIM).startswith("IVF")  # nothing to project


def test_codes_of_the_principal_directions_serve_every_operation_of_the_index(tmp_path):
    """The large collections' factory wraps its inverted file in a projection: lists are still
    probed as :func:`nprobe_for` says, vectors added, found, removed by recording, saved and mapped."""
    rng = np.random.default_rng(2)
    basis = rng.standard_normal((CODE_DIM // 2, 192)).astype(np.float32)  # the data span fewer dimensions
    data = (rng.standard_normal((6000, CODE_DIM // 2)).astype(np.float32) @ basis)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    factory = f"PCA{CODE_DIM},L2norm,IVF32_HNSW32,{PQ_CODE}"
    index = VectorIndex.create(factory, 192, data)
    assert index.lossy and index.dim == 192
    index.add(3, np.arange(3000), data[:3000])
    index.add(4, np.arange(3000), data[3000:])
    _, rids, frames = index.search(data[[10, 4000]], 1)
    assert faiss.try_extract_index_ivf(index.index).nprobe == nprobe_for(32)
    assert rids[:, 0].tolist() == [3, 4] and frames[:, 0].tolist() == [10, 1000]
    assert index.remove([3]) == 3000 and len(index) == 3000
    index.save(tmp_path / "v.faiss")
    mapped = VectorIndex.load(tmp_path / "v.faiss", factory, mmap=True)
    assert len(mapped) == 3000 and mapped.search(data[[4000]], 1)[1][0, 0] == 4


def test_an_inverted_file_of_many_lists_is_probed_deeper(monkeypatch):
    """Collections beyond ≈ 370 h have 8192 lists: a search visits a 64th of them, not the 64 of smaller ones."""
    assert nprobe_for(2048) == nprobe_for(4096) == NPROBE and nprobe_for(8192) == 2 * NPROBE
    rng = np.random.default_rng(0)
    data = rng.standard_normal((4096, 24)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    index = VectorIndex.create("IVF256,Flat", 24, data)
    index.add(1, np.arange(len(data)), data)
    ivf = faiss.extract_index_ivf(index.index)
    monkeypatch.setattr("db.vectors.NPROBE", 2)  # so that 256 lists count as many
    index.search(data[:3], 5)
    assert ivf.nprobe == 256 // 64
    index.search(data[:3], 5, nprobe=7)
    assert ivf.nprobe == 7


@pytest.mark.parametrize("factory", ["IVF8,Flat", f"IVF8_HNSW32,{PQ_CODE}"])  # medium; large collections' codes
def test_explicit_ivf_factory_is_trained_from_stored_features(rendered_dir, tmp_path, factory):
    db = tmp_path / "ivf.db"
    index_collection(rendered_dir, db, IndexSettings(index_factory=factory), progress=False)
    store = check_consistent(db)
    assert store.factory == factory
    from retrieval.query import query

    result = query(store, _corpus("haydn/opus74no1/movement3"), measures=(9, 12), top=1)
    assert Path(result.matches[0].path).stem == "haydn_op74"


def test_ctrl_c_checkpoints_what_was_done(rendered_dir, tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    names = list(PIECES) * 6  # enough work that Ctrl-C lands mid-run even on a fast machine
    for i, name in enumerate(names):
        shutil.copy(rendered_dir / f"{name}.wav", folder / f"{i:02d}_{name}.wav")
    db = tmp_path / "i.db"
    proc = subprocess.Popen(  # the progress bar (stderr) says how many files are done
        [sys.executable, str(ROOT / "cli.py"), "index", str(folder), "--db", str(db), "--workers", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as in a terminal's foreground: a run started in the background by a script inherits an
        # ignored SIGINT, and Python keeps it ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = ""
    while proc.poll() is None and not re.search(rf"\b([2-9]|1\d)/{len(names)}\b", seen):
        seen += proc.stderr.read(1)
    assert proc.poll() is None, f"the run ended before two files were done: {seen[-300:]}"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in out, (out, err[-500:])
    store = check_consistent(db)  # everything extracted before Ctrl-C is searchable
    assert 2 <= len(store.recordings("indexed")) < len(names)


def test_parallel_workers_give_the_same_index(rendered_dir, indexed, tmp_path):
    db = tmp_path / "par.db"
    report = index_collection(rendered_dir, db, workers=2, progress=False)
    assert len(report.added) == len(PIECES) and not report.failed
    serial, parallel = IndexStore.open(indexed), check_consistent(db)
    for rec in serial.recordings("indexed"):
        other = next(r for r in parallel.recordings("indexed") if r.path == rec.path)
        np.testing.assert_allclose(parallel.frames(other.id), serial.frames(rec.id), atol=1e-5)


def test_a_second_concurrent_index_run_is_refused(rendered_dir, tmp_path):
    import fcntl

    from db.store import StoreError

    db = tmp_path / "i.db"
    with open(tmp_path / "i.db.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(StoreError, match="another index run"):
            index_collection(rendered_dir, db, progress=False)
    assert not db.exists()
