"""Themes are parsed from their source, never through music21's pickle cache."""

from __future__ import annotations

import gzip
import os
import pickle

import music21
import pytest
from music21.converter import PickleFilter

from retrieval.theme import ThemeError, load_theme


def _write_theme(path, pitches: str) -> None:
    stream = music21.stream.Stream([music21.note.Note(p, quarterLength=1) for p in pitches.split()])
    stream.write("musicxml", fp=path)


class _Planted:
    """Unpickling this creates ``marker``: the proof that a cache pickle was executed."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _cache_path(score):
    return PickleFilter(score).getPickleFp(music21.environment.Environment().getRootTempDir(), zipType="gz")


def test_a_planted_cache_pickle_is_never_loaded(tmp_path):
    score, marker = tmp_path / "theme.musicxml", tmp_path / "pwned"
    _write_theme(score, "C4 E4 G4")
    cache = _cache_path(score)
    with gzip.open(cache, "wb") as f:
        pickle.dump(_Planted(str(marker)), f)
    future = score.stat().st_mtime + 100  # the cache looks newer than the score: music21 would load it
    os.utime(cache, (future, future))
    try:
        theme = load_theme(score)
    finally:
        cache.unlink(missing_ok=True)
    assert not marker.exists()
    assert [n.pitch for n in theme.notes] == [60, 64, 67]


def test_an_edited_score_is_read_again_and_no_cache_is_written(tmp_path):
    score = tmp_path / "s.musicxml"
    _write_theme(score, "C4 D4 E4")
    assert [n.pitch for n in load_theme(score).notes] == [60, 62, 64]
    assert not _cache_path(score).exists()
    stamp = score.stat().st_mtime
    _write_theme(score, "A4 B4 C5")
    os.utime(score, (stamp - 60, stamp - 60))  # `cp -p` of an older file: mtime goes back
    assert [n.pitch for n in load_theme(score).notes] == [69, 71, 72]
    assert not _cache_path(score).exists()


def test_pickle_files_and_folders_are_refused(tmp_path):
    pickled = tmp_path / "theme.p"
    pickled.write_bytes(pickle.dumps(_Planted(str(tmp_path / "pwned"))))
    with pytest.raises(ThemeError, match="pickle"):
        load_theme(pickled)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ThemeError, match="is a folder"):
        load_theme(tmp_path)
