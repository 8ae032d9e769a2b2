"""``index --ray HOST:PORT`` on a real two-node Ray cluster, set up as docs/scaling.md says (``ray start
--head`` and ``ray start --address``, token authentication on), both nodes on this machine."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from db.store import FEATURE_STEP, IndexStore

pytest.importorskip("ray", reason="Ray is the optional extra .[cluster], installed by the test command")

ROOT = Path(__file__).resolve().parents[2]
RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_env(home: Path, token: Path | None) -> dict[str, str]:
    """The environment of a Ray command: its own home (no token of the machine's user), and
    token authentication with ``token`` when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
    if token is not None:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    return env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``(address, env)`` of a head node and one worker node of 1 CPU each; stopped afterwards."""
    home = tmp_path_factory.mktemp("ray_home")
    token = home / "cluster_token"
    token.write_text(secrets.token_hex(32))
    env, port = _ray_env(home, token), _free_port()
    address = f"127.0.0.1:{port}"
    try:
        small = f"--object-store-memory={2**27}"  # results are small; CI's shared memory may be too
        _ray(env, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
             "--disable-usage-stats", small)
        _ray(env, "start", f"--address={address}", "--num-cpus=1", small)
        yield address, env
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def _ray(env: dict[str, str], *args: str) -> None:
    run = subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"ray {' '.join(args)} failed: {run.stderr[-2000:]}"


def _index(folder: Path, db: Path, address: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", "index", str(folder), "--db", str(db), "--ray", address,
                           "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_cluster_of_two_nodes_builds_the_in_process_index(cluster, rendered_dir, indexed, tmp_path):
    address, env = cluster
    nodes = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={address!r}, log_to_driver=False); "
                            "print(sum(n['Alive'] for n in ray.nodes()))"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert nodes.stdout.split()[-1] == "2", nodes.stderr[-2000:]  # both nodes joined: tasks run on each
    db = tmp_path / "cluster.db"
    run = _index(rendered_dir, db, address, env)
    assert run.returncode == 0, run.stderr[-2000:]
    ours, theirs = IndexStore.open(db, readonly=True), IndexStore.open(indexed, readonly=True)
    assert sorted(r.path for r in ours.recordings("indexed")) == sorted(r.path for r in theirs.recordings("indexed"))
    by_path = {r.path: r for r in theirs.recordings()}
    for rec in ours.recordings("indexed"):
        assert np.abs(ours.frames(rec.id) - theirs.frames(by_path[rec.path].id)).max() <= FEATURE_STEP + 1e-6


def test_a_client_without_the_cluster_token_gets_one_line(cluster, rendered_dir, tmp_path):
    address, _ = cluster
    started = time.monotonic()
    run = _index(rendered_dir, tmp_path / "refused.db", address, _ray_env(tmp_path, None))
    assert run.returncode == 2 and time.monotonic() - started < 60
    (line,) = run.stderr.strip().splitlines()  # Ray's own retry messages held back: one line
    assert line.startswith(f"error: --ray {address}: ") and "RAY_AUTH_MODE=token" in line
    assert not (tmp_path / "refused.db").exists()  # nothing written before the cluster is joined
