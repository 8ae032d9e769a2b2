"""Shared test fixtures: the reference data of ``../shared`` (skipped with a reason if absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.demo_collection import DEMO_PIECES, render_demo_collection

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "fixtures" / "ctc_chroma_reference"
RECORDINGS = SHARED / "data" / "recordings"
EXCERPTS = ("Beethoven_Op002-2-01_Pitman", "Beethoven_Op067-01_DavidHighSchool")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference fixtures not found at {REFERENCE} (../shared is absent)")
    return REFERENCE


@pytest.fixture(scope="session")
def recordings_dir() -> Path:
    if not RECORDINGS.is_dir():
        pytest.skip(f"recordings not found at {RECORDINGS} (../shared is absent)")
    return RECORDINGS


# -- a small generated collection: the demo pieces (music21 corpus) rendered with the GM SoundFont --

PIECES = DEMO_PIECES


@pytest.fixture(scope="session")
def rendered_dir(tmp_path_factory) -> Path:
    """Folder of the rendered demo pieces (one WAV each, 20–50 s)."""
    folder = tmp_path_factory.mktemp("rendered")
    render_demo_collection(folder)
    return folder


@pytest.fixture(scope="session")
def indexed(rendered_dir, tmp_path_factory) -> Path:
    """An index of :func:`rendered_dir` with the default settings (do not modify it)."""
    from indexer.build import index_collection

    db = tmp_path_factory.mktemp("indexed") / "index.db"
    report = index_collection(rendered_dir, db, progress=False)
    assert len(report.added) == len(PIECES) and not report.failed
    return db


# -- file systems of a given kind: a small disk, a read-only view (root and mount(8) needed) -------------


@pytest.fixture
def mount():
    """``mount(*ARGS)`` runs ``mount ARGS`` (or skips the test with the reason: a container may not allow
    mounts); every mount point given is unmounted after the test."""
    import os
    import shutil
    import subprocess

    points: list[str] = []

    def run(*args: str) -> None:
        if shutil.which("mount") is None or os.geteuid() != 0:
            pytest.skip("needs root and mount(8) to make a small or read-only file system")
        done = subprocess.run(["mount", *args], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"mount {' '.join(args)} is not permitted here: {done.stderr.strip()}")
        points.append(args[-1])

    yield run
    for point in reversed(points):
        subprocess.run(["umount", "-l", point], check=False)


@pytest.fixture
def read_only_view(mount, tmp_path):
    """``read_only_view(folder)``: a read-only bind mount of ``folder`` (as another user, or a read-only
    container, sees it: nothing can be created or changed there)."""
    def view(folder: Path) -> Path:
        point = tmp_path / f"ro_{folder.name}"
        point.mkdir()
        mount("--bind", str(folder), str(point))
        mount("-o", "remount,ro,bind", str(point))
        return point

    return view
