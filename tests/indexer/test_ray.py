"""Distributed extraction on Ray (a local instance of two workers): the same index as in-process,
a worker killed mid-run loses and duplicates nothing, and a wrong address fails fast."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cli import main
from db.store import FEATURE_STEP, IndexStore
from indexer.build import index_collection
from indexer.extract import WorkerContext, extract_one
from retrieval.query import query
from retrieval.theme import parse_corpus_work

from ..conftest import PIECES
from ..retrieval.test_query import THEMES

ray = pytest.importorskip("ray", reason="Ray is the optional extra .[cluster], installed by the test command")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=2**27)
    yield
    ray.shutdown()


def test_ray_index_equals_the_in_process_one(local_ray, rendered_dir, indexed, tmp_path):
    from indexer.cluster import ray_results

    db = tmp_path / "ray.db"
    assert main(["index", str(rendered_dir), "--db", str(db), "--ray", "--quiet"]) == 0
    ours, theirs = IndexStore.open(db, readonly=True), IndexStore.open(indexed, readonly=True)
    assert sorted(r.path for r in ours.recordings()) == sorted(r.path for r in theirs.recordings())
    by_path = {r.path: r for r in theirs.recordings()}
    for rec in ours.recordings("indexed"):
        assert np.abs(ours.frames(rec.id) - theirs.frames(by_path[rec.path].id)).max() <= FEATURE_STEP + 1e-6
    for _, work, measures, part in THEMES:
        a, b = (query(s, parse_corpus_work(work), measures=measures, part=part, top=3).matches for s in (ours, theirs))
        assert [(m.path, m.start, m.end) for m in a] == [(m.path, m.start, m.end) for m in b]
    # before quantisation: a Ray task's features equal this process's within float32 rounding (other threads)
    path = str(sorted(rendered_dir.glob("*.wav"))[0])
    remote = next(ray_results([(path, None)], ours.settings, "cpu"))  # in the fixture's Ray
    local = extract_one(WorkerContext(ours.settings), path)
    assert remote.hash == local.hash and np.abs(remote.features - local.features).max() < 1e-5


def _extracting_worker() -> int | None:
    """PID of a Ray worker process running an extraction task now (its title says so)."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::_extract_task"):
                return int(entry.name)
        except OSError:
            continue
    return None


def test_a_killed_worker_loses_and_duplicates_nothing(local_ray, rendered_dir, tmp_path):
    db = tmp_path / "killed.db"
    killed: list[int] = []

    def killer():
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            pid = _extracting_worker()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    report = index_collection(rendered_dir, db, ray="local", progress=False)
    thread.join()
    assert killed, "no extraction task was seen running"
    assert not report.failed and len(report.added) == len(PIECES)
    store = IndexStore.open(db, readonly=True)
    paths = [r.path for r in store.recordings()]
    assert len(paths) == len(set(paths)) == len(PIECES) and all(r.in_index for r in store.recordings())
    store.close()
    again = index_collection(rendered_dir, db, ray="local", progress=False)
    assert not again.added and len(again.unchanged) == len(PIECES)
