"""Renderings that sound like orchestras: the score's dynamics, accents and articulation reach the
audio by the mapped amounts, and the room's reverberation decays as asked."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import music21
import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from retrieval.expression import (
    ARTICULATION_DB,
    DYNAMIC_DB,
    HAIRPIN_DB,
    LEGATO,
    PIZZICATO_PROGRAM,
    SFORZANDO_DB,
    expressive_notes,
    score_expression,
    velocity_for,
)
from retrieval.room import energy_decay_db, in_room, room_response
from retrieval.theme import NoteEvent, theme_from_stream
from retrieval.variants import symbolic_chroma

ROOT = Path(__file__).resolve().parents[2]
SR = 22050


def _part(marks: dict[int, object], n: int = 8, program: int | None = None) -> music21.stream.Part:
    """``n`` quarter notes of G4 at ♩ = 60 (one per second); ``marks[i]`` is inserted at note i
    (a Dynamic, TextExpression or an articulation, which goes on the note)."""
    part = music21.stream.Part()
    if program is not None:
        instrument = music21.instrument.Violin()
        instrument.midiProgram = program
        part.insert(0, instrument)
    part.insert(0, music21.tempo.MetronomeMark(number=60))
    for i in range(n):
        note = music21.note.Note("G4", quarterLength=1)
        mark = marks.get(i)
        if isinstance(mark, music21.articulations.Articulation):
            note.articulations.append(mark)
        elif mark is not None:
            part.insert(float(i), mark)
        part.insert(float(i), note)
    return part


def _velocities(part: music21.stream.Part) -> list[int]:
    score = music21.stream.Score([part])
    theme = theme_from_stream(score, whole_score=True)
    return expressive_notes(theme.notes, score_expression(score))[1]


def _note_levels_db(audio: np.ndarray, count: int) -> np.ndarray:
    """RMS level (dB) of the steady part (0.2–0.6 s) of each one-second note, shape (count,)."""
    return np.array([20 * np.log10(np.sqrt(np.mean(audio[int((i + 0.2) * SR):int((i + 0.6) * SR)] ** 2)))
                     for i in range(count)])


@pytest.fixture()
def renderer(monkeypatch):
    """``bench/render_scores.py`` as a module (bench scripts import each other from their folder)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    return importlib.import_module("render_scores")


