"""A real ``cli.py serve`` process under hostile requests: bounded memory and time, status always
answered, SIGTERM obeyed."""

from __future__ import annotations

import io
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import httpx2
import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2
WORKER_MB = 400
REQUEST_SECONDS = 10
SERVER_AS_BYTES = 8 * 2**30  # RLIMIT_AS of the server process (its workers inherit it, then lower theirs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its children (the workers and multiprocessing's tracker)."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(proc.name) == pid or int(fields[1]) == pid:
                total += int(fields[21]) * resource.getpagesize()
        except (OSError, IndexError, ValueError):
            continue
    return total


def _children(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.fixture
def server(indexed, tmp_path):
    """The server, its temporary files in ``tmp_path / "tmp"`` (``TMPDIR``)."""
    port = _free_port()
    (tmp_path / "tmp").mkdir()

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (SERVER_AS_BYTES, SERVER_AS_BYTES))

    process = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "serve", "--db", str(indexed), "--port", str(port),
         "--workers", str(WORKERS), "--worker-memory-mb", str(WORKER_MB), "--request-seconds", str(REQUEST_SECONDS)],
        cwd=ROOT, preexec_fn=limit_memory, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp_path / "tmp")},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx2.get(base + "/api/status", timeout=2).status_code == 200:
                break
        except httpx2.HTTPError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail(f"the server did not start: {process.communicate()[1].decode()[-2000:]}")
    yield process, base
    if process.poll() is None:
        process.kill()
        process.wait()


def _huge_abc() -> bytes:
    """4 MB of ABC notes: music21 parses it for minutes and gigabytes."""
    rng = random.Random(0)
    notes = " ".join(rng.choice("CDEFGABcdefgab") + rng.choice(["", "2", "/2"]) for _ in range(1_300_000))
    return f"X:1\nM:4/4\nL:1/8\nK:C\n{notes}|]\n".encode()


def _mxl_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("META-INF/container.xml", '<container><rootfiles><rootfile full-path="a.xml"/>'
                                                   "</rootfiles></container>")
        archive.writestr("a.xml", "<score-partwise>" + " " * 400_000_000 + "</score-partwise>")
    return buffer.getvalue()


def test_hostile_requests_cost_only_their_workers(server, tmp_path):
    process, base = server
    huge, bomb = _huge_abc(), _mxl_bomb()
    answers: dict[str, int] = {}
    peak = [_tree_rss(process.pid)]

    def hostile(name: str, **request) -> None:
        try:
            answers[name] = httpx2.post(base + "/api/query", timeout=120, **request).status_code
        except httpx2.HTTPError as error:  # the server may close a connection it refused mid-body
            answers[name] = type(error).__name__

    def chunked():
        for _ in range(300):  # 300 × 1 MB offered without a Content-Length
            yield b"a" * 2**20

    threads = [threading.Thread(target=hostile, args=(f"abc{i}",), kwargs={"files": {"theme": ("huge.abc", huge)}})
               for i in range(2)]
    threads += [
        threading.Thread(target=hostile, args=("mxl",), kwargs={"files": {"theme": ("bomb.mxl", bomb)}}),
        threading.Thread(target=hostile, args=("chunked",), kwargs={
            "content": chunked(), "headers": {"Content-Type": "application/json"}}),
        threading.Thread(target=hostile, args=("measures",), kwargs={"json": {
            "text": "X:1\nM:4/4\nL:1/4\nK:C\nC E G c|G E C2|]\n", "format": "abc",
            "measures": "1-999999999999999999999"}}),
    ]
    for thread in threads:
        thread.start()
    slowest = 0.0
    while any(thread.is_alive() for thread in threads):
        t0 = time.monotonic()
        assert httpx2.get(base + "/api/status", timeout=10).status_code == 200
        slowest = max(slowest, time.monotonic() - t0)
        peak.append(_tree_rss(process.pid))
        time.sleep(0.3)
    assert answers["abc0"] == 422 and answers["abc1"] == 422, answers
    assert answers["mxl"] == 413 and answers["measures"] == 400, answers
    assert answers["chunked"] in (413, "WriteError", "RemoteProtocolError", "ReadError"), answers
    assert slowest < 2.0, f"/api/status took {slowest:.1f} s while hostile requests ran"
    bound = 700 * 2**20 + WORKERS * (650 + WORKER_MB) * 2**20  # the server, and each worker at rest plus its cap
    assert max(peak) < bound, f"server and workers peaked at {max(peak) / 2**30:.2f} GiB, bound {bound / 2**30:.2f}"
    ok = httpx2.post(base + "/api/query", json={"text": "X:1\nM:4/4\nL:1/4\nK:C\nC E G c|G E C2|]\n", "format": "abc"},
                    timeout=60)
    assert ok.status_code == 200 and ok.json()["matches"], "replaced workers answer the next query"
    left = list((tmp_path / "tmp").glob("theme_upload_*"))
    assert not left, f"uploads of killed requests stay on disk: {left}"  # else hostile requests fill the disk


def test_sigterm_stops_the_server_and_its_workers_within_seconds(server):
    process, base = server
    workers = _children(process.pid)
    running = threading.Thread(target=lambda: httpx2.post(base + "/api/query", timeout=60,
                                                          files={"theme": ("huge.abc", _huge_abc())}), daemon=True)
    running.start()
    time.sleep(2)  # the hostile parse is under way in a worker
    t0 = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=15)
    assert time.monotonic() - t0 < 5.0
    time.sleep(1)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists() and
                "Z" not in (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])]
