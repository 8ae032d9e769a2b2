"""Every occurrence and note by note, measured on bach_violin's note alignments (and, held out, on
the hauptstimme themes' annotated passages).

    python bench/occurrences.py INDEX [--ground-truth CSV] [--data DIR] [--min-score 0.75 0.8 …] [--json OUT]
    python bench/occurrences.py HAUPTSTIMME_INDEX --hauptstimme RENDERED_DIR [--min-score …] [--json OUT]

For each query of the benchmark, the annotated occurrences are every place its notes (onsets of
equal pitch sets, in order) recur in its movement's score note list (``notes/*.csv``), timed by the
movement's note alignment (``alignments/*.csv``). A found span counts when it covers at least half
of an annotated occurrence (each annotated one counts once). Reported per threshold: precision and
recall of ``query --occurrences`` over all found spans (any recording), mean average precision
(found spans ranked by score), and the same for the single best span (the default answer);
first the default rule (no ``--min-score``: :mod:`retrieval.occurrences`), then each threshold
alone.
Note by note: for right first answers, each theme onset's time in the match against the alignment
of the occurrence it covers (median and 90th percentile error, ms).
Hauptstimme (the occurrence rule's constants were chosen on bach_violin): a query is the first
8 quarter notes of a labelled theme; its annotated occurrences are the first 8 quarter notes of
every passage with the same label in its movement (``X_annotations.csv``), timed by the
rendering's clock. A passage may restate its theme more than once, so precision there is a floor.
"""

from __future__ import annotations

import argparse
import csv
import functools
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report import keep_json  # noqa: E402  # the script beside this one (bench/ is on sys.path when run as a script)

from db.store import IndexStore  # noqa: E402
from retrieval.ground_truth import read_ground_truth  # noqa: E402
from retrieval.query import QueryOptions, query  # noqa: E402
from retrieval.theme import load_theme, parse_score, theme_from_stream  # noqa: E402
from training.pairs import rendering_clock  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
TICKS_PER_QUARTER = 24


def _onset_groups(pitches_at: dict[float, set[int]]) -> tuple[list[float], list[frozenset[int]]]:
    onsets = sorted(pitches_at)
    return onsets, [frozenset(pitches_at[o]) for o in onsets]


def movement_notes(data: Path, stem: str) -> tuple[list[frozenset[int]], list[tuple[float, float]]]:
    """A movement's onset groups (pitch sets, in score order) and each group's aligned (start, end) seconds."""
    with open(data / "notes" / f"{stem}.csv") as f:
        notes = list(csv.DictReader(f))
    with open(data / "alignments" / f"{stem}.csv") as f:
        times = list(csv.DictReader(f))
    pitches: dict[float, set[int]] = defaultdict(set)
    spans: dict[float, list[float]] = {}
    for note, t in zip(notes, times, strict=True):
        onset = int(note["onset"]) / TICKS_PER_QUARTER
        pitches[onset].add(int(note["pitch"]))
        start, end = float(t["start"]), float(t["end"])
        spans[onset] = [min(spans.get(onset, [start])[0], start), max(spans.get(onset, [0, end])[1], end)]
    onsets, groups = _onset_groups(pitches)
    return groups, [tuple(spans[o]) for o in onsets]


