"""``cli.py index``: bring an index up to date with a folder of recordings.

New and changed files are extracted (in worker processes when ``workers > 1``), files gone from
the folder are dropped, everything else is left alone. The database is the single writer's:
workers only compute. Progress is made durable at checkpoints (see :class:`db.store.IndexStore`),
so Ctrl-C, ``kill -9`` or a crash loses at most the work since the last checkpoint.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from db.store import FILE_ROW, IndexStore, Recording
from db.vectors import VectorIndex
from indexer.extract import (
    Extracted,
    Prepared,
    WorkerContext,
    extract_in_worker,
    extract_one,
    finish_prepared,
    prepare_in_worker,
)
from indexer.walk import find_audio
from models.errors import ParameterError, printable
from models.extractor_factory import is_computed, mean_members
from models.retrieval_features import IndexSettings

__all__ = ["IndexOptions", "IndexReport", "default_workers", "index_collection"]


@dataclass
class IndexReport:
    """What one ``index`` run did; paths as stored (absolute)."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    seconds: float = 0.0
    interrupted: bool = False

    def summary(self) -> dict:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "removed": len(self.removed),
            "failed": len(self.failed),
            "audio_hours": self.audio_seconds / 3600,
            "seconds": self.seconds,
            "interrupted": self.interrupted,
        }

    def as_dict(self) -> dict:
        return {
            **self.summary(),
            "failures": [{"path": p, "error": e} for p, e in self.failed],
            "removed_paths": self.removed,
        }


GPU_BATCH_SECONDS = 3600.0
"""Audio the GPU process extracts in one pass, files decoded meanwhile batched together (its
front ends take ~0.5 GB of GPU memory per audio hour)."""