def _render(renderer, tmp_path: Path, score: music21.stream.Score, *options: str) -> tuple[np.ndarray, dict]:
    """Render ``score`` as ``bench/render_scores.py OUT planted.musicxml --tempo-variation 0 OPTIONS`` does."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = tmp_path / "planted.musicxml"
    score.write("musicxml", fp=source)
    out = tmp_path / "audio"
    assert renderer.main([str(out), str(source), "--tempo-variation", "0", "--jobs", "1", *options]) == 0
    audio, sample_rate = sf.read(out / "planted.wav", dtype="float32")
    assert sample_rate == SR
    return audio, json.loads((out / "planted.timing.json").read_text())


def test_a_planted_piano_to_forte_raises_the_rendered_level_by_the_mapped_amount(tmp_path, renderer):
    part = _part({0: music21.dynamics.Dynamic("p"), 4: music21.dynamics.Dynamic("f")})
    audio, timing = _render(renderer, tmp_path, music21.stream.Score([part]), "--expression")
    levels = _note_levels_db(audio, 8)
    assert timing["expression"] is True and timing["room"] is None
    assert np.ptp(levels[:4]) < 0.3 and np.ptp(levels[4:]) < 0.3
    mapped = 20 * np.log10(velocity_for(DYNAMIC_DB["f"]) / velocity_for(DYNAMIC_DB["p"]))
    assert mapped == pytest.approx(DYNAMIC_DB["f"] - DYNAMIC_DB["p"], abs=0.5)  # velocity rounding only
    assert levels[4:].mean() - levels[:4].mean() == pytest.approx(mapped, abs=0.5)
    plain, _ = _render(renderer, tmp_path / "plain", music21.stream.Score([_part({0: music21.dynamics.Dynamic("p"),
                                                                        4: music21.dynamics.Dynamic("f")})]))
    assert np.ptp(_note_levels_db(plain, 8)) < 0.3  # without --expression every note is equal


@pytest.mark.parametrize("mark, gain", [(music21.articulations.Accent(), ARTICULATION_DB[music21.articulations.Accent]),
                                        (music21.dynamics.Dynamic("sf"), SFORZANDO_DB + 3.5)])
def test_an_accent_affects_one_note(tmp_path, renderer, mark, gain):
    part = _part({0: music21.dynamics.Dynamic("mf"), 3: mark})
    velocities = _velocities(part)
    assert [i for i, v in enumerate(velocities) if v != velocities[0]] == [3]
    levels = _note_levels_db(_render(renderer, tmp_path, music21.stream.Score([part]), "--expression")[0], 8)
    others = np.delete(levels, 3)
    assert np.ptp(others) < 0.3
    assert levels[3] - others.mean() == pytest.approx(gain, abs=0.6)  # sf: at least f, 6 dB above it


def test_hairpins_ramp_to_the_next_mark_and_text_crescendo_without_one_rises_by_default():
    wedge_part = _part({0: music21.dynamics.Dynamic("p"), 6: music21.dynamics.Dynamic("f")})
    notes = list(wedge_part.recurse().notes)
    wedge_part.insert(0, music21.dynamics.Crescendo(notes[1], notes[5]))
    levels = 20 * np.log10(np.array(_velocities(wedge_part)) / velocity_for(0.0))
    assert levels[:2] == pytest.approx([DYNAMIC_DB["p"]] * 2, abs=0.4)
    assert np.all(np.diff(levels[1:6]) > 1.0)  # rising across the hairpin
    assert levels[6:] == pytest.approx([DYNAMIC_DB["f"]] * 2, abs=0.4)
    text_part = _part({0: music21.dynamics.Dynamic("p"), 2: music21.expressions.TextExpression("cresc.")}, n=12)
    levels = 20 * np.log10(np.array(_velocities(text_part)) / velocity_for(0.0))
    assert levels[-1] - levels[0] == pytest.approx(HAIRPIN_DB, abs=0.5)
    assert np.all(np.diff(levels[2:11]) > 0.3)


def test_staccato_shortens_and_pizzicato_switches_a_string_part():
    part = _part({1: music21.articulations.Staccato(), 3: music21.expressions.TextExpression("pizz."),
                  6: music21.expressions.TextExpression("arco")}, program=40)
    score = music21.stream.Score([part])
    theme = theme_from_stream(score, whole_score=True)
    played, _ = expressive_notes(theme.notes, score_expression(score))
    assert [round(n.duration, 2) for n in played[:3]] == [LEGATO, 0.5, LEGATO]
    assert [n.program for n in played] == [40, 40, 40] + [PIZZICATO_PROGRAM] * 3 + [40, 40]


def test_the_room_decays_by_60_db_in_rt60_and_faster_at_high_frequencies():
    response = room_response(1.8, SR, brightness=0.5, seed=3)

    def t30(signal: np.ndarray) -> float:  # reverberation time from the −5 … −35 dB slope
        edc = energy_decay_db(signal)
        return 2 * (np.argmax(edc < -35) - np.argmax(edc < -5)) / SR

    low = scipy.signal.sosfilt(scipy.signal.butter(4, [100, 400], "bandpass", fs=SR, output="sos"), response)
    high = scipy.signal.sosfilt(scipy.signal.butter(4, [6000, 9000], "bandpass", fs=SR, output="sos"), response)
    assert t30(low) == pytest.approx(1.8, rel=0.1)
    assert t30(high) == pytest.approx(1.8 * 0.5 ** (np.log2(7500 / 500) / np.log2(16)), rel=0.15)
    assert np.sum(response ** 2) == pytest.approx(1.0, rel=1e-4)

    click = np.zeros(SR, dtype=np.float32)
    click[0] = 0.5
    heard = in_room(click, response, direct_to_reverberant_db=3.0)
    assert heard[0] == pytest.approx(0.5 + 10 ** (-3 / 20) * 0.5 * response[0], abs=1e-5)
    reverberant = np.sum(heard[1:].astype(np.float64) ** 2)
    assert 10 * np.log10(0.25 / reverberant) == pytest.approx(3.0, abs=0.3)


def test_several_soundfonts_and_rooms_are_drawn_per_score_and_recorded(tmp_path, renderer, capsys):
    score = music21.stream.Score([_part({})])
    audio, timing = _render(renderer, tmp_path, score, "--room", "--soundfont", "default")
    assert timing["soundfont"] == "TimGM6mb.sf2"
    assert 1.6 <= timing["room"]["rt60"] <= 2.4
    assert len(audio) > 8 * SR + timing["room"]["rt60"] * SR  # the hall rings on after the last note
    again, _ = _render(renderer, tmp_path / "again", score, "--room", "--soundfont", "default")
    assert np.array_equal(audio, again)
    with pytest.raises(SystemExit) as refused:
        renderer.main([str(tmp_path / "x"), "y.mxl", "--expression", "--melody-velocity", "127"])
    assert refused.value.code == 2 and "exclude each other" in capsys.readouterr().err


def test_the_sustain_pedal_holds_notes_to_the_next_change_and_humanizing_is_small_and_reproducible():
    from retrieval.expression import humanize, sustain_pedal
    from retrieval.theme import NoteEvent

    # ♩ = 60: offset q sounds at q seconds; pedal changes every 2 quarters
    notes = [NoteEvent(q, 0.25, 60 + i, 0, 0, q, 0.25) for i, q in enumerate([0.0, 0.5, 1.75, 2.0, 3.0])]
    notes.append(NoteEvent(0.0, 3.0, 48, 0, 0, 0.0, 3.0))  # already longer than the pedal: kept
    held = sustain_pedal(notes, lambda q: q, period=2.0)
    assert [round(n.onset + n.duration, 3) for n in held] == [2.0, 2.0, 2.0, 4.0, 4.0, 3.0]

    moved, velocities = humanize(notes, [64] * len(notes), seed=1)
    assert moved == humanize(notes, [64] * len(notes), seed=1)[0]
    shifts = np.array([m.onset - n.onset for m, n in zip(moved, notes, strict=True)])
    assert 0 < np.abs(shifts).max() < 0.08 and all(m.onset >= 0 for m in moved)
    assert all(40 <= v <= 100 for v in velocities)
    assert velocities[0] != 64 or velocities[1] != 64


def test_symbolic_chroma_marks_pitch_classes_for_their_duration():
    c = symbolic_chroma([NoteEvent(0.0, 0.4, 60), NoteEvent(0.2, 0.2, 64), NoteEvent(0.6, 0.2, 71)], rate=25)
    assert c.shape == (12, 20)
    assert c[0, 0] == pytest.approx(1.0) and c[0, 15] == 0.0
    assert c[0, 5] == pytest.approx(c[4, 5]) == pytest.approx(1 / np.sqrt(2))
    assert c[11, 15] == pytest.approx(1.0)
    np.testing.assert_allclose(c[:, 12], 1 / np.sqrt(12))  # the gap between notes


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
    from models.retrieval_features import IndexSettings
    from retrieval.theme import Theme
    from retrieval.variants import mean_polyphony, query_variants, rendering_for

    melody = Theme(tuple(NoteEvent(0.5 * i, 0.5, 60 + i) for i in range(8)), "melody")
    chords = Theme(tuple(NoteEvent(0.5 * i, 0.5, p + i) for i in range(8) for p in (48, 55, 64)), "chords")
    assert mean_polyphony(melody.notes) == pytest.approx(1.0)
    assert mean_polyphony(chords.notes) == pytest.approx(3.0)
    assert mean_polyphony([NoteEvent(0, 2, 60), NoteEvent(1, 1, 64)]) == pytest.approx(1.5)  # half the time two
    assert (rendering_for(melody), rendering_for(chords), rendering_for(chords, "symbolic")) == (
        "symbolic", "synthesised", "symbolic")
    settings = IndexSettings()
    auto = query_variants(melody, settings, rendering="auto")
    symbolic = query_variants(melody, settings, rendering="symbolic")
    assert all(np.array_equal(a.features, s.features) for a, s in zip(auto, symbolic, strict=True))
    with pytest.raises(ParameterError, match="needs the index's chroma extractor"):
        query_variants(chords, settings, rendering="auto")  # resolved to synthesised
    with pytest.raises(ParameterError, match="rendering must be one of"):
        rendering_for(melody, "sung")


def test_every_second_tempo_scale_is_rendered_and_the_others_stretched_from_the_nearest():
    from retrieval.options import TEMPO_SCALES
    from retrieval.variants import rendering_sources

    step = 2 ** (1 / 3)
    sources = rendering_sources(TEMPO_SCALES)
    assert sorted(set(sources.values())) == pytest.approx([step ** -2, 1.0, step**2])
    assert [sources[s] for s in TEMPO_SCALES] == pytest.approx(
        [step**-2, step**-2, 1.0, 1.0, 1.0, step**2, step**2])  # k = ±1: the nominal rendering, nearer 1
    assert rendering_sources([1.0]) == {1.0: 1.0}
    assert rendering_sources([0.8, 1.0, 1.25]) == {0.8: 1.0, 1.0: 1.0, 1.25: 1.0}
    assert rendering_sources([1.25, 2.0]) == {1.25: 1.25, 2.0: 1.25}  # counted from the scale nearest 1


def test_a_synthesised_theme_passes_through_the_model_once_per_rendered_scale():
    from models.retrieval_features import IndexSettings, cens_rows, retrieval_features
    from retrieval.options import TEMPO_SCALES
    from retrieval.theme import Theme
    from retrieval.variants import query_variants, rendering_sources, stretched

    class Extractor:  # the chroma of a rendering: its spectrum folded to 12 classes, 25 frames a second
        def __init__(self):
            self.durations = []

        def from_signal(self, audio, cens=False):
            self.durations.append(len(audio) / 22050)
            frames = np.abs(audio[: len(audio) // 882 * 882].reshape(-1, 882)) + 1e-3
            chroma = np.tile(frames.mean(1), (12, 1)).astype(np.float32)
            harmony = np.roll(chroma * np.arange(1, 13)[:, None], 3, axis=0) if cens else None  # another 12 rows
            return type("Chroma", (), {"chroma": chroma, "cens": harmony})

    chords = Theme(tuple(NoteEvent(0.5 * i, 0.5, p + i) for i in range(8) for p in (48, 55, 64)), "chords")
    settings, extractor = IndexSettings(), Extractor()
    variants = query_variants(chords, settings, extractor=extractor)
    assert len(extractor.durations) == 3 and len(variants) == len(TEMPO_SCALES)
    rendered = set(rendering_sources(TEMPO_SCALES).values())
    assert sorted(extractor.durations) == pytest.approx(sorted(4 / s + 0.3 for s in rendered), abs=0.05)
    direct = {s: query_variants(chords, settings, extractor=Extractor(), tempo_scales=[s])[0] for s in TEMPO_SCALES}
    for v in variants:
        source = rendering_sources(TEMPO_SCALES)[v.tempo_scale]
        found = Extractor().from_signal(_rendered(chords, source), cens=True)
        expected = stretched(found.chroma, v.tempo_scale / source)
        np.testing.assert_allclose(v.features, retrieval_features(expected, settings.downsample, settings.smoothing))
        harmony = cens_rows(stretched(found.cens, v.tempo_scale / source), settings)  # the index keeps CENS
        np.testing.assert_allclose(v.cens, harmony, atol=1e-6)
        assert len(v.cens) == -(-len(v.features) // 2)  # at half the retrieval rate
        if source == v.tempo_scale:
            np.testing.assert_array_equal(v.features, direct[v.tempo_scale].features)
    without = query_variants(chords, IndexSettings(cens_frames=False), extractor=Extractor())
    assert all(v.cens is None for v in without)
    assert all(v.cens is None for v in query_variants(chords, settings, rendering="symbolic"))


def _rendered(theme, scale: float) -> np.ndarray:
    from retrieval.soundfont import render_notes
    from retrieval.variants import _scaled

    return render_notes(_scaled(theme.notes, scale), 22050, tail=0.3)
