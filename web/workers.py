"""Requests' heavy work (parsing a theme, searching, engraving, plotting) in worker processes.

A theme file is arbitrary input: music21 may parse it for minutes and take gigabytes, and a
thread cannot be stopped. So the server hands such work to a pool of processes (pebble's
``ProcessPool``), each with an address-space limit (``RLIMIT_AS``, set when the worker starts,
above what its libraries already took) and each task with a time limit: a task that runs over
is killed with its worker, which the pool replaces; one that needs more memory fails alone. The
server's own process only reads small SQLite rows and streams files.

Each worker keeps one read-only collection open and reopens it when the index on disk changed
(the ``version`` the server passes with every task).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from pebble import ProcessExpired, ProcessPool

from retrieval.search import SearchableIndex

__all__ = ["WorkerLimits", "WorkerOverrun", "WorkerPool", "worker_collection"]


@dataclass(frozen=True)
class WorkerLimits:
    """What one request may cost: ``seconds`` of a worker's time and ``memory_bytes`` of address
    space beyond what the worker's libraries took at start; at most ``pending`` requests in the
    workers' hands, running or waiting (more answer 503 at once)."""

    seconds: float = 120.0
    memory_bytes: int = 2 * 2**30
    pending: int = 16


class WorkerOverrun(Exception):
    """A request ran over a limit: ``status`` and a one-line ``message``.

    422 when the request's own work needed more time or memory than a request may have (the
    theme is too large to process: a client error, as 413 is for bytes), 503 when too many
    requests are in hand.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status, self.message = status, message


_WORKER: dict[str, Any] = {}
"""A worker process's state: how to open the collection, the open one and its version."""


def _start_worker(open_collection: Callable[[], SearchableIndex], memory_bytes: int) -> None:
    """Pool initializer: import the work's libraries, then cap the address space above that."""
    import retrieval.plot  # noqa: F401 - imported before the limit: libraries are not the request's cost
    import retrieval.query  # noqa: F401
    import web.notation  # noqa: F401

    _WORKER.update(open=open_collection, collection=None, version=None, memory=memory_bytes)
    _limit_memory()


def _limit_memory() -> None:
    """Cap this process's address space at what it holds now plus the request budget (the soft
    limit only: it is raised again, up to the hard limit, when an index is mapped anew)."""
    with open("/proc/self/status") as status:
        size_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    soft = size_kb * 1024 + _WORKER["memory"]
    resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def worker_collection(version: object) -> SearchableIndex:
    """The worker's collection, reopened if the index's ``version`` changed (call in a worker only).

    Its vectors and frames are mapped when it opens, and the memory cap moved above them: the
    index's mappings (hundreds of MB for thousands of hours) are not a request's cost.
    """
    if _WORKER.get("version") != version or _WORKER.get("collection") is None:
        old = _WORKER.get("collection")
        if old is not None and hasattr(old, "close"):
            old.close()
        old = _WORKER["collection"] = None  # its mappings go before the new ones are counted
        resource.setrlimit(resource.RLIMIT_AS, (resource.getrlimit(resource.RLIMIT_AS)[1],) * 2)
        try:
            collection = _WORKER["open"]()
            for mapped in ("vectors", "stored_frames"):
                if hasattr(collection, mapped):
                    try:
                        getattr(collection, mapped)()
                    except Exception:  # noqa: BLE001 - an unreadable index: the request itself will say why
                        break
            _WORKER["collection"], _WORKER["version"] = collection, version
        finally:
            _limit_memory()  # also when the index cannot be opened now: the cap is never left raised
    return _WORKER["collection"]


class WorkerPool:
    """``workers`` processes running module-level functions under :class:`WorkerLimits`."""

    def __init__(self, open_collection: Callable[[], SearchableIndex], workers: int, limits: WorkerLimits) -> None:
        self.limits = limits
        self.pending = 0
        self.pool = ProcessPool(max_workers=workers, initializer=_start_worker,
                                initargs=(open_collection, limits.memory_bytes),
                                context=multiprocessing.get_context("spawn"))

    def start(self) -> None:
        """Start the workers now (they take seconds to import their libraries), not on the first request."""
        self.pool.schedule(os.getpid)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` in a worker; :class:`WorkerOverrun` when a limit was hit.

        Exceptions of ``function`` pass through; cancelling the awaiting task (a client gone, the
        server stopping) stops the worker's task too.
        """
        if self.pending >= self.limits.pending:
            raise WorkerOverrun(503, f"the server is busy ({self.pending} requests in hand); try again shortly")
        self.pending += 1
        future = self.pool.schedule(function, args=args, timeout=self.limits.seconds)
        try:
            return await asyncio.wrap_future(future)
        except FutureTimeout:
            raise WorkerOverrun(422, f"the request took longer than {self.limits.seconds:.0f} s; "
                                     "choose a passage (measures) and/or one part") from None
        except (MemoryError, ProcessExpired):
            raise WorkerOverrun(422, f"the request needed more than the {self.limits.memory_bytes // 2**20} MB "
                                     "a request may use; choose a passage (measures) and/or one part") from None
        finally:
            self.pending -= 1

    def close(self) -> None:
        """Stop every worker now (running tasks are abandoned)."""
        self.pool.stop()
        self.pool.join(timeout=5)
