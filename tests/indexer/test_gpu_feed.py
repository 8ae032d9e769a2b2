"""Decoding processes feeding one GPU process: the split extraction equals the whole one."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import torch

from db.store import IndexStore
from indexer.build import index_collection
from indexer.extract import WorkerContext, extract_one, finish_prepared, prepare_in_worker
from models.retrieval_features import IndexSettings

from ..conftest import SHARED


def _shared_blocks() -> set[str]:
    return {name for name in os.listdir("/dev/shm") if name.startswith("psm_")}


def test_prepared_in_a_worker_and_finished_here_equals_extract_one(rendered_dir):
    files = sorted(str(p) for p in rendered_dir.glob("*.wav"))[:2]
    before = _shared_blocks()
    context = WorkerContext(IndexSettings())
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        prepared = list(pool.map(prepare_in_worker, files, [None] * len(files)))
    missing = prepare_in_worker(str(rendered_dir / "absent.wav"), None)
    assert missing.samples is None and "cannot read" in missing.extracted.error
    assert all(item.samples is not None for item in prepared)
    finished = finish_prepared(context, [prepared[0], missing, prepared[1]])  # one GPU pass, windows batched
    assert finished[1] is missing.extracted
    for path, split in zip(files, (finished[0], finished[2]), strict=True):
        whole = extract_one(context, path)
        assert split.error is None and split.hash == whole.hash and split.duration == whole.duration
        assert np.abs(split.features - whole.features).max() < 1e-5  # the same windows, in other batches
    assert _shared_blocks() == before  # every block freed after use


def test_a_failing_batch_is_redone_file_by_file(rendered_dir, monkeypatch):
    """One bad file in a GPU batch fails itself only: the batch is redone one file at a time."""
    files = sorted(str(p) for p in rendered_dir.glob("*.wav"))[:2]
    prepared = [prepare_in_worker(f, None) for f in files]
    context = WorkerContext(IndexSettings())
    extractor = context.extractor()
    bad = prepared[1].samples.length

    def refuse_the_bad_one(y, cens=False):
        if len(y) == bad:
            raise ValueError("damaged stream")
        return type(extractor).from_signals(extractor, [y], cens)[0]

    monkeypatch.setattr(extractor, "from_signals", lambda ys, cens=False: [refuse_the_bad_one(y, cens) for y in ys])
    monkeypatch.setattr(extractor, "from_signal", refuse_the_bad_one)
    good, failed = finish_prepared(context, prepared)
    assert good.error is None and good.features is not None
    assert len(good.cens) == -(-len(good.features) // 2)  # the default index keeps CENS at half the rate
    assert failed.features is None and failed.error == f"{files[1]}: damaged stream"
    assert not any(p.samples._block for p in prepared)  # released


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the split path runs with --device cuda)")
def test_cuda_index_with_workers_equals_the_cpu_index(tmp_path):
    audio = SHARED / "data" / "bach_violin" / "audio"
    if not audio.is_dir():
        pytest.skip(f"real recordings not found at {audio} (../shared is absent)")
    reports = {device: index_collection(audio, tmp_path / f"{device}.db", workers=2 if device == "cuda" else 1,
                                        device=device, progress=False) for device in ("cpu", "cuda")}
    assert not reports["cuda"].failed and len(reports["cuda"].added) == len(reports["cpu"].added) > 0
    ours, theirs = (IndexStore.open(tmp_path / f"{device}.db", readonly=True) for device in ("cuda", "cpu"))
    by_path = {r.path: r for r in theirs.recordings("indexed")}
    for rec in ours.recordings("indexed"):
        assert np.abs(ours.frames(rec.id) - theirs.frames(by_path[rec.path].id)).max() <= 1 / 255 + 1e-6


def test_gpu_batches_hold_at_most_an_hour_of_audio():
    from indexer.build import GPU_BATCH_SECONDS, _gpu_batches
    from indexer.extract import Extracted, Prepared

    def item(seconds):
        return Prepared(Extracted(path=f"{seconds}.wav", size=1, mtime=0.0, hash="", duration=seconds))

    items = [item(s) for s in (1800, 1500, 600, 5000, 10, None)]  # None: a file that failed to decode
    batches = [[p.extracted.duration for p in b] for b in _gpu_batches(items)]
    assert batches == [[1800, 1500], [600], [5000], [10, None]]
    assert GPU_BATCH_SECONDS == 3600
