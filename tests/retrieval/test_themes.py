"""Reading themes: formats, measure ranges, ties, grace notes, transposing instruments, repeats."""

from __future__ import annotations

import pytest

from retrieval.theme import ThemeError, parse_measures

ABC = """X:1
T:scale
M:4/4
L:1/4
Q:1/4=60
K:C
C D E F | G4 |]
"""

KERN = """**kern
*M4/4
*MM60
4c
4d
4e
4f
=
1g
==
*-
"""


@pytest.mark.parametrize("suffix, text", [(".abc", ABC), (".krn", KERN)])
def test_themes_from_abc_and_kern(tmp_path, suffix, text):
    from retrieval.theme import load_theme

    path = tmp_path / f"scale{suffix}"
    path.write_text(text)
    theme = load_theme(path)
    assert [n.pitch for n in theme.notes] == [60, 62, 64, 65, 67]
    assert [n.onset for n in theme.notes] == pytest.approx([0, 1, 2, 3, 4])  # ♩ = 60: one note per second
    assert theme.duration == pytest.approx(8.0)


def test_measure_ranges_as_users_write_them():
    assert parse_measures("5-12") == (5, 12) and parse_measures(" 7 ") == (7, 7) and parse_measures("3-3") == (3, 3)
    for bad in ("5..12", "a-b", "", "-3-4"):
        with pytest.raises(ThemeError, match="must look like A-B"):
            parse_measures(bad)


def test_ties_grace_notes_and_transposing_instruments():
    import music21

    from retrieval.theme import theme_from_stream

    part = music21.stream.Part()
    part.insert(0, music21.instrument.Clarinet())  # in B♭: written D sounds C
    part.append(music21.tempo.MetronomeMark(number=60))
    tied_a, tied_b = music21.note.Note("D4", quarterLength=1), music21.note.Note("D4", quarterLength=1)
    tied_a.tie, tied_b.tie = music21.tie.Tie("start"), music21.tie.Tie("stop")
    grace = music21.note.Note("F4").getGrace()
    part.append([tied_a, tied_b, grace, music21.note.Note("E4", quarterLength=1)])
    part.atSoundingPitch = False
    theme = theme_from_stream(part)
    assert [(n.pitch, n.onset, n.duration) for n in theme.notes] == [(60, 0.0, 2.0), (62, 2.0, 1.0)]


def test_repeats_are_expanded_only_when_asked():
    import music21

    from retrieval.theme import theme_from_stream

    part = music21.stream.Part()
    for i, name in enumerate(["C4", "E4"]):
        m = music21.stream.Measure(number=i + 1)
        m.append(music21.note.Note(name, type="whole"))
        part.append(m)
    part.getElementsByClass("Measure")[0].leftBarline = music21.bar.Repeat(direction="start")
    part.getElementsByClass("Measure")[1].rightBarline = music21.bar.Repeat(direction="end")
    score = music21.stream.Score([part])
    assert [n.pitch for n in theme_from_stream(score).notes] == [60, 64]
    assert [n.pitch for n in theme_from_stream(score, expand_repeats=True).notes] == [60, 64, 60, 64]
