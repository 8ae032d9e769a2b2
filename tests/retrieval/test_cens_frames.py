"""CENS kept beside the deep chroma, and themes written out in full texture ranked by both."""

from __future__ import annotations

import numpy as np
import pytest

from db.store import FEATURE_STEP, IndexStore
from models.cens import cens_from_log_hcqt
from models.extractor_factory import make_extractor
from models.retrieval_features import CENS_DOWNSAMPLE, IndexSettings, cens_rows
from retrieval.dtw import subsequence_align
from retrieval.excerpt import excerpt_variants, load_excerpt
from retrieval.options import CENS_WEIGHT, EXCERPT_CENS_WEIGHT
from retrieval.query import _extractor_for, query
from retrieval.theme import parse_corpus_work, theme_from_stream
from retrieval.variants import query_variants, rendering_for

JOPLIN = ("joplin/maple_leaf_rag", (5, 8))
"""A full texture (both staves of a piano rag): rendered through audio, ranked by both."""
HAYDN = ("haydn/opus74no1/movement3", (9, 12))
"""A melody (the first violin): symbolic, ranked by deep chroma alone."""


@pytest.fixture(scope="module")
def store(indexed):
    store = IndexStore.open(indexed, readonly=True)
    yield store
    store.close()


def _theme(work: str, measures: tuple[int, int], part: int | None):
    return theme_from_stream(parse_corpus_work(work), part=part, measures=measures)


def test_extractors_give_the_cens_of_their_own_front_end():
    rng = np.random.default_rng(1)
    y = (0.1 * rng.standard_normal(22050 * 3)).astype(np.float32)
    for model_id in ("v2_ctc_train123valid4", "v2_ctc_train123valid4+v2_ctc_train512valid3"):
        extractor = make_extractor(model_id)
        plain, both = extractor.from_signal(y), extractor.from_signal(y, cens=True)
        first = extractor if model_id.count("+") == 0 else extractor.members[0]
        assert plain.cens is None
        np.testing.assert_array_equal(both.chroma, plain.chroma)  # the deep chroma does not change
        np.testing.assert_allclose(both.cens, cens_from_log_hcqt(first.log_hcqt(y))[:, : plain.chroma.shape[1]])
        assert both.cens.shape == plain.chroma.shape


