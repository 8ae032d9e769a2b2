"""One recording → retrieval features, in the indexing process or in a worker process."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.walk import check_readable
from models.audio import decode_audio
from models.retrieval_features import FeatureSettings, retrieval_features

__all__ = ["Extracted", "WorkerContext", "content_hash", "extract_in_worker", "extract_one", "worker_context"]


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
    error: str | None = None
    warning: str | None = None  # indexed, but worth telling (a damaged file: see DecodedAudio.damage)
    unchanged: bool = False  # same content as ``known_hash``: nothing extracted


class WorkerContext:
    """The extractor of one process, built on first use (models load once per worker)."""

    def __init__(self, settings: FeatureSettings, device: str = "cpu", threads: int | None = None) -> None:
        self.settings = settings
        self.device = device
        self.threads = threads
        self._extractor = None

    def extractor(self):
        if self._extractor is None:
            import torch

            from models.baselines import make_extractor

            if self.threads:
                torch.set_num_threads(self.threads)
            self._extractor = make_extractor(self.settings.model_id, device=self.device)
        return self._extractor


@functools.cache
def worker_context(settings: FeatureSettings, device: str, threads: int | None) -> WorkerContext:
    """The context of this process for these settings: built once, reused by every later job."""
    return WorkerContext(settings, device, threads)


def extract_in_worker(settings: FeatureSettings, device: str, threads: int | None, path: str,
                      known_hash: str | None) -> Extracted:
    """:func:`extract_one` with this process's :func:`worker_context` (process pools, Ray tasks)."""
    return extract_one(worker_context(settings, device, threads), path, known_hash)


def extract_one(context: WorkerContext, path: str, known_hash: str | None = None) -> Extracted:
    """Hash, decode and extract one file; any failure is returned as a one-line ``error``."""
    file = Path(path)
    try:
        stat = file.stat()
        result = Extracted(path=path, size=stat.st_size, mtime=stat.st_mtime, hash=content_hash(file))
    except OSError as error:
        return Extracted(path=path, size=0, mtime=0.0, hash="", error=f"{path}: cannot read ({error.strerror})")
    if known_hash is not None and result.hash == known_hash:
        result.unchanged = True
        return result
    try:
        check_readable(file)
        decoded = decode_audio(file)
        result.duration, result.sample_rate, result.channels = decoded.seconds, decoded.native_rate, decoded.channels
        if decoded.damage:
            result.warning = f"{path}: {decoded.damage}"
        chroma = context.extractor().from_signal(decoded.samples).chroma
        result.features = retrieval_features(chroma, context.settings.downsample, context.settings.smoothing)
    except Exception as error:  # noqa: BLE001 - one bad file must never stop a run; reason is kept
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        result.error = message if path in message else f"{path}: {message}"
    return result
