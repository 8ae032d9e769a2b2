"""A theme's score as notation: music21 selects the part and measures, verovio engraves SVG.

Any format the engine reads (MusicXML, MIDI, kern, ABC, MEI) is parsed by
:func:`retrieval.theme.parse_score` (never through a cache), cut to the chosen part and
measures, written as MusicXML and engraved by verovio (PyPI wheel; runs offline). With the SVG
comes verovio's time map: the ids of the notes that begin at each quarter-note position, so the
page can light the note that sounds (a query's ``notes[].quarter``) and seek to a clicked one.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from retrieval.theme import ThemeError, parse_score, select_measures, select_part

__all__ = ["engrave_theme"]

_ENGRAVER = ThreadPoolExecutor(1, thread_name_prefix="verovio")
"""verovio's fonts work only in the thread that first loaded them (toolkits made in other threads
fail: "Bravura font could not be loaded"), so all engraving runs in this one thread (milliseconds each)."""


def _engrave(xml: Path, width: int) -> dict | None:
    import verovio  # the engraver's thread only

    verovio.enableLog(verovio.LOG_OFF)
    toolkit = verovio.toolkit()
    toolkit.setOptions({"pageWidth": width, "adjustPageHeight": True, "scale": 35, "footer": "none",
                        "header": "none", "breaks": "auto"})
    if not toolkit.loadFile(str(xml)):
        return None
    svg = toolkit.renderToSVG(1)
    timemap = [{"quarter": float(entry["qstamp"]), "notes": entry["on"]}
               for entry in toolkit.renderToTimemap() if entry.get("on")]
    return {"svg": svg, "timemap": timemap}


def engrave_theme(path: str | Path, part: str | int | None = None, measures: tuple[int, int] | None = None,
                  width: int = 1400) -> dict:
    """``{"svg": …, "timemap": [{"quarter": q, "notes": [SVG ids]}, …]}`` of the first page of the
    selected score, quarters counted from its first measure (raises :class:`retrieval.theme.ThemeError`)."""
    score = parse_score(path)
    name = str(path)
    if part is not None:
        score = select_part(score, part, name)
    if measures is not None:
        score, _ = select_measures(score, measures, name)
    with tempfile.TemporaryDirectory(prefix="notation_") as folder:
        xml = Path(folder) / "theme.musicxml"
        try:
            score.write("musicxml", fp=xml)
        except Exception as error:  # music21 cannot write every stream it reads (e.g. odd MIDI)
            raise ThemeError(f"{name}: cannot be shown as notation ({str(error).splitlines()[0][:100]})") from None
        engraved = _ENGRAVER.submit(_engrave, xml, width).result()
    if engraved is None:
        raise ThemeError(f"{name}: cannot be shown as notation (verovio could not read it)")
    return engraved
