"""Score queries against a generated collection: ranking, time span, transposition, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import main
from db.store import IndexStore
from models.errors import ParameterError
from retrieval.options import CONFIDENCE_THRESHOLD
from retrieval.query import query
from retrieval.theme import ThemeError, load_theme, parse_corpus_work

from ..conftest import PIECES

# (piece, work, measures of the theme, part or None for all parts)
THEMES = [
    ("haydn_op74", "haydn/opus74no1/movement3", (9, 12), 0),
    ("joplin_maple_leaf", "joplin/maple_leaf_rag", (5, 8), None),
    ("schumann_op17", "schumann_clara/opus17/movement3", (5, 8), None),
    ("schubert_lindenbaum", "schubert/lindenbaum", (9, 11), 0),
]


@pytest.fixture(scope="module")
def store(indexed):
    store = IndexStore.open(indexed)
    yield store
    store.close()


@pytest.mark.parametrize("name, work, measures, part", THEMES)
def test_theme_is_found_first_at_the_right_time(store, name, work, measures, part):
    score = parse_corpus_work(work)
    result = query(store, score, measures=measures, part=part, top=3)
    best = result.matches[0]
    assert Path(best.path).stem == name
    # the collection renders measures 1.. at the nominal tempo: the theme starts where the score says
    assert abs(best.start - result.theme.start) < 2.0
    assert abs(best.end - (result.theme.start + result.theme.duration)) < 2.0
    assert best.score > result.matches[1].score
    exact = query(store, score, measures=measures, part=part, top=1, exhaustive=True)
    assert Path(exact.matches[0].path).stem == name


def test_synthesised_rendering_finds_the_theme(store):
    result = query(store, parse_corpus_work("haydn/opus74no1/movement3"), measures=(9, 12), rendering="synthesised",
                   top=2)
    assert Path(result.matches[0].path).stem == "haydn_op74"
    assert abs(result.matches[0].start - result.theme.start) < 2.0


def test_transposed_theme_needs_transpose(store, tmp_path, capsys):
    theme = tmp_path / "haydn_up3.musicxml"
    parse_corpus_work("haydn/opus74no1/movement3").measures(9, 12).parts[0].transpose(3).write("musicxml", fp=theme)
    assert main(["query", str(theme), "--db", str(store.path), "--json", "--top", "5"]) == 0
    plain = json.loads(capsys.readouterr().out)["matches"][0]
    # in the wrong key nothing matches well: the best (whichever it is) is weak and not confident
    assert not plain["confident"] and plain["score"] < CONFIDENCE_THRESHOLD
    assert main(["query", str(theme), "--db", str(store.path), "--json", "--transpose", "--top", "5"]) == 0
    found = json.loads(capsys.readouterr().out)
    best = found["matches"][0]
    assert Path(best["path"]).stem == "haydn_op74" and best["transposition"] == 9  # 3 up + 9 up = an octave
    assert {"rank", "score", "confident", "recording_id", "path", "start", "end"} <= set(best)
    assert best["confident"] and best["score"] > plain["score"] + 0.2
    assert main(["query", str(theme), "--db", str(store.path), "--transpose", "--top", "1"]) == 0
    assert "haydn_op74.wav  (theme -3 semitones)  (confident)" in capsys.readouterr().out  # written 3 too high


def test_cli_table_and_plot(store, tmp_path, capsys):
    theme = tmp_path / "theme.mid"
    parse_corpus_work("joplin/maple_leaf_rag").measures(5, 8).write("midi", fp=theme)
    png = tmp_path / "match.png"
    assert main(["query", str(theme), "--db", str(store.path), "--top", "3", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("1 ")]
    assert lines and "joplin_maple_leaf" in lines[0]
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_confidence_flag_separates_a_foreign_theme(store):
    found = query(store, parse_corpus_work("haydn/opus74no1/movement3"), measures=(9, 12), part=0, top=1)
    foreign = query(store, parse_corpus_work("bach/bwv66.6"), measures=(1, 3), part=0, top=1)
    assert found.confident and found.matches[0].margin >= 0.06
    assert not foreign.confident and foreign.matches[0].score < 0.7


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


REST_ONLY = """<?xml version="1.0" encoding="UTF-8"?>
<score-partwise version="3.1"><part-list><score-part id="P1"><part-name>V</part-name></score-part></part-list>
<part id="P1"><measure number="1"><attributes><divisions>1</divisions></attributes>
<note><rest/><duration>4</duration></note></measure></part></score-partwise>"""


def test_bad_themes_give_one_line_errors(store, tmp_path, capsys):
    cases = {
        "no such file": tmp_path / "missing.musicxml",
        "not a readable score": _write(tmp_path / "notes.xml", "this is not music"),
        "no notes": _write(tmp_path / "rests.musicxml", REST_ONLY),
    }
    for expected, path in cases.items():
        assert main(["query", str(path), "--db", str(store.path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err and str(path) in err, err
    theme = tmp_path / "t.musicxml"
    parse_corpus_work("haydn/opus74no1/movement3").measures(1, 4).write("musicxml", fp=theme)
    for args, expected in ((["--part", "7"], "part index 7 out of range"), (["--part", "Tuba"], "no part named"),
                           (["--measures", "x-y"], "measures must look like A-B"),
                           (["--measures", "400-401"], "are not all in the score (its measures: 1-4)")):
        assert main(["query", str(theme), "--db", str(store.path), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    with pytest.raises(ThemeError, match="no notes"):
        load_theme(cases["no notes"])


def test_collection_has_all_pieces(store):
    assert sorted(r.name for r in store.recordings("indexed")) == sorted(PIECES)


def test_demo_main_job_and_the_readme_example(rendered_dir, tmp_path, capsys, monkeypatch):
    import re
    import shutil

    demo = tmp_path / "demo"
    shutil.copytree(rendered_dir, demo / "audio")  # the demo keeps existing renderings
    assert main(["demo", "--dir", str(demo), "-q", "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{"):])
    best = result["matches"][0]
    assert Path(best["path"]).stem == "haydn_op74" and best["confident"] and result["confident_match"]
    assert abs(best["start"] - 12.0) < 2.0  # bar 9 of a 3/4 movement at ♩ = 120
    index_bytes = (demo / "index.db").read_bytes()
    assert main(["demo", "--dir", str(demo), "-q"]) == 0  # the folder is kept: a second run reuses it
    out = capsys.readouterr().out
    assert "0 added, 5 unchanged, 0 failed" in out and "haydn_op74" in out
    assert f"python cli.py serve --db {demo / 'index.db'}" in out  # the next steps name the kept index
    assert (demo / "index.db").read_bytes() == index_bytes
    # the README's Python example, run where the demo left its folder
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md", "exec"), {})
    first = capsys.readouterr().out.splitlines()[0].split()
    assert first[0] == "1" and first[2] == "True" and Path(first[3]).stem == "haydn_op74"


def test_several_themes_in_one_call_equal_single_calls(store, tmp_path, capsys):
    themes = []
    for name, work, measures, part in THEMES:
        score = parse_corpus_work(work).measures(*measures)
        path = tmp_path / f"{name}.musicxml"
        (score.parts[part] if part is not None else score).write("musicxml", fp=path)
        themes.append(path)
    assert main(["query", *map(str, themes), "--db", str(store.path), "--json", "--top", "3"]) == 0
    together = json.loads(capsys.readouterr().out)
    assert len(together) == len(THEMES)  # one batched FAISS search, re-ranked on the thread pool
    for theme, answer in zip(themes, together, strict=True):
        assert main(["query", str(theme), "--db", str(store.path), "--json", "--top", "3"]) == 0
        alone = json.loads(capsys.readouterr().out)
        assert answer["matches"] == alone["matches"]


def test_status_reports_bytes_per_audio_hour(store, capsys):
    assert main(["status", "--db", str(store.path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    on_disk = stats["db_bytes"] + stats["faiss_bytes"] + stats["frames_bytes"]
    assert stats["frames_bytes"] > 0 and stats["bytes_per_audio_hour"] == pytest.approx(on_disk / stats["hours"])


def test_neighbours_reach_the_ann_stage_and_are_validated(store):
    score = parse_corpus_work(THEMES[1][1])
    default = query(store, score, measures=THEMES[1][2], top=1)
    one = query(store, score, measures=THEMES[1][2], top=1, neighbours=1)
    # with one neighbour a shingle's floor is its own best hit: the ANN score is the mean of those
    assert one.matches[0].ann_score != default.matches[0].ann_score
    with pytest.raises(ParameterError, match="neighbours"):
        query(store, score, measures=THEMES[1][2], neighbours=0)
