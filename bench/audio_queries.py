"""A recording as the query, measured on bach_violin: real and rendered excerpts of the benchmark's passages.

    python bench/audio_queries.py INDEX RENDERED_DIR [--seconds 5] [--json OUT]

INDEX holds the bach_violin collection (``bench/build_bach_violin.sh``) plus RENDERED_DIR: the
nine aligned movements rendered from their scores (``python bench/render_scores.py RENDERED_DIR
…/scores/bwv1002_mov6.mxl … --program 40 --tempo-variation 0.1 --room``), so that each passage
exists in two performances. For every score query of those movements, the same passage is cut
(at least ``--seconds`` long) from

- the real recording (at the ground truth's ``start_s``): its own recording must come first, at the
  right place (start within 0.5 s); searched with ``exclude_self``, the right answer is the
  rendering of its movement;
- the rendering (where its timing file puts the passage's first note), searched with
  ``exclude_self``: the right answer is the real recording;

beside the score query of the same passage on the same index (right: the real recording, or the
rendering). Reported: MRR and top-1 of each, the scores of own-source matches and of the other
performance (:data:`retrieval.excerpt.SELF_SIMILARITY` must lie between), and how many excerpts'
first answers were marked confident, and of those how many were wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from occurrences import SHARED, aligned_movements, annotated, movement_onsets  # noqa: E402

from db.store import IndexStore  # noqa: E402
from models.audio import decode_audio  # noqa: E402
from models.frontend import SAMPLE_RATE  # noqa: E402
from retrieval.ground_truth import read_ground_truth  # noqa: E402
from retrieval.query import QueryOptions, query  # noqa: E402
from retrieval.theme import load_theme  # noqa: E402
from training.pairs import rendering_clock  # noqa: E402


def rank_of(result, stem: str) -> int | None:
    return next((m.rank for m in result.matches if Path(m.path).stem == stem), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("rendered", type=Path)
    parser.add_argument("--ground-truth", type=Path, default=SHARED / "benchmarks/bach_violin/ground_truth.csv")
    parser.add_argument("--data", type=Path, default=SHARED / "data/bach_violin")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    store = IndexStore.open(args.index, readonly=True)
    recordings = {Path(r.path).stem: r.path for r in store.recordings("indexed")}
    rows = [r for r in read_ground_truth(args.ground_truth)
            if r.get("start_s") and r["recording"].split("_", 1)[1] in recordings and r["recording"] in recordings]
    themes = {row["query_id"]: load_theme(row["query"]) for row in rows}
    movements = aligned_movements(args.data, rows, themes)
    onsets = {stem: movement_onsets(args.data, stem) for stem in movements}
    audio: dict[str, np.ndarray] = {}
    outcomes = {"score_to_real": [], "score_to_rendering": [], "real_excerpt_to_rendering": [],
                "rendered_excerpt_to_real": [], "real_excerpt_to_itself": []}
    self_scores, self_start_errors, other_scores = [], [], []
    confident = {"right": 0, "wrong": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            real, movement = row["recording"], row["recording"].split("_", 1)[1]
            theme = themes[row["query_id"]]
            score_result = query(store, theme, QueryOptions())
            outcomes["score_to_real"].append(rank_of(score_result, real))
            outcomes["score_to_rendering"].append(rank_of(score_result, movement))
            start = float(row["start_s"])
            length = max(args.seconds, float(row["end_s"]) - start)
            for stem in (real, movement):
                if stem not in audio:
                    audio[stem] = decode_audio(recordings[stem]).samples
            cut = Path(tmp) / f"{row['query_id']}_real.wav"
            sf.write(cut, audio[real][int(start * SAMPLE_RATE): int((start + length) * SAMPLE_RATE)], SAMPLE_RATE)
            own = query(store, cut, QueryOptions())
            outcomes["real_excerpt_to_itself"].append(rank_of(own, real))
            other = query(store, cut, QueryOptions(exclude_self=True))
            outcomes["real_excerpt_to_rendering"].append(rank_of(other, movement))
            _count_confident(confident, other, movement)
            other_scores += [m.score for m in other.matches if Path(m.path).stem == movement]
            if own.matches and Path(own.matches[0].path).stem == real:
                self_scores.append(own.matches[0].score)
                self_start_errors.append(abs(own.matches[0].start - start))
            offset = passage_offset(movements[real], onsets[real], theme, start)
            if offset is None:
                continue
            clock = rendering_clock(args.rendered / f"{movement}.timing.json")
            at = clock(offset)
            cut = Path(tmp) / f"{row['query_id']}_rendered.wav"
            sf.write(cut, audio[movement][int(at * SAMPLE_RATE): int((at + length) * SAMPLE_RATE)], SAMPLE_RATE)
            other = query(store, cut, QueryOptions(exclude_self=True))
            outcomes["rendered_excerpt_to_real"].append(rank_of(other, real))
            _count_confident(confident, other, real)
            other_scores += [m.score for m in other.matches if Path(m.path).stem == real]
    store.close()
    summary: dict = {name: {"queries": len(ranks), "mrr": float(np.mean([1 / r if r else 0 for r in ranks])),
                            "top1": float(np.mean([r == 1 for r in ranks]))}
                     for name, ranks in outcomes.items() if ranks}
    summary["self_scores"] = {"min": float(min(self_scores)), "median": float(np.median(self_scores))}
    summary["other_performance_scores"] = {"max": float(max(other_scores)), "median": float(np.median(other_scores))}
    summary["self_start_within_0.5s"] = float(np.mean(np.array(self_start_errors) <= 0.5))
    summary["other_performance_confident"] = confident
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "outcomes": outcomes}, indent=2))


def _count_confident(counts: dict, result, right: str) -> None:
    """Add an excerpt's first answer to ``counts`` when it is marked confident, as right or wrong."""
    if result.matches and result.matches[0].confident:
        counts["right" if Path(result.matches[0].path).stem == right else "wrong"] += 1


def passage_offset(movement: tuple[list, list], onsets: list[float], theme, start_s: float) -> float | None:
    """Score offset (quarters) of the passage's occurrence in the movement nearest ``start_s``
    (``movement``: :func:`occurrences.aligned_movements`' groups and spans)."""
    groups, spans = movement
    found = [o[0][0] for o in annotated(theme, groups, [(i, i) for i in range(len(groups))])]  # first group's index
    if not found:
        return None
    return onsets[min(found, key=lambda i: abs(spans[i][0] - start_s))]


if __name__ == "__main__":
    main()
