"""Every recording's stored frames in one flat file, memory-mapped by readers.

The vote of a large collection's search needs the exact similarity of thousands of shingle hits
per query, gathered from many recordings: a read of each recording's features from SQLite would
cost far more than the search. So the same ``uint8`` frames (``(n_frames, 12)``, as the
``features`` table stores them) are also kept back to back in one file, which readers map:
gathering a hit is an offset addition. The file is only ever appended to (an offset once
committed never changes, so a reader mapping it while an index run appends stays consistent); a
rewrite (to drop the frames of removed recordings) goes to a new file whose name the database
records in the same transaction as the new offsets.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["append_frames", "map_frames", "write_frames"]

WIDTH = 12
"""Bytes of one stored frame (12 pitch classes, ``uint8``)."""


def append_frames(path: Path, arrays: list[np.ndarray], mode: int) -> list[int]:
    """Append each ``uint8`` array ``(n_i, 12)`` to the file (made with ``mode`` if new), flushed to
    disk before returning; returns each one's first frame. Bytes left past the last whole frame by
    an append a crash cut short are skipped, never reused."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, mode)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        start = -(-end // WIDTH)  # a torn tail: start at the next whole frame
        os.lseek(fd, start * WIDTH, os.SEEK_SET)
        offsets = []
        for array in arrays:
            offsets.append(start)
            data = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            start += len(array)
        os.fsync(fd)
    finally:
        os.close(fd)
    return offsets


def write_frames(path: Path, arrays: list[np.ndarray], mode: int) -> list[int]:
    """A new file of the arrays back to back (none may exist at ``path``); returns each one's first frame."""
    if path.exists():
        path.unlink()
    return append_frames(path, arrays, mode)


def map_frames(path: Path) -> np.ndarray:
    """The file's frames ``(F, 12)`` as a read-only ``uint8`` array mapped from disk (empty if the file is)."""
    frames = path.stat().st_size // WIDTH
    if frames == 0:
        return np.zeros((0, WIDTH), np.uint8)
    return np.asarray(np.memmap(path, dtype=np.uint8, mode="r", shape=(frames, WIDTH)))
