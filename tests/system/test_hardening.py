"""Hardening: what damaged files, damaged indexes and hostile input must not do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli import main
from db.store import IndexStore
from models.audio import decode_audio

SR = 44100


@pytest.fixture(scope="module")
def truncated_mp3(tmp_path_factory):
    """A constant-bitrate MP3 of 60 s cut to its first quarter: 15 s of real audio, a header saying 60 s."""
    folder = tmp_path_factory.mktemp("mp3")
    t = np.arange(SR * 60) / SR
    y = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
    whole = folder / "whole.mp3"
    sf.write(whole, y, SR, format="MP3", bitrate_mode="CONSTANT", compression_level=0.5)
    data = whole.read_bytes()
    (folder / "audio").mkdir()
    (folder / "audio" / "truncated.mp3").write_bytes(data[: len(data) // 4])
    (folder / "audio" / "stub.mp3").write_bytes(data[:2000])
    return folder / "audio"


def test_a_truncated_mp3_decodes_to_its_real_length(truncated_mp3):
    decoded = decode_audio(truncated_mp3 / "truncated.mp3")
    assert decoded.header_seconds == pytest.approx(60.0, abs=0.1)
    assert abs(decoded.seconds - 15.0) < 1.0
    assert "damaged" in decoded.damage
    assert decode_audio(truncated_mp3 / "stub.mp3").seconds < 1.0


def test_a_truncated_mp3_is_indexed_with_its_true_duration_and_a_warning(truncated_mp3, tmp_path, capsys):
    db = tmp_path / "index.db"
    main(["index", str(truncated_mp3), "--db", str(db), "--quiet"])
    assert "damaged" in capsys.readouterr().err
    store = IndexStore.open(db)
    by_name = {r.name: r for r in store.recordings()}
    store.close()
    assert abs(by_name["truncated"].duration - 15.0) < 1.0
    assert "damaged" in by_name["truncated"].error
    assert (by_name["stub"].duration or 0.0) < 1.0
    assert main(["status", "--db", str(db), "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert {w["path"].rsplit("/", 1)[1] for w in warnings} >= {"truncated.mp3"}


def test_decoder_warnings_name_the_file(truncated_mp3, capfd):
    decode_audio(truncated_mp3 / "truncated.mp3")
    err = capfd.readouterr().err
    assert err, "the truncated file makes the MP3 decoder complain"
    assert all("truncated.mp3" in line for line in err.splitlines() if line.strip())


# -- a damaged vector file: a one-line error for readers, rebuilt by the next index run ---------------------


def _copy_index(indexed, tmp_path):
    import shutil

    for suffix in ("", ".faiss"):
        shutil.copy(f"{indexed}{suffix}", tmp_path / f"index.db{suffix}")
    return tmp_path / "index.db"


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_a_damaged_vector_file_is_reported_then_rebuilt(indexed, rendered_dir, tmp_path, capsys, damage):
    db = _copy_index(indexed, tmp_path)
    faiss_file = tmp_path / "index.db.faiss"
    data = faiss_file.read_bytes()
    if damage == "truncate":
        faiss_file.write_bytes(data[: len(data) // 2])
    else:  # same size, other bytes
        faiss_file.write_bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes())
    theme = rendered_dir.parent / "theme.musicxml"
    from retrieval.theme import parse_corpus_work

    parse_corpus_work("haydn/opus74no1/movement3").measures(9, 12).parts[0].write("musicxml", fp=theme)
    for command in (["status", "--db", str(db)], ["query", str(theme), "--db", str(db)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "index.db.faiss: damaged vector file" in err, err
    assert main(["index", str(rendered_dir), "--db", str(db), "--quiet"]) == 0
    assert "rebuilding it from the stored features" in capsys.readouterr().err
    assert main(["query", str(theme), "--db", str(db), "--json"]) == 0
    best = json.loads(capsys.readouterr().out)["matches"][0]
    assert best["path"].endswith("haydn_op74.wav")


# -- read-only indexes: status, list and query answer from a read-only mount ------------------------------


def _read_only_mount_works() -> bool:
    import subprocess

    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind -o ro / /mnt"], capture_output=True)
    return probe.returncode == 0


def test_a_read_only_index_answers_status_list_and_query(indexed, rendered_dir, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    if not _read_only_mount_works():
        pytest.skip("cannot make a read-only bind mount here (unshare -m / mount refused): read-only index unchecked")
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    db = _copy_index(indexed, src)
    theme = tmp_path / "theme.musicxml"
    from retrieval.theme import parse_corpus_work

    parse_corpus_work("haydn/opus74no1/movement3").measures(9, 12).parts[0].write("musicxml", fp=theme)
    before = sorted(p.name for p in src.iterdir())
    cli = Path(__file__).resolve().parents[2] / "cli.py"
    rodb = ro / db.name
    script = (f"mount --bind -o ro {src} {ro} && "
              f"{sys.executable} {cli} status --db {rodb} --json >{tmp_path}/status.json && "
              f"{sys.executable} {cli} list --db {rodb} >{tmp_path}/list.txt && "
              f"{sys.executable} {cli} query {theme} --db {rodb} --json >{tmp_path}/query.json")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "status.json").read_text())["recordings"] == 5
    assert "haydn_op74.wav" in (tmp_path / "list.txt").read_text()
    assert json.loads((tmp_path / "query.json").read_text())["matches"][0]["path"].endswith("haydn_op74.wav")
    assert sorted(p.name for p in src.iterdir()) == before  # nothing written: no lock, no -shm, no -wal


def test_the_vector_file_has_the_database_permissions(indexed):
    import os

    db_mode = os.stat(indexed).st_mode & 0o777
    assert os.stat(f"{indexed}.faiss").st_mode & 0o777 == db_mode


# -- huge themes are bounded -------------------------------------------------------------------------------


def _long_score(path, n_notes: int, parts: int = 1) -> None:
    import music21

    score = music21.stream.Score()
    for p in range(parts):
        part = music21.stream.Part()
        part.partName = f"Voice {p + 1}"
        part.append(music21.tempo.MetronomeMark(number=240))
        for i in range(n_notes):
            part.append(music21.note.Note(60 + (i * 7 + p) % 12, quarterLength=0.25))
        score.insert(0, part)
    score.write("musicxml", fp=path)


def test_a_theme_with_too_many_notes_is_refused_in_one_line(indexed, tmp_path, capsys, monkeypatch):
    import retrieval.theme

    monkeypatch.setattr(retrieval.theme, "MAX_THEME_NOTES", 300)
    theme = tmp_path / "huge.musicxml"
    _long_score(theme, 200, parts=2)
    assert main(["query", str(theme), "--db", str(indexed)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "400 notes, too many for a theme" in err and "--measures" in err
    assert main(["query", str(theme), "--db", str(indexed), "--part", "Voice 2", "--json"]) == 0  # one part fits
    capsys.readouterr()
    whole = retrieval.theme.load_theme(theme, whole_score=True)  # rendering and training labels: not a theme
    assert len(whole.notes) == 400


def test_a_theme_longer_than_every_recording_is_refused(indexed, tmp_path, capsys):
    theme = tmp_path / "long.musicxml"
    _long_score(theme, 2000)  # 2000 sixteenths at 240 bpm: 125 s, 62 s at the fastest tempo; recordings ≤ 50 s
    assert main(["query", str(theme), "--db", str(indexed)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "longer than every recording" in err


def test_parsing_is_bounded_in_time(tmp_path, monkeypatch):
    import retrieval.theme
    from retrieval.theme import ThemeError, load_theme

    theme = tmp_path / "slow.musicxml"
    _long_score(theme, 3000)
    monkeypatch.setattr(retrieval.theme, "PARSE_SECONDS", 0.05)
    with pytest.raises(ThemeError, match="parsing took longer than"):
        load_theme(theme)


def test_the_timing_line_includes_reading_the_theme(indexed, tmp_path, capsys):
    theme = tmp_path / "t.musicxml"
    _long_score(theme, 16)
    assert main(["query", str(theme), "--db", str(indexed), "--json"]) == 0
    timings = json.loads(capsys.readouterr().out)["timings"]
    assert timings["parse"] > 0
    assert timings["total"] >= timings["parse"] + timings["ann"] + timings["rerank"]


def test_an_unknown_part_lists_the_part_names(indexed, tmp_path, capsys):
    theme = tmp_path / "t.musicxml"
    _long_score(theme, 16, parts=2)
    assert main(["query", str(theme), "--db", str(indexed), "--part", "nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "parts are 0: Voice 1, 1: Voice 2" in err


# -- smaller edges ----------------------------------------------------------------------------------------


def test_symlink_loops_are_reported_and_outside_links_can_be_left_out(rendered_dir, tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "haydn.wav").symlink_to(rendered_dir / "haydn_op74.wav")  # points outside the collection
    (audio / "a.wav").symlink_to(audio / "b.wav")
    (audio / "b.wav").symlink_to(audio / "a.wav")  # a loop
    db = tmp_path / "index.db"
    assert main(["index", str(audio), "--db", str(db), "--quiet", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    failed = {f["path"].rsplit("/", 1)[1]: f["error"] for f in report["failures"]}
    assert set(failed) == {"a.wav", "b.wav"} and all("symbolic links" in e for e in failed.values())
    assert report["added"] == 1
    other = tmp_path / "other.db"
    assert main(["index", str(audio), "--db", str(other), "--quiet", "--json", "--no-follow-symlinks"]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 0


def test_plot_into_a_missing_folder_fails_before_searching(indexed, tmp_path, capsys):
    theme = tmp_path / "t.musicxml"
    _long_score(theme, 16)
    assert main(["query", str(theme), "--db", str(indexed), "--plot", str(tmp_path / "nope" / "m.png")]) == 2
    captured = capsys.readouterr()
    assert "no such folder" in captured.err and captured.out == ""


def test_plot_checks_its_format_first_and_says_where_it_wrote(indexed, tmp_path, capsys):
    theme = tmp_path / "t.musicxml"
    _long_score(theme, 16)
    assert main(["query", str(theme), "--db", str(indexed), "--plot", str(tmp_path / "m.db")]) == 2
    captured = capsys.readouterr()
    assert "--plot" in captured.err and ".png" in captured.err and captured.out == ""
    assert not (tmp_path / "m.db").exists()
    folder = tmp_path / "plots"
    folder.mkdir()
    assert main(["query", str(theme), "--db", str(indexed), "--plot", str(folder), "--json"]) == 0
    captured = capsys.readouterr()
    written = folder / "t_match.png"
    assert written.read_bytes()[:4] == b"\x89PNG" and f"plot: {written}" in captured.err
    json.loads(captured.out)  # the JSON on stdout stays clean
    assert not Path(f"{folder}.png").exists()


def test_a_truncated_wav_is_indexed_with_a_warning_and_a_tiny_mp3_is_not_called_missing(truncated_mp3, tmp_path,
                                                                                         capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    t = np.arange(SR * 20) / SR
    sf.write(audio / "whole.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)
    data = (audio / "whole.wav").read_bytes()
    (audio / "whole.wav").unlink()
    (audio / "cut.wav").write_bytes(data[: len(data) // 4])
    (audio / "tiny.mp3").write_bytes((truncated_mp3 / "truncated.mp3").read_bytes()[:500])
    db = tmp_path / "index.db"
    assert main(["index", str(audio), "--db", str(db), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "cut.wav" in err and "damaged (truncated?): decoded 5.0 s of the 20.0 s" in err
    assert "tiny.mp3: not a decodable audio file (no audio format recognised" in err
    assert "does not exist" not in err


def test_a_folder_is_neither_a_theme_nor_an_index(indexed, tmp_path, capsys):
    assert main(["query", str(tmp_path), "--db", str(indexed)]) == 2
    assert "is a folder, not a score file" in capsys.readouterr().err
    assert main(["status", "--db", str(tmp_path)]) == 2
    assert "is a folder; give the index database file" in capsys.readouterr().err


def test_list_into_a_closed_pipe_ends_quietly(indexed):
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(__file__).resolve().parents[2] / "cli.py"
    proc = subprocess.Popen([sys.executable, str(cli), "list", "--db", str(indexed), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the first line is written (as `| head` after its lines)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0
    assert "Broken pipe" not in err and "Traceback" not in err, err
