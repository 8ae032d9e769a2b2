"""One recording → retrieval features, in the indexing process or in a worker process."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path

import numpy as np

from models.audio import check_readable, decode_audio
from models.retrieval_features import IndexSettings, cens_rows, retrieval_features

__all__ = ["Extracted", "Prepared", "SharedSamples", "WorkerContext", "content_hash", "extract_in_worker",
           "extract_one", "finish_prepared", "prepare_in_worker", "worker_context"]


def content_hash(path: Path, block: int = 1 << 20) -> str:
    """BLAKE2b of the file's bytes: tells a changed recording from a merely touched one."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Extracted:
    """What a worker sends back for one file (small: features at the retrieval rate)."""

    path: str
    size: int
    mtime: float
    hash: str
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    features: np.ndarray | None = None  # (n_frames, 12)
    cens: np.ndarray | None = None  # (n_cens, 12): models.retrieval_features.cens_rows, where the index keeps them
    error: str | None = None
    warning: str | None = None  # indexed, but worth telling (a damaged file: see DecodedAudio.damage)
    unchanged: bool = False  # same content as ``known_hash``: nothing extracted


class WorkerContext:
    """The extractor of one process, built on first use (models load once per worker)."""

    def __init__(self, settings: IndexSettings, device: str = "cpu", threads: int | None = None) -> None:
        self.settings = settings
        self.device = device
        self.threads = threads
        self._extractor = None

    def extractor(self):
        if self._extractor is None:  # PyTorch: loaded in the process that extracts, on first use
            import torch

            from models.extractor_factory import make_extractor

            if self.threads:
                torch.set_num_threads(self.threads)
            self._extractor = make_extractor(self.settings.model_id, device=self.device)
        return self._extractor


@functools.cache
def worker_context(settings: IndexSettings, device: str, threads: int | None) -> WorkerContext:
    """The context of this process for these settings: built once, reused by every later job."""
    return WorkerContext(settings, device, threads)


def extract_in_worker(settings: IndexSettings, device: str, threads: int | None, path: str,
                      known_hash: str | None) -> Extracted:
    """:func:`extract_one` with this process's :func:`worker_context` (process pools, Ray tasks)."""
    return extract_one(worker_context(settings, device, threads), path, known_hash)


def _one_line(path: str, error: Exception) -> str:
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return message if path in message else f"{path}: {message}"


def _opened(path: str, known_hash: str | None) -> tuple[Extracted, np.ndarray | None]:
    """Hash and decode one file: its :class:`Extracted` (``unchanged`` or ``error`` set, or the
    file's facts) and its mono 22050 Hz samples when there is something to extract."""
    file = Path(path)
    try:
        stat = file.stat()
        result = Extracted(path=path, size=stat.st_size, mtime=stat.st_mtime, hash=content_hash(file))
    except OSError as error:
        return Extracted(path=path, size=0, mtime=0.0, hash="", error=f"{path}: cannot read ({error.strerror})"), None
    if known_hash is not None and result.hash == known_hash:
        result.unchanged = True
        return result, None
    try:
        check_readable(file)
        decoded = decode_audio(file)
    except Exception as error:  # noqa: BLE001 - one bad file must never stop a run; reason is kept
        result.error = _one_line(path, error)
        return result, None
    result.duration, result.sample_rate, result.channels = decoded.seconds, decoded.native_rate, decoded.channels
    if decoded.damage:
        result.warning = f"{path}: {decoded.damage}"
    return result, decoded.samples


def _finished(context: WorkerContext, result: Extracted, features_of) -> Extracted:
    """``result`` with its retrieval features (and CENS rows, where the index keeps them) from
    ``features_of(extractor)`` (:class:`models.extractor.ChromaFeatures`), or its error."""
    settings = context.settings
    try:
        found = features_of(context.extractor())
        result.features = retrieval_features(found.chroma, settings.downsample, settings.smoothing)
        if settings.cens_frames:
            result.cens = cens_rows(found.cens, settings)
    except Exception as error:  # noqa: BLE001 - one bad file must never stop a run; reason is kept
        result.error = _one_line(result.path, error)
    return result


def extract_one(context: WorkerContext, path: str, known_hash: str | None = None) -> Extracted:
    """Hash, decode and extract one file; any failure is returned as a one-line ``error``."""
    result, samples = _opened(path, known_hash)
    if samples is None:
        return result
    cens = context.settings.cens_frames
    return _finished(context, result, lambda extractor: extractor.from_signal(samples, cens=cens))


# -- many decoding processes feeding one GPU process ------------------------------------------------


@dataclass
class Prepared:
    """A file hashed and decoded in a worker: its :class:`Extracted` so far and, when there is
    something to extract, its samples in shared memory."""

    extracted: Extracted
    samples: SharedSamples | None = None


class SharedSamples:
    """A float32 signal in a block of shared memory: a worker fills it, the GPU process reads it
    without a copy through a pipe, then :meth:`release` frees it."""

    def __init__(self, samples: np.ndarray) -> None:
        self.length = len(samples)
        block = shared_memory.SharedMemory(create=True, size=max(4, 4 * self.length))
        np.ndarray((self.length,), np.float32, buffer=block.buf)[:] = samples
        self.name = block.name
        resource_tracker.unregister(block._name, "shared_memory")  # the GPU process frees it, not this one
        block.close()
        self._block: shared_memory.SharedMemory | None = None

    def __getstate__(self) -> dict:
        return {"length": self.length, "name": self.name, "_block": None}

    def open(self) -> np.ndarray:
        """The samples ``(n,)``, a view of the shared block (valid until :meth:`release`)."""
        self._block = shared_memory.SharedMemory(name=self.name)  # registered here; unlink() unregisters
        return np.ndarray((self.length,), np.float32, buffer=self._block.buf)

    def release(self) -> None:
        """Free the block (after the last use of the view :meth:`open` gave)."""
        block = self._block or shared_memory.SharedMemory(name=self.name)
        block.unlink()  # the memory goes when the last mapping does
        try:
            block.close()
        except BufferError:  # a view is still alive somewhere: its mapping closes with it
            pass
        self._block = None


def prepare_in_worker(path: str, known_hash: str | None) -> Prepared:
    """The CPU part of one file (hash, decode), for :func:`finish_prepared` on the GPU, which
    computes the whole front end there (resampling pyramid included)."""
    result, samples = _opened(path, known_hash)
    if samples is None:
        return Prepared(result)
    return Prepared(result, SharedSamples(samples))


def finish_prepared(context: WorkerContext, prepared: list[Prepared]) -> list[Extracted]:
    """The rest of :func:`extract_one` for files :func:`prepare_in_worker` made ready, on
    ``context``'s device, the network's windows batched across them; frees their memory.

    If the batch fails, each file is done alone, so one bad file fails only itself."""
    ready = [p for p in prepared if p.samples is not None]
    try:
        signals = [p.samples.open() for p in ready]
        cens = context.settings.cens_frames
        try:
            found = context.extractor().from_signals(signals, cens=cens)
        except Exception:  # noqa: BLE001 - redone one at a time below, each file with its own error
            found = [None] * len(ready)
        for p, y, features in zip(ready, signals, found, strict=True):
            if features is None:
                _finished(context, p.extracted, lambda extractor, y=y: extractor.from_signal(y, cens=cens))
            else:
                _finished(context, p.extracted, lambda _, features=features: features)
    finally:
        signals = y = None
        for p in ready:
            p.samples.release()
    return [p.extracted for p in prepared]
