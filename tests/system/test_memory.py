"""An index larger than the memory a query process may allocate still answers: the FAISS file is
memory-mapped (file pages, which the kernel can drop) rather than read into allocated memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from db.store import FILE_ROW, IndexStore
from retrieval.theme import parse_corpus_work

from ..retrieval.test_query import THEMES

ROOT = Path(__file__).resolve().parents[2]
BUDGET_MB = 96

PROBE = """
import json, os, resource, sys
os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})  # one core: one re-ranking thread, warmed up below
import faiss
from cli import main

def allocated():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmData")).split()[1]) * 1024

# everything imported and compiled first (small index; one candidate, so that verification runs too)
main(["query", sys.argv[3], "--db", sys.argv[4], "--json", "--candidates", "1", "--top", "1"])
warm = faiss.index_factory(192, "IVF4,Flat")  # FAISS's and BLAS's threads started: their stacks are no index data
x = faiss.rand((4096, 192))
warm.train(x)
warm.add(x)
warm.search(x, 64)
limit = allocated() + {budget} * 2**20  # private memory (heap, anonymous maps), not mapped files
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
if sys.argv[1] == "read":  # the control: reading the same file into memory must fail
    try:
        faiss.read_index(sys.argv[2] + ".faiss")
    except MemoryError:
        print("MemoryError")
    sys.exit(0)
sys.exit(main(["query", sys.argv[3], "--db", sys.argv[2], "--json", "--top", "1"]))
"""


def test_a_query_answers_from_an_index_larger_than_its_memory(indexed, tmp_path):
    source = IndexStore.open(indexed, readonly=True)
    db = tmp_path / "large.db"
    store = IndexStore.create(db, replace(source.settings, index_factory="IVF256,Flat"))
    for rec, features in source.iter_frames():
        store.put_indexed({**{c: getattr(rec, c) for c in FILE_ROW}, "model_id": rec.model_id}, features)
    rng = np.random.default_rng(0)
    for i in range(80):  # 80 × 13 min of other music: 400k more shingles, 300 MB of vectors
        noise = rng.random((10_000, 12)).astype(np.float32) ** 4
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        store.put_indexed({"path": f"/elsewhere/other{i}.wav", "size": 1, "mtime": 0.0, "hash": str(i),
                           "duration": 800.0, "model_id": source.settings.model_id}, noise)
    store.rebuild_vectors("IVF256,Flat")
    store.close()
    assert (tmp_path / "large.db.faiss").stat().st_size > 3 * BUDGET_MB * 2**20

    name, work, measures, part = THEMES[0]
    theme = tmp_path / "theme.musicxml"
    score = parse_corpus_work(work).measures(*measures)
    (score.parts[part] if part is not None else score).write("musicxml", fp=theme)
    probe = PROBE.format(budget=BUDGET_MB)
    runs = {}
    # one heap and one compute thread: the budget is not spent on per-thread arenas and BLAS buffers,
    # which OpenBLAS would otherwise allocate lazily for whichever thread first runs a product
    env = {**os.environ, "MALLOC_ARENA_MAX": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    for mode in ("read", "query"):
        runs[mode] = subprocess.run([sys.executable, "-c", probe, mode, str(db), str(theme), str(indexed)], cwd=ROOT,
                                    capture_output=True, text=True, env=env)
        assert runs[mode].returncode == 0, (mode, runs[mode].stderr[-500:])
    assert runs["read"].stdout.strip().endswith("MemoryError")
    answer = json.loads(runs["query"].stdout[runs["query"].stdout.rindex('{\n  "theme"'):])
    assert Path(answer["matches"][0]["path"]).stem == name
