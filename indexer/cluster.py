"""Distributed extraction on Ray: each new or changed file is one Ray task (hash, decode, deep
chroma) on any node of a cluster; finished features stream back to the single writer.

The writer (:func:`indexer.build.index_collection`) is unchanged: it stores each result as it
arrives, checkpoints, and alone touches the index, so an index built on Ray is as incremental,
resumable and crash-safe as one built in-process. Ray retries a task whose worker died
(:data:`TASK_RETRIES`); a result is stored once, when it arrives. Ray is an optional dependency
(``pip install -e '.[cluster]'``); every node needs the project installed and the audio at the
same path (shared storage).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from indexer.extract import Extracted, extract_in_worker
from models.errors import ParameterError, RetrievalError
from models.retrieval_features import IndexSettings
from models.stderr import captured_stderr

__all__ = ["CONNECT_SECONDS", "GPU_SHARE", "LOCAL", "TASK_RETRIES", "ClusterError", "check_reachable",
           "ray_results", "ray_session"]

LOCAL = "local"
"""``--ray`` without an address: start a Ray instance on this machine for the run."""

CONNECT_SECONDS = 5.0
"""How long to wait for a cluster's head node to accept a connection before giving up."""

LOCAL_OBJECT_STORE = 256 * 2**20
"""Bytes of shared memory a local Ray instance reserves for results (a result is ~0.5 MB per audio hour)."""

TASK_RETRIES = 3
"""Times Ray re-runs a task whose worker process or node died (then the run stops; what was
stored so far is kept and the next run resumes)."""

GPU_SHARE = 0.25
"""GPUs a task claims with ``device="cuda"``: four extractions share a GPU (each also needs a CPU
for decoding, which is the slower part)."""


class ClusterError(RetrievalError, RuntimeError):
    """Ray is missing, the cluster cannot be reached, or a task failed beyond its retries."""


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray: pip install -e '.[cluster]'") from None
    return ray


def check_reachable(address: str, timeout: float = CONNECT_SECONDS) -> None:
    """A :class:`ClusterError` within ``timeout`` seconds if nothing listens at ``HOST:PORT``
    (``ray.init`` itself would keep retrying for a minute or more)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ParameterError(f"--ray {address}: expected HOST:PORT of the head node (e.g. 10.0.0.5:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__.replace("TimeoutError", "timed out")
        raise ClusterError(f"--ray {address}: cannot reach the Ray head node ({reason})") from None


@contextmanager
def ray_session(address: str = LOCAL) -> Iterator[None]:
    """Ray connected for the duration: the cluster at ``address`` joined, or a local instance
    started (and stopped at the end). A Ray the caller already initialised is used as it is.
    Raises :class:`ClusterError` within about :data:`CONNECT_SECONDS` if ``address`` is no Ray head."""
    if address != LOCAL:
        check_reachable(address)
        # Ray retries a head node that accepts connections but does not answer as one (~1 s per
        # try); its log level is read when it is imported
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(round(CONNECT_SECONDS)))
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    ray = _import_ray()
    if ray.is_initialized():
        yield
        return
    if address == LOCAL:  # results are small: a small object store, whatever the machine's memory
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
                 object_store_memory=LOCAL_OBJECT_STORE)
    else:
        try:
            with captured_stderr() as held:  # Ray's C++ client logs each retry there, whatever its level
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            os.write(2, b"".join(held))  # joined: pass them on; failed: the one-line error below says it
        except Exception as error:  # noqa: BLE001 - Ray's errors here vary by version; all mean "not joined"
            if _refused_token(error):
                raise ClusterError(f"--ray {address}: the head node wants Ray's token authentication: set "
                                   "RAY_AUTH_MODE=token and give this machine the cluster's token "
                                   "(~/.ray/auth_token or RAY_AUTH_TOKEN)") from None
            raise ClusterError(f"--ray {address}: cannot reach the Ray head node ({error})") from None
    try:
        yield
    finally:
        ray.shutdown()


def _refused_token(error: BaseException | None) -> bool:
    """Whether ``error`` or what caused it is Ray refusing this process's authentication token."""
    while error is not None:
        if type(error).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _extract_task(settings: IndexSettings, device: str, path: str, known_hash: str | None) -> Extracted:
    """One file on a Ray worker (its model loaded once per worker process, see :func:`worker_context`)."""
    return extract_in_worker(settings, device, 1, path, known_hash)


def ray_results(jobs: list[tuple[str, str | None]], settings: IndexSettings, device: str) -> Iterator[Extracted]:
    """Extract every job ``(path, known hash or None)`` as Ray tasks, yielding results as they finish
    (inside :func:`ray_session`).

    At most two tasks per cluster CPU are in flight, so results stream back steadily and a large
    collection never floods the object store; a stopped run cancels what is in flight.
    """
    ray = _import_ray()
    task = ray.remote(num_cpus=1, num_gpus=GPU_SHARE if device == "cuda" else 0, max_retries=TASK_RETRIES)(
        _extract_task)
    limit = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    queue, pending = list(reversed(jobs)), {}
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                path, known = queue.pop()
                pending[task.remote(settings, device, path, known)] = path
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                path = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as error:
                    reason = str(error).strip().splitlines()[0][:200]
                    raise ClusterError(f"{path}: extraction failed on the Ray cluster after "
                                       f"{TASK_RETRIES} retries ({reason}); run index again to resume") from None
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
