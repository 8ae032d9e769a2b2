"""Shared test fixtures: the reference data of ``../shared`` (skipped with a reason if absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "fixtures" / "ctc_chroma_reference"
RECORDINGS = SHARED / "data" / "recordings"
EXCERPTS = ("Beethoven_Op002-2-01_Pitman", "Beethoven_Op067-01_DavidHighSchool")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference fixtures not found at {REFERENCE} (../shared is absent)")
    return REFERENCE


@pytest.fixture(scope="session")
def recordings_dir() -> Path:
    if not RECORDINGS.is_dir():
        pytest.skip(f"recordings not found at {RECORDINGS} (../shared is absent)")
    return RECORDINGS


# -- a small generated collection: corpus pieces of music21 rendered with the GM SoundFont ------

PIECES = {
    "mozart_k155": ("mozart/k155/movement1", (1, 16)),
    "haydn_op74": ("haydn/opus74no1/movement3", (1, 16)),
    "schumann_op17": ("schumann_clara/opus17/movement3", (1, 12)),
    "schubert_lindenbaum": ("schubert/lindenbaum", (1, 16)),
    "joplin_maple_leaf": ("joplin/maple_leaf_rag", (1, 16)),
}


def render_piece(name: str, path: Path) -> None:
    """Render the first measures of a music21 corpus piece to a 22050 Hz WAV."""
    import soundfile as sf
    from music21 import corpus

    from retrieval.synth import render_notes
    from retrieval.theme import theme_from_stream

    work, measures = PIECES[name]
    theme = theme_from_stream(corpus.parse(work), measures=measures, name=work)
    sf.write(path, render_notes(theme.notes, 22050), 22050)


@pytest.fixture(scope="session")
def rendered_dir(tmp_path_factory) -> Path:
    """Folder of the rendered :data:`PIECES` (one WAV each, 20–50 s)."""
    folder = tmp_path_factory.mktemp("rendered")
    for name in PIECES:
        render_piece(name, folder / f"{name}.wav")
    return folder


@pytest.fixture(scope="session")
def indexed(rendered_dir, tmp_path_factory) -> Path:
    """An index of :func:`rendered_dir` with the default settings (do not modify it)."""
    from indexer.build import index_collection

    db = tmp_path_factory.mktemp("indexed") / "index.db"
    report = index_collection(rendered_dir, db, progress=False)
    assert len(report.added) == len(PIECES) and not report.failed
    return db
