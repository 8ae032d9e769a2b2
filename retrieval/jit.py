"""``numba.njit`` with its on-disk cache wherever one can be kept, and without it elsewhere.

numba caches compiled functions beside their source (``__pycache__``) or in the user's cache
folder; with ``cache=True`` and neither writable (a service account without a home, a read-only
install or container) it refuses to compile at all, at import. Then the cache goes to a private
folder of this user under the system's temporary folder, and where even that cannot be had,
functions are compiled on each start (about a second) instead of failing.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba

__all__ = ["njit_cached"]


def _private_cache_folder() -> Path | None:
    """``$TMPDIR/score-retrieval-numba-<uid>``, made if needed, if it is this user's alone; else ``None``.

    numba's cache files are pickles: a folder another user can write to could plant code.
    """
    folder = Path(tempfile.gettempdir()) / f"score-retrieval-numba-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError:
        return None
    mine = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022
    return folder if mine and os.access(folder, os.W_OK) else None


def njit_cached(**options: Any) -> Callable[[Callable], Callable]:
    """``numba.njit(cache=True, **options)``, falling back as the module docstring says."""

    def decorate(function: Callable) -> Callable:
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError:  # "cannot cache function …: no locator available"
            pass
        folder = _private_cache_folder()
        if folder is not None:
            numba.config.CACHE_DIR = str(folder)
            try:
                return numba.njit(cache=True, **options)(function)
            except RuntimeError:
                pass
        return numba.njit(**options)(function)

    return decorate
