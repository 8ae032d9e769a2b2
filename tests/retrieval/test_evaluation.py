"""Evaluation metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import RetrievalError
from retrieval.evaluation import (
    QueryOutcome,
    hit_rate,
    mean_reciprocal_rank,
    paired_bootstrap,
    rank_of,
    reciprocal_rank,
    span_overlap_rate,
    spans_overlap,
    summarize,
)
from retrieval.ground_truth import read_ground_truth

RANKINGS = [["a", "b", "c"], ["b", "a", "c"], ["c", "b", "a"], ["b", "c", "d"]]
RELEVANT = ["a", "a", "a", "a"]  # ranks 1, 2, 3, missing


def test_reciprocal_ranks_by_hand():
    assert [rank_of(r, "a") for r in RANKINGS] == [1, 2, 3, None]
    assert [reciprocal_rank(r, "a") for r in RANKINGS] == [1.0, 0.5, pytest.approx(1 / 3), 0.0]
    assert mean_reciprocal_rank(RANKINGS, RELEVANT) == pytest.approx((1 + 0.5 + 1 / 3 + 0) / 4)
    assert mean_reciprocal_rank([], []) == 0.0


def test_hit_rates_by_hand():
    assert hit_rate(RANKINGS, RELEVANT, 1) == 0.25
    assert hit_rate(RANKINGS, RELEVANT, 2) == 0.5
    assert hit_rate(RANKINGS, RELEVANT, 10) == 0.75
    with pytest.raises(ValueError):
        hit_rate(RANKINGS, RELEVANT, 0)
    with pytest.raises(ValueError, match="4 rankings but 3"):
        mean_reciprocal_rank(RANKINGS, RELEVANT[:3])


def test_span_overlap_by_hand():
    assert spans_overlap((1.0, 3.0), (2.0, 5.0)) and spans_overlap((2.0, 5.0), (1.0, 3.0))
    assert spans_overlap((1.0, 10.0), (4.0, 5.0))
    assert not spans_overlap((1.0, 2.0), (2.0, 3.0))  # touching is not overlapping
    assert not spans_overlap((5.0, 6.0), (1.0, 2.0))
    assert span_overlap_rate([(0, 1), (0, 1), (5, 6)], [(0.5, 2), (3, 4), (5.5, 7)]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        spans_overlap((3.0, 1.0), (0.0, 1.0))


def test_summary_counts_misses_and_only_correct_top1_spans():
    outcomes = [
        QueryOutcome("q1", "a", ("a", "b"), (1.0, 2.0), (1.5, 3.0), seconds=0.1),
        QueryOutcome("q2", "a", ("a",), (8.0, 9.0), (1.0, 2.0), seconds=0.3),
        QueryOutcome("q3", "a", ("b", "a"), (1.0, 2.0), (1.0, 2.0), seconds=0.2),  # wrong top-1: no span check
        QueryOutcome("q4", "z", ("b", "a"), None, None, seconds=0.2, in_collection=False),
    ]
    s = summarize(outcomes)
    assert s["mrr"] == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    assert s["top1"] == 0.5 and s["top5"] == 0.75
    assert s["top1_with_times"] == 2 and s["top1_span_overlap"] == 0.5
    assert s["not_in_collection"] == 1
    assert s["mean_query_seconds"] == pytest.approx(0.2)


def test_ground_truth_reading(tmp_path):
    csv = tmp_path / "gt.csv"
    csv.write_text("query_id,query,recording,start_s,end_s\nq1,queries/a.musicxml,rec,1.0,2.0\n")
    rows = read_ground_truth(csv)
    assert rows[0]["query"] == str(tmp_path / "queries" / "a.musicxml") and rows[0]["recording"] == "rec"
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_ground_truth(bad)
    with pytest.raises(RetrievalError, match="no such ground-truth file"):
        read_ground_truth(tmp_path / "none.csv")


def test_evaluate_cli_on_the_generated_collection(indexed, tmp_path, capsys):
    import json

    from cli import main
    from retrieval.theme import parse_corpus_work

    (tmp_path / "q").mkdir()
    haydn = parse_corpus_work("haydn/opus74no1/movement3")
    haydn.measures(9, 12).parts[0].write("musicxml", fp=tmp_path / "q/h.musicxml")
    parse_corpus_work("joplin/maple_leaf_rag").measures(5, 8).write("musicxml", fp=tmp_path / "q/j.musicxml")
    (tmp_path / "gt.csv").write_text(
        "query_id,query,recording,start_s,end_s\n"
        "h,q/h.musicxml,haydn_op74,12.0,18.0\nj,q/j.musicxml,joplin_maple_leaf,,\nx,q/j.musicxml,not_indexed,,\n"
    )
    assert main(["evaluate", str(tmp_path / "gt.csv"), "--db", str(indexed), "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    m = report["metrics"]
    assert m["queries"] == 3 and m["not_in_collection"] == 1
    assert m["mrr"] == pytest.approx(2 / 3) and m["top1"] == pytest.approx(2 / 3)
    assert m["top1_with_times"] == 1 and m["top1_span_overlap"] == 1.0
    assert [q["rank"] for q in report["queries"]] == [1, 1, None]
    assert main(["evaluate", str(tmp_path / "gt.csv"), "--db", str(indexed), "-q"]) == 0
    table = capsys.readouterr().out.splitlines()
    x_row = next(line for line in table if line.startswith("x "))  # its recording is not indexed: a wrong top-1
    assert x_row.endswith("(wrong recording)") and not any(line.startswith(("h ", "j ")) and "wrong" in line
                                                           for line in table)
    assert any(line.startswith("where: of the 1 right first answers") for line in table)


def test_paired_bootstrap_of_identical_shifted_and_noisy_scores():
    a = [1.0, 0.5, 0.0, 1 / 3, 1.0, 0.25]
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)
    diff, low, high = paired_bootstrap(a, [x + 0.1 for x in a])  # every query 0.1 better: no doubt at all
    assert diff == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)
    rng = np.random.default_rng(0)
    noisy_a, noisy_b = rng.random(100), rng.random(100)  # unrelated systems: an interval around their gap
    diff, low, high = paired_bootstrap(noisy_a, noisy_b)
    assert low < diff < high and 0.05 < high - low < 0.4
    wide = paired_bootstrap(noisy_a, noisy_b, confidence=0.99)
    assert wide[1] < low and wide[2] > high


def test_paired_bootstrap_validates():
    with pytest.raises(RetrievalError):
        paired_bootstrap([1.0], [1.0, 0.5])
    with pytest.raises(RetrievalError):
        paired_bootstrap([], [])
    with pytest.raises(RetrievalError):
        paired_bootstrap([1.0], [0.5], confidence=1.5)
