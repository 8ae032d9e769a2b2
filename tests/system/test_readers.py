"""Readers while an index is written, rebuilt or copied read-only: the last checkpoint or one line."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from cli import main
from db.store import IndexStore, StoreError

ROOT = Path(__file__).resolve().parents[2]


def test_a_read_only_copy_with_an_unapplied_log_says_what_it_needs(indexed, tmp_path, read_only_view, capsys):
    """A copy taken while its write-ahead log held the new tables: refused in one line naming the fix."""
    folder = tmp_path / "copy"
    folder.mkdir()
    live = tmp_path / "live.db"
    shutil.copy(indexed, live)
    writer = sqlite3.connect(live)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE later(x)")
    writer.commit()
    for suffix in ("", "-wal"):
        shutil.copy(f"{live}{suffix}", folder / f"index.db{suffix}")
    shutil.copy(f"{indexed}.faiss", folder / "index.db.faiss")
    writer.close()
    view = read_only_view(folder)
    assert main(["status", "--db", str(view / "index.db")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "write-ahead log index.db-wal" in err and "wal_checkpoint" in err
    with sqlite3.connect(folder / "index.db") as conn:  # checkpointed, the same read-only copy reads
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (folder / "index.db-wal").unlink(missing_ok=True)
    (folder / "index.db-shm").unlink(missing_ok=True)
    assert main(["status", "--db", str(view / "index.db")]) == 0


def test_readers_see_the_old_or_the_new_index_while_it_is_rebuilt(rendered_dir, tmp_path, read_only_view):
    """Another user (a read-only view of the folder) lists and searches while --rebuild runs."""
    folder = tmp_path / "index"
    folder.mkdir()
    db = folder / "index.db"
    assert main(["index", str(rendered_dir), "--db", str(db), "--quiet"]) == 0
    view = read_only_view(folder) / "index.db"
    writer = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "index", str(rendered_dir), "--db", str(db),
                               "--rebuild", "--quiet"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen, problems = set(), []
    deadline = time.monotonic() + 120
    while writer.poll() is None and time.monotonic() < deadline:
        try:
            store = IndexStore.open(view, readonly=True)
            try:
                seen.add(len(store.recordings()))
                store.stats()
            finally:
                store.close()
        except StoreError as error:  # one line, and only while the vectors are being replaced
            if "\n" in str(error) or "no index here" in str(error) or "no such table" in str(error):
                problems.append(str(error))
        except sqlite3.DatabaseError as error:  # the CLI and the server turn these into one line
            problems.append(f"{type(error).__name__}: {error}")
        time.sleep(0.01)
    assert writer.wait(timeout=60) == 0, writer.stderr.read().decode()[-2000:]
    assert not problems, problems[:3]
    assert seen and seen <= {0, 1, 2, 3, 4, 5}


def test_an_unreadable_index_is_one_line_for_the_cli(indexed, monkeypatch, capsys):
    def malformed(self, status=None):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(IndexStore, "recordings", malformed)
    assert main(["list", "--db", str(indexed)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "database disk image is malformed" in err and "Traceback" not in err
