"""Units of the retrieval path: features, shingles, subsequence DTW, themes."""

from __future__ import annotations

import numpy as np
import pytest

from models.retrieval_features import (
    FeatureSettings,
    SettingsMismatchError,
    convolved,
    hann_window,
    retrieval_features,
    shingles,
    unit_rows,
)
from retrieval.dtw import subsequence_align
from retrieval.theme import NoteEvent, ThemeError, parse_measures
from retrieval.variants import symbolic_chroma


def sparse_sequence(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 12)) ** 8
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_retrieval_features_shape_norm_and_centre():
    chroma = np.zeros((12, 100), np.float32)
    chroma[4, 40:60] = 1.0
    f = retrieval_features(chroma, downsample=2, smoothing=5)
    assert f.shape == (50, 12)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-6)
    assert np.argmax(f[25]) == 4 and f[25, 4] == pytest.approx(1.0)
    np.testing.assert_allclose(f[0], np.full(12, 1 / np.sqrt(12)), atol=1e-6)  # silence → uniform
    with pytest.raises(ValueError):
        retrieval_features(np.zeros((13, 10)))


def test_window_smoothing_and_row_normalisation_equal_scipy_and_librosa():
    import librosa
    import scipy.ndimage
    import scipy.signal

    rng = np.random.default_rng(0)
    for n in (3, 7, 12, 43):
        np.testing.assert_allclose(hann_window(n), scipy.signal.get_window("hann", n), rtol=0, atol=1e-15)
    chroma = rng.random((12, 40)).astype(np.float32)
    for m in (1, 2, 3, 4, 5, 8, 60):  # odd and even lengths centre differently; longer than the signal too
        weights = rng.random(m)
        out = convolved(chroma, weights)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, scipy.ndimage.convolve1d(chroma, weights, axis=1, mode="constant"),
                                   rtol=1e-6, atol=1e-7)
    x = rng.normal(size=(50, 192)).astype(np.float32)
    x[3] = 0.0
    x[7] = 0.0
    x[7, 0] = 1e-40  # a norm below float32's smallest normal number: filled like a silent row, not (1, 0, …)
    expected = librosa.util.normalize(x, norm=2, axis=1, fill=True)
    assert np.array_equal(unit_rows(x), expected)
    assert np.allclose(unit_rows(x)[[3, 7]], 192**-0.5)


def test_shingles_cover_frames_and_pad_short_sequences():
    x = sparse_sequence(30)
    starts, vecs = shingles(x, length=8, hop=3)
    assert list(starts) == list(range(0, 23, 3)) and vecs.shape == (8, 96)
    expected = x[6:14].ravel() / np.linalg.norm(x[6:14].ravel())
    np.testing.assert_allclose(vecs[2], expected, atol=1e-6)
    starts, vecs = shingles(x[:5], length=8)
    assert list(starts) == [0] and np.allclose(vecs[0][60:], 0.0)


@pytest.mark.parametrize("stretch", [1, 2])
def test_subsequence_dtw_finds_a_stretched_excerpt(stretch):
    target = sparse_sequence(600, seed=1)
    query = target[200:240]
    performed = np.concatenate([target[:200], np.repeat(query, stretch, axis=0), target[240:]])
    a = subsequence_align(query, performed)
    assert a.similarity == pytest.approx(1.0, abs=1e-6)
    assert abs(a.start - 200) <= 1 and abs(a.end - (200 + 40 * stretch - 1)) <= 1
    noise = subsequence_align(sparse_sequence(40, seed=5), performed)
    assert noise.similarity < 0.8


def test_subsequence_dtw_equals_librosa_including_ties():
    import librosa

    from retrieval.dtw import _STEPS, _WEIGHTS

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 40))
        m = int(rng.integers(n, 120))
        query, target = (rng.random((k, 12)).astype(np.float32) for k in (n, m))
        if trial % 3 == 0:  # coarse values: many equal costs, so tie-breaking matters
            query, target = np.round(query, 1) + 0.01, np.round(target, 1) + 0.01
        query /= np.linalg.norm(query, axis=1, keepdims=True)
        target /= np.linalg.norm(target, axis=1, keepdims=True)
        cost = np.maximum(1.0 - query @ target.T, 1e-9).astype(np.float64)
        acc, path = librosa.sequence.dtw(C=cost, subseq=True, step_sizes_sigma=_STEPS, weights_mul=_WEIGHTS)
        ours = subsequence_align(query, target)
        assert (ours.similarity, ours.start, ours.end) == (1 - acc[-1, path[0, 1]] / n, path[-1, 1], path[0, 1])


