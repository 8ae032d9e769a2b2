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
from models.retrieval_features import FeatureSettings

from ..conftest import SHARED


def _shared_blocks() -> set[str]:
    return {name for name in os.listdir("/dev/shm") if name.startswith("psm_")}


def test_prepared_in_a_worker_and_finished_here_equals_extract_one(rendered_dir):
    files = sorted(str(p) for p in rendered_dir.glob("*.wav"))[:2]
    before = _shared_blocks()
    context = WorkerContext(FeatureSettings())
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        prepared = list(pool.map(prepare_in_worker, files, [None] * len(files)))
    for path, item in zip(files, prepared, strict=True):
        assert item.samples is not None
        split, whole = finish_prepared(context, item), extract_one(context, path)
        assert split.error is None and split.hash == whole.hash and split.duration == whole.duration
        assert np.array_equal(split.features, whole.features)
    assert _shared_blocks() == before  # every block freed after use
    missing = prepare_in_worker(str(rendered_dir / "absent.wav"), None)
    assert missing.samples is None and "cannot read" in missing.extracted.error


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
        assert np.abs(ours.features(rec.id) - theirs.features(by_path[rec.path].id)).max() <= 1 / 255 + 1e-6
