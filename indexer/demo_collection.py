"""The bundled default collection: pieces of music21's own corpus rendered with the GM SoundFont.

Needs no data beyond the installed packages; used by ``cli.py demo`` and by the tests.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEMO_PIECES", "DEMO_THEME", "render_demo_collection"]

#: recording stem → (music21 corpus work, measures rendered)
DEMO_PIECES = {
    "mozart_k155": ("mozart/k155/movement1", (1, 16)),
    "haydn_op74": ("haydn/opus74no1/movement3", (1, 16)),
    "schumann_op17": ("schumann_clara/opus17/movement3", (1, 12)),
    "schubert_lindenbaum": ("schubert/lindenbaum", (1, 16)),
    "joplin_maple_leaf": ("joplin/maple_leaf_rag", (1, 16)),
}

#: the demo query: (work, measures, part) — the first violin of Haydn's Op. 74/1, iii, bars 9–12
DEMO_THEME = ("haydn/opus74no1/movement3", (9, 12), 0)


def render_demo_collection(folder: str | Path, names: list[str] | None = None) -> list[Path]:
    """Render :data:`DEMO_PIECES` (or ``names`` of them) to ``folder/<name>.wav``; existing files are kept."""
    # music21 and the synthesiser only when rendering: cli.py demo reads the constants first
    import soundfile as sf

    from models.files import atomic_write
    from models.frontend import SAMPLE_RATE
    from retrieval.soundfont import render_notes
    from retrieval.theme import parse_corpus_work, theme_from_stream

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names or list(DEMO_PIECES):
        path = folder / f"{name}.wav"
        if not path.exists():
            work, measures = DEMO_PIECES[name]
            theme = theme_from_stream(parse_corpus_work(work), measures=measures, name=work)
            audio = render_notes(theme.notes, SAMPLE_RATE)
            atomic_write(path, lambda tmp, audio=audio: sf.write(tmp, audio, SAMPLE_RATE, format="WAV"))
        written.append(path)
    return written