def default_workers() -> int:
    """One worker per 4 cores (each runs PyTorch on its share); 1 on small machines."""
    return max(1, (os.cpu_count() or 1) // 4)


def _plan(store: IndexStore, files: list[Path]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Jobs ``(path, known hash or None)`` for new/changed files, and the paths left as they are."""
    known = store.by_path()
    jobs, unchanged = [], []
    for file in files:
        path = str(file)
        rec = known.get(path)
        if rec is None:
            jobs.append((path, None))
            continue
        stat = file.stat()
        if rec.size == stat.st_size and rec.mtime == stat.st_mtime:
            unchanged.append(path)
        else:
            jobs.append((path, rec.hash or None))
    return jobs, unchanged


def _missing(store: IndexStore, files: list[Path], root: Path) -> list[Recording]:
    present = {str(f) for f in files}
    return [r for r in store.recordings() if Path(r.path).is_relative_to(root) and r.path not in present]


def _results(
    jobs: list[tuple[str, str | None]], settings: IndexSettings, workers: int, device: str
) -> Iterator[Extracted]:
    """Extract every job, in this process or in ``workers`` processes (at most 2 jobs each queued).

    With ``device="cuda"`` and a deep chroma model, the workers only hash and decode (the CPU
    part, :func:`indexer.extract.prepare_in_worker`) and this process runs the whole front end and
    the network on the GPU (:func:`indexer.extract.finish_prepared`), the files decoded meanwhile
    batched together: one CUDA context, fed by all cores.
    """
    if workers <= 1:
        context = WorkerContext(settings, device)
        for path, known in jobs:
            yield extract_one(context, path, known)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    networks = mean_members(settings.model_id) is not None or not is_computed(settings.model_id)
    split = device == "cuda" and networks  # one network or a mean of several: batched on the GPU
    gpu = WorkerContext(settings, device) if split else None
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        queue, pending = list(reversed(jobs)), set()
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                job = queue.pop()
                pending.add(pool.submit(prepare_in_worker, *job) if split else
                            pool.submit(extract_in_worker, settings, device, threads, *job))
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            if not split:
                yield from (future.result() for future in done)
                continue
            for batch in _gpu_batches([future.result() for future in done]):  # all ready now: one GPU pass
                yield from finish_prepared(gpu, batch)
    finally:
        for future in pending:  # prepared files nobody will finish: free their shared memory
            if not future.cancel() and not future.exception() and future.result().samples is not None:
                future.result().samples.release()
        pool.shutdown(wait=False, cancel_futures=True)


def _gpu_batches(prepared: list[Prepared]) -> Iterator[list[Prepared]]:
    """``prepared`` in consecutive groups of at most :data:`GPU_BATCH_SECONDS` of audio (a longer
    file alone), so the front ends of one group fit the GPU's memory together."""
    batch, seconds = [], 0.0
    for item in prepared:
        duration = item.extracted.duration or 0.0
        if batch and seconds + duration > GPU_BATCH_SECONDS:
            yield batch
            batch, seconds = [], 0.0
        batch.append(item)
        seconds += duration
    if batch:
        yield batch


@dataclass(frozen=True)
class IndexOptions:
    """How an ``index`` run works (what the index holds is its :class:`IndexSettings`).

    The CLI builds one from its flags; library callers pass one or keyword overrides.
    """

    workers: int = 1  # extraction processes (1: in this process); see default_workers()
    device: str = "cpu"  # where the model runs: cpu or cuda
    rebuild: bool = False  # delete the index and start over
    keep_missing: bool = False  # keep recordings whose files are gone from the folder
    follow_symlinks: bool = True  # index symbolic links to files, wherever they point
    progress: bool = True  # a progress bar on stderr
    checkpoint_seconds: float = 60.0  # at least this long between checkpoints (saves of the FAISS file)
    ray: str | None = None  # extract on Ray: "local" (start one here) or the head node's HOST:PORT

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ParameterError(f"workers must be at least 1, got {self.workers}")
        if self.device not in ("cpu", "cuda"):
            raise ParameterError(f"device must be cpu or cuda, got {self.device!r}")


def index_collection(
    root: str | Path,
    db_path: str | Path,
    settings: IndexSettings | None = None,
    options: IndexOptions | None = None,
    **overrides,
) -> IndexReport:
    """Index every audio file under ``root`` into the index at ``db_path``.

    ``settings`` of ``None`` keeps an existing index's settings (defaults for a new one); given
    settings that differ from an existing index's raise
    :class:`models.retrieval_features.SettingsMismatchError` (``rebuild`` starts over instead).
    ``options`` (default :class:`IndexOptions`), with any of its fields given as keyword
    ``overrides`` (``index_collection(root, db, progress=False)``), says how the run works.
    """
    options = replace(options or IndexOptions(), **overrides)
    root = Path(root).resolve()
    if not root.is_dir():
        raise ParameterError(f"{root}: no such folder")
    db_path = Path(db_path)
    if settings is not None and settings.index_factory != "auto":  # before anything is written (or removed)
        VectorIndex.check_factory(settings.index_factory, settings.dim)
    with contextlib.ExitStack() as stack:
        if options.ray is not None:  # connected before the index is touched: a wrong address changes nothing
            from indexer.cluster import ray_session  # Ray (optional): only with --ray

            stack.enter_context(ray_session(options.ray))
        return _index_locked(root, db_path, settings, options)


def _index_locked(root: Path, db_path: Path, settings: IndexSettings | None, options: IndexOptions) -> IndexReport:
    """:func:`index_collection` under the index's write lock."""
    with IndexStore.writing(db_path):
        if options.rebuild:  # replaced in one step: readers see the old index or the new empty one
            store = IndexStore.create(db_path, settings or IndexSettings(), replace=True)
        else:
            store = _open_for_writing(db_path, settings)
        report, started = IndexReport(), time.monotonic()
        try:
            _run(store, root, report, options)
        finally:
            report.seconds = time.monotonic() - started
            store.close()
        return report


def _open_for_writing(db_path: Path, settings: IndexSettings | None) -> IndexStore:
    """The index at ``db_path`` (checked against ``settings``, a damaged vector file discarded), or a new one."""
    if not db_path.exists():
        return IndexStore.create(db_path, settings or IndexSettings())
    store = IndexStore.open(db_path)
    if settings is not None:
        settings.check_matches(store.declared)
    damage = store.discard_damaged_vectors()
    if damage:
        tqdm.write(f"warning: {damage.split(';')[0]}: rebuilding it from the stored features", file=sys.stderr)
    return store


def _storable(files: list[Path], report: IndexReport) -> list[Path]:
    """The files whose names the index can store (UTF-8 text); the others are reported as failed.

    A name with bytes that are not UTF-8 (from an old Latin-1 system, say) cannot be a row of the
    index's text columns nor be shown to a client as it is; such a file is skipped with the
    reason, and the run goes on.
    """
    kept = []
    for file in files:
        try:
            str(file).encode("utf-8")
        except UnicodeEncodeError:
            error = f"{printable(str(file))}: the file name is not UTF-8 text; rename it to index it (e.g. with convmv)"
            report.failed.append((printable(str(file)), error))
            tqdm.write(f"error: {error}", file=sys.stderr)
            continue
        kept.append(file)
    return kept


def _run(store: IndexStore, root: Path, report: IndexReport, options: IndexOptions) -> None:
    files = _storable([Path(os.path.abspath(f)) for f in find_audio([root], options.follow_symlinks)], report)
    jobs, report.unchanged = _plan(store, files)
    if not options.keep_missing:
        gone = _missing(store, files, root)
        store.delete([r.id for r in gone])
        report.removed = [r.path for r in gone]
    store.checkpoint()  # replays whatever an interrupted run left unsaved
    known = store.by_path()
    bar = tqdm(total=len(jobs), unit="file", disable=not options.progress, dynamic_ncols=True)
    last_save, save_cost = time.monotonic(), 0.0
    try:
        if options.ray is not None:
            from indexer.cluster import ray_results  # Ray (optional): only with --ray

            results = ray_results(jobs, store.settings, options.device)
        else:
            results = _results(jobs, store.settings, options.workers, options.device)
        first: tuple[float, float] | None = None  # (time, audio seconds) at the first result: loading excluded
        for result in results:
            _store_result(store, result, known.get(result.path), report)
            bar.update()
            if first is None:
                first = (time.monotonic(), report.audio_seconds)
            elif report.audio_seconds > first[1]:
                speed = (report.audio_seconds - first[1]) / max(time.monotonic() - first[0], 1e-9)
                bar.set_postfix_str(f"{speed / 3600:.2f} audio h/s ({speed:.0f}× real time)", refresh=False)
            if time.monotonic() - last_save > max(options.checkpoint_seconds, 10 * save_cost):
                t = time.monotonic()
                store.checkpoint()
                last_save, save_cost = time.monotonic(), time.monotonic() - t
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        bar.close()
        store.checkpoint()
    if not report.interrupted:
        store.reorganise()
        if untrainable := store.untrainable():
            tqdm.write(f"warning: {untrainable}", file=sys.stderr)


def _store_result(store: IndexStore, result: Extracted, old: Recording | None, report: IndexReport) -> None:
    row = {**{column: getattr(result, column) for column in FILE_ROW}, "model_id": store.settings.model_id}
    if result.unchanged and old is not None:
        store.touch(old.id, result.mtime)
        report.unchanged.append(result.path)
    elif result.error is not None:
        store.put_failed(row, result.error)
        report.failed.append((result.path, result.error))
        tqdm.write(f"error: {printable(result.error)}", file=sys.stderr)
    else:
        if result.warning:
            row["error"] = result.warning
            tqdm.write(f"warning: {printable(result.warning)}", file=sys.stderr)
        store.put_indexed(row, result.features, result.cens)
        report.audio_seconds += result.duration or 0.0
        (report.updated if old is not None else report.added).append(result.path)
