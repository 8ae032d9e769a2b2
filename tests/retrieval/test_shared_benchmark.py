"""Real recordings of ../shared/data: score queries of the bach_violin benchmark find their recording."""

from __future__ import annotations

import json

import pytest

from cli import main

from ..conftest import SHARED

BACH = SHARED / "data" / "bach_violin" / "audio"
GROUND_TRUTH = SHARED / "benchmarks" / "bach_violin" / "ground_truth.csv"


@pytest.fixture(scope="module")
def real_index(tmp_path_factory):
    if not (BACH.is_dir() and GROUND_TRUTH.is_file()):
        pytest.skip(f"bach_violin data not found under {SHARED} (../shared is absent)")
    folder = tmp_path_factory.mktemp("real")
    for audio in [*BACH.glob("*.mp3"), *BACH.glob("*.opus"), *(SHARED / "data" / "recordings").glob("*.wav")]:
        (folder / audio.name).symlink_to(audio)
    db = folder.parent / "real.db"
    assert main(["index", str(folder), "--db", str(db), "-q", "--workers", "1"]) == 0
    return db


def test_bach_violin_queries_find_their_recording(real_index, tmp_path, capsys):
    subset = tmp_path / "ground_truth.csv"
    lines = GROUND_TRUTH.read_text().splitlines()
    rows = [line.replace("queries/", str(GROUND_TRUTH.parent / "queries") + "/") for line in lines[1::4]]
    subset.write_text("\n".join([lines[0], *rows]) + "\n")
    assert main(["evaluate", str(subset), "--db", str(real_index), "--json", "-q"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert metrics["queries"] == 27 and metrics["not_in_collection"] == 0
    assert metrics["top1"] >= 0.75 and metrics["mrr"] >= 0.8, metrics


def test_single_query_json(real_index, capsys):
    query = GROUND_TRUTH.parent / "queries" / "oliver-colbentson_bwv1006_mov7_q4_n10.musicxml"
    assert main(["query", str(query), "--db", str(real_index), "--json", "--top", "3"]) == 0
    best = json.loads(capsys.readouterr().out)["matches"][0]
    assert best["path"].endswith("oliver-colbentson_bwv1006_mov7.mp3")
    assert abs(best["start"] - 75.49) < 2.0
