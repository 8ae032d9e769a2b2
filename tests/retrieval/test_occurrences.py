"""Every occurrence, note by note, and a recording as the query: planted themes in generated audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cli import main
from db.store import IndexStore
from models.frontend import SAMPLE_RATE
from retrieval.dtw import subsequence_align, subsequence_matches, subsequence_path
from retrieval.excerpt import SELF_SIMILARITY
from retrieval.query import query
from retrieval.soundfont import render_notes
from retrieval.theme import NoteEvent, Theme

NOTE = 0.3  # seconds per theme note at its nominal tempo
MELODY = [67, 72, 76, 74, 71, 67, 69, 77, 76, 72, 74, 79, 78, 74]
THEME = Theme(tuple(NoteEvent(NOTE * i, NOTE, p, 40, 0, i / 2, 0.5, 1 + i // 8, 1 + (i % 8) / 2)
                    for i, p in enumerate(MELODY)), "planted theme")
PLANTED_AT = (9.0, 24.0, 41.0)  # seconds where the theme starts in the recording with three occurrences
SLOWER_FROM = 7  # in the tempo-change recording, notes from this one on last 1.8 times longer
SLOW_START = 6.0


def _filler(start: float, end: float, seed: int) -> list[NoteEvent]:
    """Random notes of random lengths (0.15–0.6 s) over two octaves below the theme's register."""
    rng = np.random.default_rng(seed)
    notes, t = [], start
    while t < end:
        length = float(rng.uniform(0.15, 0.6))
        notes.append(NoteEvent(t, length, int(rng.integers(48, 62)), 40))
        t += length
    return notes


def _theme_at(start: float, stretch_from: int | None = None,
              factor: float = 1.0) -> tuple[list[NoteEvent], list[float]]:
    """The theme played from ``start``; notes from ``stretch_from`` on ``factor`` times longer. Also the onsets."""
    notes, onsets, t = [], [], start
    for i, n in enumerate(THEME.notes):
        length = NOTE * (factor if stretch_from is not None and i >= stretch_from else 1.0)
        notes.append(NoteEvent(t, length, n.pitch, 40))
        onsets.append(t)
        t += length
    return notes, onsets


def _write(path: Path, notes: list[NoteEvent]) -> None:
    sf.write(path, render_notes(sorted(notes, key=lambda n: n.onset), SAMPLE_RATE, tail=0.5), SAMPLE_RATE)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """An index of three generated recordings: the theme three times amid random notes (``three``),
    once with a tempo change inside it (``slower``), and only random notes (``none``)."""
    from indexer.build import index_collection

    folder = tmp_path_factory.mktemp("planted")
    notes = _filler(0, 50, seed=1)
    notes = [n for n in notes if not any(s - 0.5 < n.onset < s + NOTE * len(MELODY) + 0.3 for s in PLANTED_AT)]
    for start in PLANTED_AT:
        notes += _theme_at(start)[0]
    _write(folder / "three.wav", notes)
    slow, onsets = _theme_at(SLOW_START, SLOWER_FROM, 1.8)
    end = onsets[-1] + 1.8 * NOTE
    _write(folder / "slower.wav", _filler(0, SLOW_START - 0.5, seed=2) + slow + _filler(end + 0.5, end + 10, seed=3))
    _write(folder / "none.wav", _filler(0, 30, seed=4))
    db = folder / "index.db"
    report = index_collection(folder, db, progress=False)
    assert len(report.added) == 3 and not report.failed
    store = IndexStore.open(db, readonly=True)
    yield store, folder, onsets
    store.close()


def test_matches_of_the_matching_function_are_separate_and_the_best_is_the_alignment():
    rng = np.random.default_rng(0)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    q = unit(rng.random((30, 12)) ** 4)
    noise = lambda n: unit(rng.random((n, 12)) ** 4)  # noqa: E731
    target = np.concatenate([noise(50), q, noise(40), q, noise(20), q.repeat(2, axis=0), noise(30)])
    found = subsequence_matches(q, target, 0.9)
    spans = sorted((a.start, a.end) for a in found)
    assert len(spans) == 3 and np.abs(np.array(spans) - [(50, 79), (120, 149), (170, 229)]).max() <= 1, spans
    assert found[0] == subsequence_align(q, target)
    alignment, path = subsequence_path(q, target)
    assert alignment == found[0] and path[0].tolist() == [0, 50] and path[-1].tolist() == [29, 79]
    assert np.all(np.diff(path, axis=0) >= 0)


