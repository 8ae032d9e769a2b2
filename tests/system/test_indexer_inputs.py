"""What no file name, flag, full disk or read-only install may do to ``index`` and the other commands."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli import main
from db.store import IndexStore
from retrieval.theme import parse_corpus_work

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_disk(mount, tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    mount("-t", "tmpfs", "-o", "size=500k", "tmpfs", str(folder))  # the vector file alone takes 650 kB
    return folder


def test_a_name_that_is_not_utf8_is_skipped_with_its_reason_and_the_run_goes_on(rendered_dir, tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    shutil.copy(rendered_dir / "mozart_k155.wav", os.fsdecode(bytes(audio) + b"/bad\xff.wav"))
    shutil.copy(rendered_dir / "haydn_op74.wav", audio / "good.wav")
    db = tmp_path / "index.db"
    for _ in range(2):  # and on every re-run
        assert main(["index", str(audio), "--db", str(db), "--quiet"]) == 1
        err = capsys.readouterr().err
        assert "bad\\xff.wav: the file name is not UTF-8 text" in err and "Traceback" not in err
    store = IndexStore.open(db)
    assert [r.name for r in store.recordings("indexed")] == ["good"]
    store.close()


def test_control_characters_in_names_are_printed_escaped(rendered_dir, tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    shutil.copy(rendered_dir / "haydn_op74.wav", audio / "red\x1b[31m\nline.wav")
    db = tmp_path / "index.db"
    assert main(["index", str(audio), "--db", str(db), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["list", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "red\\x1b[31m\\nline.wav" in out and "\x1b" not in out and out.count("\n") == 1
    theme = tmp_path / "theme.musicxml"
    parse_corpus_work("haydn/opus74no1/movement3").measures(9, 12).parts[0].write("musicxml", fp=theme)
    assert main(["query", str(theme), "--db", str(db), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "red\\x1b[31m\\nline.wav" in out and "\x1b" not in out
    assert main(["list", "--db", str(db), "--json"]) == 0  # JSON keeps the name exactly (escaped by JSON)
    assert json.loads(capsys.readouterr().out)[0]["path"].endswith("red\x1b[31m\nline.wav")


def test_a_bad_index_factory_is_refused_before_anything_is_written(indexed, rendered_dir, tmp_path, capsys):
    db = tmp_path / "new.db"
    assert main(["index", str(rendered_dir), "--db", str(db), "--index-factory", "garbage", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid FAISS index factory string 'garbage'") and err.count("\n") == 1
    assert not db.exists()
    copy = tmp_path / "copy.db"
    for suffix in ("", ".faiss"):
        shutil.copy(f"{indexed}{suffix}", f"{copy}{suffix}")
    before = copy.read_bytes()
    assert main(["index", str(rendered_dir), "--db", str(copy), "--rebuild", "--index-factory", "IVF,x", "-q"]) == 2
    assert copy.read_bytes() == before, "--rebuild with a bad factory must not remove the index"


def test_a_factory_too_large_for_the_collection_searches_exactly_until_it_fits(rendered_dir, tmp_path, capsys):
    db = tmp_path / "index.db"
    assert main(["index", str(rendered_dir), "--db", str(db), "--index-factory", "IVF4096,PQ64", "--quiet"]) == 0
    assert "needs at least 4096 shingles to train" in capsys.readouterr().err
    assert main(["index", str(rendered_dir), "--db", str(db), "--quiet"]) == 0  # later plain runs work
    capsys.readouterr()
    assert main(["status", "--db", str(db), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["index_factory"] == "IDMap2,Flat" and stats["settings"]["index_factory"] == "IVF4096,PQ64"


def test_a_rerun_with_nothing_changed_writes_nothing(indexed, rendered_dir, tmp_path):
    db = tmp_path / "index.db"
    for suffix in ("", ".faiss"):
        shutil.copy(f"{indexed}{suffix}", f"{db}{suffix}")
    files = [db, Path(f"{db}.faiss")]
    for file in files:
        os.utime(file, ns=(1_000_000_000, 1_000_000_000))
    before = [f.read_bytes() for f in files]
    assert main(["index", str(rendered_dir), "--db", str(db), "--quiet"]) == 0
    assert [f.stat().st_mtime_ns for f in files] == [1_000_000_000] * 2
    assert [f.read_bytes() for f in files] == before


def test_a_full_disk_is_one_line_and_the_next_run_resumes(small_disk, mount, rendered_dir, capsys):
    db = small_disk / "index.db"
    assert main(["index", str(rendered_dir), "--db", str(db), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "disk full" in err and err.strip().count("\n") == 0 and "bug" not in err
    mount("-o", "remount,size=8m", str(small_disk))
    assert main(["index", str(rendered_dir), "--db", str(db), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["status", "--db", str(db), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["recordings"] == 5 and stats["not_yet_searchable"] == 0 and stats["shingles"] > 800


def test_a_measure_range_beyond_the_score_is_refused_before_allocating(indexed, tmp_path):
    theme = tmp_path / "theme.musicxml"
    parse_corpus_work("haydn/opus74no1/movement3").measures(9, 12).parts[0].write("musicxml", fp=theme)

    def four_gigabytes() -> None:  # far below what selecting 10^21 measures would take
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "query", str(theme), "--db", str(indexed),
                           "--measures", "1-999999999999999999999"], capture_output=True, text=True, cwd=ROOT,
                          preexec_fn=four_gigabytes, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "measures 1-999999999999999999999 are not all in the score" in done.stderr
    assert done.stderr.strip().count("\n") == 0


def test_commands_work_with_no_writable_home_or_source_tree(read_only_view, tmp_path):
    """A service account or a read-only container: numba's cache falls back, nothing fails."""
    view = read_only_view(ROOT)
    nowhere = str(view / "nonexistent")
    script = ("import numpy as np; from retrieval.dtw import subsequence_align; e = np.eye(12, dtype=np.float32); "
              "print(subsequence_align(e[[0, 4, 7, 0]], e[[2, 0, 4, 7, 0, 5]]))")
    for tmpdir in (str(tmp_path), nowhere):  # a private cache in TMPDIR; no cache at all
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
        env.update(HOME=nowhere, XDG_CACHE_HOME=nowhere, TMPDIR=tmpdir, PYTHONDONTWRITEBYTECODE="1")
        if tmpdir == nowhere:
            helped = subprocess.run([sys.executable, "cli.py", "--help"], cwd=view, env=env, capture_output=True,
                                    text=True, timeout=300)
            assert helped.returncode == 0, helped.stderr[-2000:]
        aligned = subprocess.run([sys.executable, "-c", script], cwd=view, env=env, capture_output=True,
                                 text=True, timeout=300)
        assert aligned.returncode == 0 and "start=1, end=4" in aligned.stdout, aligned.stderr[-2000:]
