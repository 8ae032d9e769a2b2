"""Bounded fuzzing: mutated audio files and themes through ``index`` and ``query``, and mutated
uploads and JSON bodies through the HTTP API.

Whatever the bytes, each command ends with a result or a one-line error (never a traceback,
never a hang), each request with a result or a one-line 4xx (never a 500), and the index stays
sound: ``PRAGMA integrity_check`` passes and a known theme is still found first.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import time
from functools import partial

import music21
import numpy as np
import soundfile as sf

import retrieval.theme
from cli import main
from db.store import IndexStore
from models.tones import harmonic_tones
from retrieval.theme import parse_corpus_work

SEED = 20261126
CASES = 6  # mutations per seed file: the whole test takes seconds


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: cut short, flip bytes, splice garbage, zero the head."""
    data = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:
        return bytes(data[: int(rng.integers(1, max(2, len(data))))])
    if kind == 1:
        for i in rng.integers(0, len(data), max(1, len(data) // 200)):
            data[i] = int(rng.integers(256))
        return bytes(data)
    if kind == 2:
        at = int(rng.integers(len(data)))
        return bytes(data[:at] + rng.integers(0, 256, 64, dtype=np.uint8).tobytes() + data[at:])
    return bytes(64) + bytes(data[64:])


def _seed_audio() -> dict[str, bytes]:
    y = harmonic_tones([60, 64, 67, 72], note_seconds=0.4)
    out = {}
    for fmt, ext in (("WAV", "wav"), ("FLAC", "flac"), ("MP3", "mp3")):
        buffer = io.BytesIO()
        sf.write(buffer, y, 22050, format=fmt)
        out[ext] = buffer.getvalue()
    return out


def _seed_themes(tmp_path) -> dict[str, bytes]:
    stream = music21.stream.Stream([music21.note.Note(p, quarterLength=1) for p in ("C4", "E4", "G4", "C5")])
    out = {}
    for fmt, ext in (("musicxml", "musicxml"), ("midi", "mid")):
        path = tmp_path / f"seed.{ext}"
        stream.write(fmt, fp=path)
        out[ext] = path.read_bytes()
    out["abc"] = b"X:1\nT:seed\nM:4/4\nL:1/4\nK:C\nC E G c|G E C2|]\n"
    return out


def _one_line_or_result(code: int, err: str) -> None:
    assert code in (0, 1, 2), code
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if code == 2:
        assert len(errors) == 1, err


def test_mutated_audio_and_themes_never_break_index_or_query(indexed, rendered_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(retrieval.theme, "PARSE_SECONDS", 20.0)
    rng = np.random.default_rng(SEED)
    db = tmp_path / "index.db"
    for suffix in ("", ".faiss"):
        shutil.copy(f"{indexed}{suffix}", f"{db}{suffix}")
    collection = tmp_path / "audio"
    shutil.copytree(rendered_dir, collection)
    for ext, data in _seed_audio().items():
        for i in range(CASES):
            (collection / f"fuzz_{ext}_{i}.{ext}").write_bytes(_mutate(data, rng))
    code = main(["index", str(collection), "--db", str(db), "--quiet", "--workers", "1"])
    _one_line_or_result(code, capsys.readouterr().err)

    themes = tmp_path / "themes"
    themes.mkdir()
    for ext, data in _seed_themes(tmp_path).items():
        for i in range(CASES):
            theme = themes / f"fuzz_{i}.{ext}"
            theme.write_bytes(_mutate(data, rng))
            code = main(["query", str(theme), "--db", str(db), "--json"])
            _one_line_or_result(code, capsys.readouterr().err)

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    known = tmp_path / "haydn.musicxml"
    parse_corpus_work("haydn/opus74no1/movement3").measures(9, 12).parts[0].write("musicxml", fp=known)
    assert main(["query", str(known), "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["matches"][0]["path"].endswith("haydn_op74.wav")



def _mutated_json(rng: np.random.Generator) -> bytes:
    """A query body with one field given a hostile value, or the whole body's bytes mutated."""
    fields = {"text": "X:1\nM:4/4\nL:1/4\nK:C\nC E G c|G E C2|]\n", "format": "abc", "top": 3}
    hostile = [None, [], {}, [1], "x", -1, 0, 10**30, 1e400, -1e400, True, "1-99999999999999999999", "\u0000",
               "9" * 5000]
    kind = rng.integers(3)
    if kind == 0:
        key = ["text", "format", "top", "candidates", "measures", "part", "rendering", "transpose"][rng.integers(8)]
        fields[key] = hostile[rng.integers(len(hostile))]
        return json.dumps(fields).encode()
    if kind == 1:
        return _mutate(json.dumps(fields).encode(), rng)
    return json.dumps([fields] if rng.integers(2) else fields["text"]).encode()


def test_mutated_requests_never_get_a_500_or_hang(indexed, tmp_path):
    from fastapi.testclient import TestClient

    from web.app import create_app
    from web.workers import WorkerLimits

    rng = np.random.default_rng(SEED)
    seeds = _seed_themes(tmp_path)
    app = create_app(partial(IndexStore.open, indexed, readonly=True), workers=1, limits=WorkerLimits(seconds=30))
    with TestClient(app) as client:
        answers = []
        for i in range(4 * CASES):
            ext = list(seeds)[i % len(seeds)]
            t0 = time.monotonic()
            if i % 2:
                response = client.post("/api/query", content=_mutated_json(rng),
                                       headers={"Content-Type": "application/json"})
            else:
                response = client.post("/api/query", files={"theme": (f"fuzz.{ext}", _mutate(seeds[ext], rng))},
                                       data={"top": str(rng.integers(-5, 500)), "measures": "1-2" if i % 4 else ""})
            assert time.monotonic() - t0 < 60
            answers.append(response.status_code)
            assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
            if response.status_code != 200:
                assert "\n" not in response.json()["error"]
        assert 200 in answers and any(400 <= a < 500 for a in answers)