def test_the_planted_occurrences_are_found_and_nothing_else(planted):
    store, _, _ = planted
    result = query(store, THEME, occurrences=True)
    found = [o for o in result.occurrences if Path(o.path).name != "slower.wav"]
    assert [Path(o.path).name for o in found] == ["three.wav"] * 3, result.occurrences  # none in none.wav
    slower = [o for o in result.occurrences if Path(o.path).name == "slower.wav"]  # the theme, slowing down
    assert all(abs(o.start - SLOW_START) < 0.3 for o in slower), slower
    starts = sorted(o.start for o in found)
    assert np.allclose(starts, PLANTED_AT, atol=0.3), starts
    for o in found:
        assert o.end - o.start == pytest.approx(NOTE * len(MELODY), abs=0.4) and o.measures == (1, 2)
    # one span per recording without the option; the first match's own span is one of the occurrences
    plain = query(store, THEME)
    assert not plain.matches[0].occurrences and "occurrences" not in plain.as_dict()
    assert any(o.start == plain.matches[0].start for o in found if o.path == plain.matches[0].path)


def test_a_low_min_score_lists_more_places_and_each_above_it(planted):
    store, _, _ = planted
    found = query(store, THEME, occurrences=True, min_score=0.5).occurrences
    assert len(found) > 3 and all(o.score >= 0.5 for o in found)
    assert [o.score for o in found] == sorted((o.score for o in found), reverse=True)
    for a in found:  # no two places of one recording overlap
        assert not any(b is not a and b.path == a.path and b.start < a.end and a.start < b.end for b in found)


def test_note_times_follow_a_tempo_change(planted):
    store, _, onsets = planted
    match = next(m for m in query(store, THEME, top=3).matches if Path(m.path).name == "slower.wav")
    times = [n.time for n in match.notes]
    assert len(times) == len(MELODY)
    errors = np.abs(np.array(times) - np.array(onsets))
    assert np.median(errors) < 0.1 and errors.max() < 0.25, errors
    assert [(n.measure, n.beat, n.pitch) for n in match.notes[:2]] == [(1, 1.0, 67), (1, 1.5, 72)]


def test_an_excerpt_of_an_indexed_recording_finds_it_at_the_right_span(planted, tmp_path, capsys):
    store, folder, _ = planted
    audio, rate = sf.read(folder / "three.wav")
    start, end = 22.0, 30.0
    excerpt = tmp_path / "excerpt.flac"
    sf.write(excerpt, audio[int(start * rate): int(end * rate)], rate)
    result = query(store, excerpt)
    best = result.matches[0]
    assert Path(best.path).name == "three.wav" and best.confident
    assert best.start == pytest.approx(start, abs=0.3) and best.end == pytest.approx(end, abs=0.5)
    assert not best.notes and result.as_dict()["query_kind"] == "audio"
    # the same audio is its own source: left out on request
    assert all(Path(m.path).name != "three.wav" for m in query(store, excerpt, exclude_self=True).matches)
    assert main(["query", str(excerpt), "--db", str(store.path), "--json", "--top", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["matches"][0]["path"].endswith("three.wav")


def test_bad_audio_queries_give_one_line(planted, tmp_path, capsys):
    store, _, _ = planted
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(SAMPLE_RATE // 2, np.float32), SAMPLE_RATE)
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"\x00\x01 not audio" * 20)
    cases = {short: "a query needs at least", garbage: "not a decodable audio file",
             tmp_path / "missing.flac": "no such file", tmp_path / "song.m4a": "not supported"}
    (tmp_path / "song.m4a").write_bytes(b"....")
    for path, expected in cases.items():
        assert main(["query", str(path), "--db", str(store.path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err and str(path) in err, err


def test_another_performance_of_the_excerpt_is_not_its_source(planted, tmp_path):
    store, _, _ = planted
    notes = [NoteEvent(0.5 + 1.08 * n.onset, 1.08 * n.duration, n.pitch, 40) for n in THEME.notes]
    other = tmp_path / "other_performance.wav"  # the theme alone, 8 % slower: as close as the score allows
    _write(other, notes)
    assert query(store, other).matches[0].score >= SELF_SIMILARITY
    best = query(store, other, exclude_self=True).matches[0]
    assert Path(best.path).name == "three.wav", best


def test_same_audio_needs_the_frames_unwarped():
    from retrieval.query import _same_audio

    rng = np.random.default_rng(3)
    frames = rng.random((200, 12)) ** 4
    frames /= np.linalg.norm(frames, axis=1, keepdims=True)
    excerpt = frames[80:140]
    assert _same_audio(excerpt, frames)
    returned = np.concatenate([frames, excerpt * 0.9 + 0.1 * frames[:60]])  # a looser return of the passage
    assert _same_audio(excerpt, returned)  # found at its first statement, wherever the alignment went
    assert not _same_audio(excerpt, frames[:100])  # only part of it there
    warped = np.repeat(excerpt, [2 if i % 5 == 0 else 1 for i in range(60)], axis=0)[:60]
    assert not _same_audio(warped, frames)
