"""Would full-texture themes be ranked better by deep chroma and CENS together than by either?

    python experiments/late_fusion.py GROUND_TRUTH.csv DEEP.db CENS.db [--json-out OUT.json]

``DEEP.db`` is an index of a collection with the default model (read without the CENS frames a
default index now keeps: :class:`DeepOnly`), ``CENS.db`` the same audio with
``--preset fast --model cens``. Every theme is aligned with every recording of both (all
candidates re-ranked, so the candidate stage plays no part) and each recording gets the mean of
its two DTW scores (``mean``; also z-scored per theme, ``z``, and reciprocal-rank fusion, ``rrf``).
``rule`` uses the mean for themes the default renders through audio (full textures,
:func:`retrieval.variants.rendering_for`) and deep chroma alone for the rest (melody themes), so
that orchestral melody themes, for which CENS costs 0.11, are not touched. Prints the MRR of each
ranking, overall and on the full-texture themes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.store import IndexStore  # noqa: E402
from retrieval.evaluation import reciprocal_rank  # noqa: E402
from retrieval.ground_truth import read_ground_truth  # noqa: E402
from retrieval.query import query  # noqa: E402
from retrieval.theme import load_theme  # noqa: E402
from retrieval.variants import rendering_for  # noqa: E402

RRF_K = 60
"""Reciprocal-rank fusion's constant (Cormack et al., SIGIR 2009)."""


class DeepOnly:
    """An index seen without its CENS frames, so that every theme is ranked by the deep chroma alone."""

    def __init__(self, store: IndexStore) -> None:
        self._store = store

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def cens(self, recording_id: int) -> None:
        return None


def scores(store: IndexStore | DeepOnly, theme: str) -> dict[str, float]:
    """Every recording's DTW score for ``theme`` (stem → score), all of them re-ranked."""
    n = len(store.recordings("indexed"))
    return {Path(m.path).stem: m.score for m in query(store, theme, top=n, candidates=n).matches}


def fused_rankings(deep: dict[str, float], cens: dict[str, float]) -> dict[str, list[str]]:
    """The recordings both rank, best first, by each score and each fusion of the two."""
    names = sorted(set(deep) & set(cens))
    d, c = np.array([deep[k] for k in names]), np.array([cens[k] for k in names])

    def ranked(values: np.ndarray) -> list[str]:
        return [names[i] for i in np.argsort(-values, kind="stable")]

    def z(values: np.ndarray) -> np.ndarray:
        return (values - values.mean()) / (values.std() + 1e-9)

    place_d = {k: i for i, k in enumerate(ranked(d))}
    place_c = {k: i for i, k in enumerate(ranked(c))}
    rrf = np.array([1 / (RRF_K + place_d[k]) + 1 / (RRF_K + place_c[k]) for k in names])
    return {"deep": ranked(d), "cens": ranked(c), "mean": ranked(d + c), "z": ranked(z(d) + z(c)),
            "rrf": ranked(rrf)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ground_truth", type=Path)
    parser.add_argument("deep", type=Path)
    parser.add_argument("cens", type=Path)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    deep, cens = DeepOnly(IndexStore.open(args.deep, readonly=True)), IndexStore.open(args.cens, readonly=True)
    found: dict[str, list[float]] = {}
    textured: list[bool] = []
    for row in read_ground_truth(args.ground_truth):
        rankings = fused_rankings(scores(deep, row["query"]), scores(cens, row["query"]))
        textured.append(rendering_for(load_theme(row["query"])) == "synthesised")
        rankings["rule"] = rankings["mean"] if textured[-1] else rankings["deep"]
        for name, ranking in rankings.items():
            found.setdefault(name, []).append(reciprocal_rank(ranking, row["recording"]))
    chordal = np.array(textured)
    print(f"{len(chordal)} themes, {chordal.sum()} of full texture")
    print("| ranking | MRR | MRR, full-texture themes |")
    print("|---|---:|---:|")
    for name, values in found.items():
        v = np.array(values)
        print(f"| {name} | {v.mean():.3f} | {v[chordal].mean() if chordal.any() else float('nan'):.3f} |")
    if args.json_out:
        args.json_out.write_text(json.dumps({"textured": textured, "reciprocal_ranks": found}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