def test_the_index_keeps_each_recordings_cens_at_half_its_rate(store):
    settings = store.settings
    assert settings.cens_frames and settings.cens_rate == settings.rate / CENS_DOWNSAMPLE
    extractor = make_extractor(settings.model_id)
    for rec in store.recordings("indexed"):
        kept = store.cens(rec.id)
        assert kept.shape == (-(-rec.n_frames // CENS_DOWNSAMPLE), 12)
        if rec.name == "joplin_maple_leaf":
            computed = cens_rows(extractor.from_signal(_samples(rec.path), cens=True).cens, settings)
            assert np.abs(kept - computed).max() <= FEATURE_STEP / 2 + 1e-6


def _samples(path: str) -> np.ndarray:
    from models.audio import load_audio

    return load_audio(path, 22050)[0]


def _deep_and_cens(store: IndexStore, variants) -> dict[int, tuple[float, float]]:
    """Per recording: the best DTW similarity of any variant with its whole deep frames, and with its CENS."""
    found = {}
    for rec in store.recordings("indexed"):
        deep = max(subsequence_align(v.features, store.frames(rec.id)).similarity for v in variants)
        harmony = (max(subsequence_align(v.cens, store.cens(rec.id)).similarity for v in variants)
                   if variants[0].cens is not None else None)
        found[rec.id] = (deep, harmony)
    return found


def test_a_full_texture_theme_is_ranked_by_both_scores_weighted(store):
    theme = _theme(*JOPLIN, None)
    assert rendering_for(theme) == "synthesised"
    variants = query_variants(theme, store.settings, extractor=_extractor_for(store.settings, "cpu"))
    assert all(v.cens is not None for v in variants)
    expected = _deep_and_cens(store, variants)
    n = len(expected)
    result = query(store, theme, top=n, exhaustive=True)
    assert result.matches[0].path.endswith("joplin_maple_leaf.wav")
    for m in result.matches:
        deep, harmony = expected[m.recording_id]
        assert m.score == pytest.approx((1 - CENS_WEIGHT) * deep + CENS_WEIGHT * harmony, abs=1e-4)
    assert any(abs(m.score - expected[m.recording_id][0]) > 0.01 for m in result.matches)  # not deep alone
    ranked = query(store, theme, top=n, candidates=n)  # the ANN path fuses the same way around its anchors
    assert ranked.matches[0].path.endswith("joplin_maple_leaf.wav")
    best = ranked.matches[0]
    assert best.score == pytest.approx(result.matches[0].score, abs=0.02)


def test_an_audio_excerpt_is_ranked_by_both_scores_weighted_as_audio(store, tmp_path):
    import soundfile as sf

    source = next(r for r in store.recordings("indexed") if r.name == "joplin_maple_leaf")
    cut = tmp_path / "cut.wav"
    sf.write(cut, _samples(source.path)[22050 * 2 : 22050 * 8], 22050)
    excerpt = load_excerpt(cut, _extractor_for(store.settings, "cpu"), store.settings)
    variants = excerpt_variants(excerpt, store.settings)
    assert all(v.cens is not None and v.cens_weight == EXCERPT_CENS_WEIGHT for v in variants)
    assert EXCERPT_CENS_WEIGHT != CENS_WEIGHT
    expected = _deep_and_cens(store, variants)
    result = query(store, str(cut), top=len(expected), exhaustive=True)
    assert result.matches[0].recording_id == source.id
    for m in result.matches:
        deep, harmony = expected[m.recording_id]
        assert m.score == pytest.approx((1 - EXCERPT_CENS_WEIGHT) * deep + EXCERPT_CENS_WEIGHT * harmony, abs=1e-4)


def test_a_melody_theme_is_ranked_by_deep_chroma_alone(store):
    theme = _theme(*HAYDN, 0)
    variants = query_variants(theme, store.settings)
    assert all(v.cens is None for v in variants)
    expected = _deep_and_cens(store, variants)
    result = query(store, theme, top=len(expected), exhaustive=True)
    for m in result.matches:
        assert m.score == pytest.approx(expected[m.recording_id][0], abs=1e-4)


class _WithoutCens:
    """The test index, one recording's CENS missing (an index copied between versions, say)."""

    def __init__(self, store: IndexStore, missing: int) -> None:
        self._store, self._missing = store, missing

    def __getattr__(self, name):
        return getattr(self._store, name)

    def cens(self, recording_id: int):
        return None if recording_id == self._missing else self._store.cens(recording_id)


def test_without_every_recordings_cens_a_theme_is_ranked_by_deep_chroma_alone(store):
    theme = _theme(*JOPLIN, None)
    variants = query_variants(theme, store.settings, extractor=_extractor_for(store.settings, "cpu"))
    expected = _deep_and_cens(store, variants)
    missing = store.recordings("indexed")[0].id
    result = query(_WithoutCens(store, missing), theme, top=len(expected), exhaustive=True)
    for m in result.matches:  # every score of one kind: none fused
        assert m.score == pytest.approx(expected[m.recording_id][0], abs=1e-4)


def test_indexes_made_before_cens_frames_have_none(tmp_path):
    old = IndexSettings.from_json('{"model_id": "v2_ctc_train123valid4", "version": 1}')
    assert not old.cens_frames and IndexSettings().cens_frames
    assert not IndexSettings(model_id="cens").cens_frames and not IndexSettings(model_id="a+cens").cens_frames
    IndexSettings(model_id=old.model_id).check_matches(old)  # what is stored, not what a query must share
    store = IndexStore.create(tmp_path / "old.db", old)
    rid = store.put_indexed({"path": "/x.wav", "size": 1, "mtime": 0.0, "hash": "h", "model_id": old.model_id},
                            np.full((10, 12), 12 ** -0.5, np.float32), np.full((5, 12), 12 ** -0.5, np.float32))
    assert store.cens(rid) is None
    store.close()


def test_cens_rows_leave_the_index_with_their_recording(tmp_path):
    store = IndexStore.create(tmp_path / "i.db", IndexSettings())
    row = {"path": "/x.wav", "size": 1, "mtime": 0.0, "hash": "h", "model_id": "m"}
    frames = np.full((10, 12), 12 ** -0.5, np.float32)
    rid = store.put_indexed(row, frames, np.eye(12, dtype=np.float32)[:5])
    np.testing.assert_allclose(store.cens(rid), np.eye(12)[:5], atol=FEATURE_STEP)
    assert store.put_indexed(row, frames) == rid and store.cens(rid) is None  # replaced without: none stale
    store.put_indexed(row, frames, np.eye(12, dtype=np.float32)[:5])
    store.put_failed(row, "damaged")
    assert store.cens(rid) is None
    store.put_indexed(row, frames, np.eye(12, dtype=np.float32)[:5])
    store.delete([rid])
    assert store.db.execute("SELECT count(*) FROM cens").fetchone()[0] == 0
    store.close()
