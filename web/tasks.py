"""What a worker process does for a request: query, engrave or plot (see :mod:`web.workers`).

Module-level functions, so that the pool can send them to a worker by name; each receives the
index ``version`` the server saw, the path of the theme the server saved (:func:`saved_upload`)
and its upload name, and answers plain data or raises :class:`RequestError` with the one-line
message the client gets.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from models.audio import AudioError, is_audio_file
from models.errors import ParameterError, RetrievalError
from retrieval.plot import plot_match
from retrieval.query import QueryOptions, QueryResult, query
from retrieval.theme import ThemeError, ThemeTooLarge
from web.notation import engrave_theme
from web.workers import worker_collection

__all__ = ["RequestError", "notation_task", "plot_task", "query_task", "saved_upload"]

T = TypeVar("T")

MEMORY_EXIT = 75
"""A worker's exit status after it ran out of memory (the pool replaces it)."""


class RequestError(Exception):
    """Bad input found in a worker: the HTTP ``status`` and the client's one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status, self.message = status, message


def _safe_name(filename: str, extension: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename or "theme").stem)[:60].strip("._") or "theme"
    return stem + extension


@contextlib.contextmanager
def saved_upload(data: bytes, name: str, extension: str) -> Iterator[Path]:
    """The theme's bytes saved under a sanitised name in a private temporary folder, removed on
    leaving the block. The server's process holds it, not the worker: a worker killed over a
    limit runs no clean-up, and folders left by killed requests would let a client fill the disk."""
    with tempfile.TemporaryDirectory(prefix="theme_upload_") as folder:
        path = Path(folder) / _safe_name(name, extension)
        path.write_bytes(data)
        yield path


def _on_file(path: Path, name: str, work: Callable[[Path], T]) -> T:
    """``work(path)`` on the saved theme; a bad theme or option becomes a :class:`RequestError`
    (400/422) naming the upload ``name``, not our path, and an index that cannot be read now one
    of 503.

    A worker that ran out of memory ends at once (its heap may be left in pieces): the pool
    reports the overrun and starts a fresh one.
    """
    try:
        return work(path)
    except MemoryError:
        os._exit(MEMORY_EXIT)
    except (ThemeError, ParameterError, AudioError) as error:  # the request's fault: too large 422, else 400
        message = str(error).replace(str(path), Path(name).name)
        raise RequestError(422 if isinstance(error, ThemeTooLarge) else 400, message) from None
    except RetrievalError as error:  # the index's state (being rebuilt, damaged): not the request's fault
        raise RequestError(503, str(error).splitlines()[0]) from None


def query_task(version: object, path: Path, name: str, options: QueryOptions,
               with_notation: bool) -> tuple[dict, QueryResult]:
    """The answer of ``POST /api/query`` (``query --json``'s fields, ``notation`` if asked) and
    the result itself (kept by the server for plots)."""
    def work(path: Path) -> tuple[dict, QueryResult]:
        result = query(worker_collection(version), path, options)
        answer = result.as_dict()
        answer["theme"] = Path(name).name
        if with_notation:
            try:
                answer["notation"] = None if is_audio_file(path) else engrave_theme(path, options.part,
                                                                                    options.measures)["svg"]
            except ThemeError:
                answer["notation"] = None
        return answer, result

    return _on_file(path, name, work)


def notation_task(version: object, path: Path, name: str, part: str | None,
                  measures: tuple[int, int] | None) -> dict:
    """The answer of ``POST /api/notation``: the selected theme engraved as SVG, with its time map."""
    return _on_file(path, name, lambda p: {"theme": Path(name).name, **engrave_theme(p, part, measures)})


def plot_task(version: object, result: QueryResult, rank: int) -> bytes:
    """PNG of the theme beside its match of ``rank`` (``GET /api/recordings/{id}/plot``)."""
    buffer = io.BytesIO()
    plot_match(result, worker_collection(version), buffer, rank=rank)
    return buffer.getvalue()