def annotated(theme, groups: list[frozenset[int]], spans: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """Every place the theme's onset groups recur in the movement: per occurrence its groups' spans."""
    pitches: dict[float, set[int]] = defaultdict(set)
    for n in theme.notes:
        pitches[round(n.onset, 4)].add(n.pitch)
    _, wanted = _onset_groups(pitches)
    k = len(wanted)
    return [spans[i : i + k] for i in range(len(groups) - k + 1) if groups[i : i + k] == wanted]


def alignment_offset(starts_per_row: list[tuple[float, list[float]]]) -> float:
    """Seconds to add to a movement's alignment so that it agrees with the ground truth's
    ``start_s`` (some recordings' files begin a second before the alignment's movement start): the
    most common difference between a row's ``start_s`` and its occurrences' starts, to 10 ms."""
    differences = [round(truth - s, 2) for truth, starts in starts_per_row for s in starts]
    values, counts = np.unique(differences, return_counts=True)
    return float(values[np.argmax(counts)]) if len(values) else 0.0


def movement_onsets(data: Path, stem: str) -> list[float]:
    """The score offsets (quarter notes) of a movement's onset groups, in the order of :func:`movement_notes`."""
    with open(data / "notes" / f"{stem}.csv") as f:
        return sorted({int(n["onset"]) / TICKS_PER_QUARTER for n in csv.DictReader(f)})


def aligned_movements(data: Path, rows: list[dict], themes: dict) -> dict[str, tuple[list, list]]:
    """Per recording of ``rows``: :func:`movement_notes`, its spans moved by :func:`alignment_offset`."""
    movements = {}
    for right in {row["recording"] for row in rows}:
        groups, spans = movement_notes(data, right)
        starts = [(float(row["start_s"]), [o[0][0] for o in annotated(themes[row["query_id"]], groups, spans)])
                  for row in rows if row["recording"] == right and row.get("start_s")]
        shift = alignment_offset(starts)
        movements[right] = (groups, [(a + shift, b + shift) for a, b in spans])
    return movements


def covers(found: tuple[float, float], truth: tuple[float, float]) -> bool:
    """Whether a found span covers at least half of an annotated one."""
    overlap = min(found[1], truth[1]) - max(found[0], truth[0])
    return overlap >= 0.5 * (truth[1] - truth[0])


def judged(found: list[tuple[float, str, float, float]], truths: list[tuple[float, float]], right: str) -> list[bool]:
    """For found ``(score, recording stem, start, end)`` best first: whether each is a new annotated occurrence."""
    used: set[int] = set()
    hits = []
    for _, stem, start, end, *_ in found:
        hit = None
        if stem == right:
            hit = next((i for i, t in enumerate(truths) if i not in used and covers((start, end), t)), None)
        if hit is not None:
            used.add(hit)
        hits.append(hit is not None)
    return hits


def average_precision(hits: list[bool], n_truths: int) -> float:
    cumulative = np.cumsum(hits)
    return float(sum(cumulative[i] / (i + 1) for i, h in enumerate(hits) if h) / max(n_truths, 1))


def found_spans(store: IndexStore, theme, lowest: float) -> dict[str, list[tuple]]:
    """The theme's occurrences as ``(score, recording stem, start, end, tempo scale)``: every one
    scoring ``lowest`` (``found``), the default rule's (``default``), and the single best span (``single``)."""
    as_rows = lambda spans: [(o.score, Path(o.path).stem, o.start, o.end, o.tempo_scale) for o in spans]  # noqa: E731
    result = query(store, theme, QueryOptions(occurrences=True, min_score=lowest))
    return {"found": as_rows(result.occurrences), "single": as_rows(result.matches[:1]),
            "default": as_rows(query(store, theme, QueryOptions(occurrences=True)).occurrences),
            "best": result.matches[0] if result.matches else None}


def bach_violin_queries(store: IndexStore, ground_truth: Path, data: Path, lowest: float) -> tuple[list, list]:
    """Per query its annotated occurrences (the theme's notes recurring in its movement, timed by the
    note alignment) and what was found; and the note-time errors (ms) of right first answers."""
    aligned = {p.stem for p in (data / "alignments").glob("*.csv")}
    rows = [r for r in read_ground_truth(ground_truth) if r["recording"] in aligned]
    themes = {row["query_id"]: load_theme(row["query"]) for row in rows}
    movements = aligned_movements(data, rows, themes)
    per_query, note_errors = [], []
    for row in rows:
        theme, right = themes[row["query_id"]], row["recording"]
        occurrences = annotated(theme, *movements[right])
        if not occurrences:
            continue
        truths = [(o[0][0], o[-1][1]) for o in occurrences]
        spans = found_spans(store, theme, lowest)
        best = spans.pop("best")
        per_query.append({"query_id": row["query_id"], "recording": right, "annotated": len(truths),
                          "truths": truths, **spans})
        if best is not None and Path(best.path).stem == right and best.notes:
            covered = [o for o in occurrences if covers((best.start, best.end), (o[0][0], o[-1][1]))]
            if covered:
                onsets = sorted({round(n.time, 3) for n in best.notes})
                truth = [s[0] for s in covered[0]]
                if len(onsets) == len(truth):
                    note_errors.extend(abs(a - b) * 1000 for a, b in zip(onsets, truth, strict=True))
    return per_query, note_errors


def labelled_passages(annotations: Path, label: str) -> list[float]:
    """Score offsets (quarter notes) where a passage of the theme ``label`` (as spelt in query ids:
    other than letters and digits ``-``) begins: the first row of
    each run of consecutive annotation rows with that label (the melody passing between parts
    within a run continues one passage)."""
    with open(annotations) as f:
        rows = sorted(csv.DictReader(f), key=lambda r: float(r["qstamp"]))
    named = [re.sub(r"[^A-Za-z0-9]", "-", r["label"]) for r in rows]  # as in the query ids
    return [float(r["qstamp"]) for i, r in enumerate(rows) if named[i] == label and (i == 0 or named[i - 1] != label)]


def hauptstimme_queries(store: IndexStore, ground_truth: Path, data: Path, rendered: Path,
                        lowest: float, quarters: float = 8.0) -> dict[str, list[dict]]:
    """Per query (``MOVEMENT_LABEL_1``: ``quarters`` of a theme's first passage) every annotated
    passage of its label (``labelled``), and those that restate the query's pitch classes literally
    (``literal``), timed in the movement's rendering by the renderer's clock; and what was found."""
    annotations = {p.name.removesuffix("_annotations.csv"): p for p in data.rglob("*_annotations.csv")}
    per_query: dict[str, list[dict]] = {"labelled": [], "literal": []}
    for row in read_ground_truth(ground_truth):
        right = row["recording"]
        label = row["query_id"].removeprefix(right + "_").rsplit("_", 1)[0]
        timing = rendered / f"{right}.timing.json"
        if right not in annotations or not timing.is_file():
            continue
        clock = rendering_clock(timing)
        theme = load_theme(row["query"])
        passages = labelled_passages(annotations[right], label)
        melody = melody_notes(annotations[right].with_name(f"{right}_melody.mxl"))
        literal = [q for q in passages if pitch_classes(melody, q, quarters) == pitch_classes(
            [(n.score_onset, n.pitch) for n in theme.notes], 0.0, quarters)]
        spans = found_spans(store, theme, lowest)
        spans.pop("best")
        for name, starts in (("labelled", passages), ("literal", literal)):
            truths = [(clock(q), clock(q + quarters)) for q in starts]
            if truths:
                per_query[name].append({"query_id": row["query_id"], "recording": right, "annotated": len(truths),
                                        "truths": truths, **spans})
    return per_query


@functools.cache
def melody_notes(melody_score: Path) -> list[tuple[float, int]]:
    """``(score offset in quarters, MIDI pitch)`` of a movement's stitched main-melody score."""
    theme = theme_from_stream(parse_score(melody_score), name=str(melody_score), whole_score=True)
    return [(n.score_onset, n.pitch) for n in theme.notes]


def pitch_classes(notes: list[tuple[float, int]], start: float, quarters: float) -> list[int]:
    """The pitch classes of the notes from ``start`` for ``quarters``, in order: the same in a passage
    and the query's theme when the passage restates it literally (in any octave)."""
    return [p % 12 for onset, p in sorted(notes) if start - 1e-6 <= onset < start + quarters - 1e-6]


def precision_recall(per_query: list[dict], thresholds: list[float]) -> list[dict]:
    """Per rule (the default, then each threshold alone): precision, recall and MAP of the found
    occurrences, and of the single best span."""
    table = []
    for threshold in [None, *sorted(thresholds)]:
        tp = n_found = n_truth = tp_single = n_single = 0
        aps, aps_single = [], []
        for q in per_query:
            found = q["default"] if threshold is None else [f for f in q["found"] if f[0] >= threshold]
            hits = judged(found, q["truths"], q["recording"])
            single = [f for f in q["single"] if threshold is None or f[0] >= threshold]
            single_hits = judged(single, q["truths"], q["recording"])
            tp, n_found, n_truth = tp + sum(hits), n_found + len(found), n_truth + q["annotated"]
            tp_single, n_single = tp_single + sum(single_hits), n_single + len(single)
            aps.append(average_precision(hits, q["annotated"]))
            aps_single.append(average_precision(single_hits, q["annotated"]))
        table.append({"min_score": threshold, "precision": tp / max(n_found, 1), "recall": tp / max(n_truth, 1),
                      "map": float(np.mean(aps)), "single_precision": tp_single / max(n_single, 1),
                      "single_recall": tp_single / max(n_truth, 1), "single_map": float(np.mean(aps_single))})
    return table


def when_first_is_right(per_query: list[dict]) -> dict:
    """The default rule's precision and recall within the right recording, over the queries whose
    first answer is it: how well places are found once the recording is."""
    right = [q for q in per_query if q["single"] and q["single"][0][1] == q["recording"]]
    found = [[f for f in q["default"] if f[1] == q["recording"]] for q in right]
    tp = sum(sum(judged(f, q["truths"], q["recording"])) for f, q in zip(found, right, strict=True))
    return {"queries": len(right), "precision": tp / max(sum(map(len, found)), 1),
            "recall": tp / max(sum(q["annotated"] for q in right), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("--ground-truth", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--hauptstimme", type=Path, default=None, metavar="RENDERED_DIR",
                        help="the hauptstimme queries against these renderings (their X.timing.json)")
    parser.add_argument("--min-score", type=float, nargs="+", default=[0.7, 0.75, 0.8, 0.85])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    store = IndexStore.open(args.index, readonly=True)
    lowest = min(args.min_score)
    if args.hauptstimme:
        sets = hauptstimme_queries(store, args.ground_truth or SHARED / "benchmarks/hauptstimme/ground_truth.csv",
                                   args.data or SHARED / "data/hauptstimme", args.hauptstimme, lowest)
        note_errors: list[float] = []
    else:
        bach, note_errors = bach_violin_queries(
            store, args.ground_truth or SHARED / "benchmarks/bach_violin/ground_truth.csv",
            args.data or SHARED / "data/bach_violin", lowest)
        sets = {"recurring notes": bach}
    store.close()
    summary: dict = {}
    for name, per_query in sets.items():
        table = precision_recall(per_query, args.min_score)
        summary[name] = {"queries": len(per_query), "annotated": sum(q["annotated"] for q in per_query),
                         "thresholds": table, "first_right": when_first_is_right(per_query),
                         "per_query": per_query}
        print(f"{name}: {len(per_query)} queries, {summary[name]['annotated']} annotated occurrences")
        print("| min score | precision | recall | MAP | single span: precision | recall | MAP |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for r in table:
            rule = "default" if r["min_score"] is None else f"{r['min_score']:.2f}"
            print(f"| {rule} | {r['precision']:.3f} | {r['recall']:.3f} | {r['map']:.3f} | "
                  f"{r['single_precision']:.3f} | {r['single_recall']:.3f} | {r['single_map']:.3f} |")
        first = summary[name]["first_right"]
        print(f"default rule in the right recording, {first['queries']} queries answered right first: "
              f"precision {first['precision']:.3f}, recall {first['recall']:.3f}")
    errors = np.array(note_errors)
    if len(errors):
        summary["note_time_error_ms"] = {"notes": len(errors), "median": float(np.median(errors)),
                                         "p90": float(np.percentile(errors, 90))}
        print(f"note times: {len(errors)} onsets, error median {np.median(errors):.0f} ms, "
              f"90th percentile {np.percentile(errors, 90):.0f} ms")
    keep_json(args.json, summary)


if __name__ == "__main__":
    main()