def test_symbolic_chroma_marks_pitch_classes_for_their_duration():
    c = symbolic_chroma([NoteEvent(0.0, 0.4, 60), NoteEvent(0.2, 0.2, 64), NoteEvent(0.6, 0.2, 71)], rate=25)
    assert c.shape == (12, 20)
    assert c[0, 0] == pytest.approx(1.0) and c[0, 15] == 0.0
    assert c[0, 5] == pytest.approx(c[4, 5]) == pytest.approx(1 / np.sqrt(2))
    assert c[11, 15] == pytest.approx(1.0)
    np.testing.assert_allclose(c[:, 12], 1 / np.sqrt(12))  # the gap between notes


def test_settings_round_trip_and_mismatch_message():
    s = FeatureSettings(shingle_length=10)
    assert FeatureSettings.from_json(s.to_json()) == s and s.dim == 120 and s.rate == 12.5
    with pytest.raises(SettingsMismatchError, match=r"shingle_length=10 \(asked 16\)"):
        FeatureSettings().check_matches(s)
    FeatureSettings(index_factory="IVF4,Flat").check_matches(FeatureSettings())  # storage only
    with pytest.raises(ValueError):
        FeatureSettings(downsample=0)


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


def test_per_note_velocity_makes_that_note_louder():
    from retrieval.soundfont import render_notes

    notes = [NoteEvent(0.0, 0.5, 60, 0, 0), NoteEvent(0.0, 0.5, 67, 0, 1)]
    even = render_notes(notes, 22050, velocity=90, tail=0.1)
    accented = render_notes(notes, 22050, velocity=[127, 90], tail=0.1)

    def level(audio: np.ndarray, pitch: int) -> float:  # spectrum magnitude at the note's fundamental
        spectrum = np.abs(np.fft.rfft(audio[:8192]))
        return float(spectrum[round(440 * 2 ** ((pitch - 69) / 12) * 8192 / 22050)])

    assert level(accented, 60) > 1.3 * level(even, 60)  # +3 dB with this SoundFont
    assert level(accented, 67) == pytest.approx(level(even, 67), rel=0.1)


def test_auto_rendering_takes_a_full_texture_through_audio_and_a_melody_symbolically():
    from models.errors import ParameterError
    from models.retrieval_features import FeatureSettings
    from retrieval.theme import Theme
    from retrieval.variants import mean_polyphony, query_variants, rendering_for

    melody = Theme(tuple(NoteEvent(0.5 * i, 0.5, 60 + i) for i in range(8)), "melody")
    chords = Theme(tuple(NoteEvent(0.5 * i, 0.5, p + i) for i in range(8) for p in (48, 55, 64)), "chords")
    assert mean_polyphony(melody.notes) == pytest.approx(1.0)
    assert mean_polyphony(chords.notes) == pytest.approx(3.0)
    assert mean_polyphony([NoteEvent(0, 2, 60), NoteEvent(1, 1, 64)]) == pytest.approx(1.5)  # half the time two
    assert (rendering_for(melody), rendering_for(chords), rendering_for(chords, "symbolic")) == (
        "symbolic", "synthesised", "symbolic")
    settings = FeatureSettings()
    auto = query_variants(melody, settings, rendering="auto")
    symbolic = query_variants(melody, settings, rendering="symbolic")
    assert all(np.array_equal(a.features, s.features) for a, s in zip(auto, symbolic, strict=True))
    with pytest.raises(ParameterError, match="needs the index's chroma extractor"):
        query_variants(chords, settings, rendering="auto")  # resolved to synthesised
    with pytest.raises(ParameterError, match="rendering must be one of"):
        rendering_for(melody, "sung")
