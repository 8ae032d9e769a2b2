"""Every occurrence and note by note, measured on bach_violin's note alignments.

    python bench/occurrences.py INDEX [--ground-truth CSV] [--data DIR] [--min-score 0.75 0.8 …] [--json OUT]

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
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.store import IndexStore  # noqa: E402
from retrieval.ground_truth import read_ground_truth  # noqa: E402
from retrieval.query import QueryOptions, query  # noqa: E402
from retrieval.theme import load_theme  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("--ground-truth", type=Path, default=SHARED / "benchmarks/bach_violin/ground_truth.csv")
    parser.add_argument("--data", type=Path, default=SHARED / "data/bach_violin")
    parser.add_argument("--min-score", type=float, nargs="+", default=[0.7, 0.75, 0.8, 0.85])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    aligned = {p.stem for p in (args.data / "alignments").glob("*.csv")}
    rows = [r for r in read_ground_truth(args.ground_truth) if r["recording"] in aligned]
    store = IndexStore.open(args.index, readonly=True)
    themes = {row["query_id"]: load_theme(row["query"]) for row in rows}
    movements = aligned_movements(args.data, rows, themes)
    per_query, note_errors = [], []
    lowest = min(args.min_score)
    for row in rows:
        theme, right = themes[row["query_id"]], row["recording"]
        occurrences = annotated(theme, *movements[right])
        if not occurrences:
            continue
        truths = [(o[0][0], o[-1][1]) for o in occurrences]
        result = query(store, theme, QueryOptions(occurrences=True, min_score=lowest))
        found = [(o.score, Path(o.path).stem, o.start, o.end, o.tempo_scale) for o in result.occurrences]
        chosen = [(o.score, Path(o.path).stem, o.start, o.end, o.tempo_scale)
                  for o in query(store, theme, QueryOptions(occurrences=True)).occurrences]
        best = result.matches[0] if result.matches else None
        single = [(best.score, Path(best.path).stem, best.start, best.end, best.tempo_scale)] if best else []
        per_query.append({"query_id": row["query_id"], "recording": right, "annotated": len(truths), "found": found,
                          "default": chosen, "single": single, "truths": truths, "true_start": row.get("start_s")})
        if best is not None and Path(best.path).stem == right and best.notes:
            covered = [o for o in occurrences if covers((best.start, best.end), (o[0][0], o[-1][1]))]
            if covered:
                onsets = sorted({round(n.time, 3) for n in best.notes})
                truth = [s[0] for s in covered[0]]
                if len(onsets) == len(truth):
                    note_errors.extend(abs(a - b) * 1000 for a, b in zip(onsets, truth, strict=True))
    store.close()
    table = []
    for threshold in [None, *sorted(args.min_score)]:
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
    errors = np.array(note_errors)
    summary = {"queries": len(per_query), "annotated": sum(q["annotated"] for q in per_query),
               "thresholds": table, "per_query": per_query,
               "note_time_error_ms": {"notes": len(errors), "median": float(np.median(errors)) if len(errors) else None,
                                      "p90": float(np.percentile(errors, 90)) if len(errors) else None}}
    print(f"{summary['queries']} queries, {summary['annotated']} annotated occurrences")
    print("| min score | precision | recall | MAP | single span: precision | recall | MAP |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in table:
        rule = "default" if r["min_score"] is None else f"{r['min_score']:.2f}"
        print(f"| {rule} | {r['precision']:.3f} | {r['recall']:.3f} | {r['map']:.3f} | "
              f"{r['single_precision']:.3f} | {r['single_recall']:.3f} | {r['single_map']:.3f} |")
    e = summary["note_time_error_ms"]
    if e["notes"]:
        print(f"note times: {e['notes']} onsets, error median {e['median']:.0f} ms, 90th percentile {e['p90']:.0f} ms")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
