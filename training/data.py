"""``--data`` specifications → training recordings, validation recordings and queries, and the card's record.

- ``hauptstimme=AUDIO_DIR``: the rendered Hauptstimme movements in ``AUDIO_DIR``; the ``train``
  works of :data:`~training.pairs.HAUPTSTIMME_SPLITS` train, the ``selection`` works validate
  with their benchmark queries; the ``report`` works are never loaded.
- ``bach_violin``: the aligned bach_violin recordings (NonCommercial ones left out), all for training.
- ``PAIRS.csv``: a user's pairs (:func:`~training.pairs.csv_pairs`); rows whose ``split``
  column says ``selection`` validate (with ``--validation GROUND_TRUTH.csv``), the others train.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.ground_truth import read_ground_truth
from training.pairs import (
    HAUPTSTIMME_SPLITS,
    PairError,
    PairRecording,
    bach_violin_pairs,
    csv_pairs,
    hauptstimme_pairs,
)

__all__ = ["TrainingData", "load_training_data"]


@dataclass
class TrainingData:
    """Recordings to train on and to validate with, the validation queries, and a record for the card."""

    train: list[PairRecording] = field(default_factory=list)
    selection: list[PairRecording] = field(default_factory=list)
    queries: list[dict] = field(default_factory=list)

    def card(self) -> dict:
        def listing(recs: list[PairRecording]) -> list[dict]:
            return [{"name": r.name, "work": r.work, "licence": r.licence, "aligned": r.aligned} for r in recs]

        return {
            "train": listing(self.train),
            "selection": listing(self.selection),
            "validation_queries": sum(q["recording"] in {r.name for r in self.selection} for q in self.queries),
            "report_works_never_used": list(HAUPTSTIMME_SPLITS["report"]),
        }


def load_training_data(specs: list[str], shared: Path, cache_dir: Path, validation_csv: Path | None = None
                       ) -> TrainingData:
    """Build :class:`TrainingData` from ``--data`` specifications (see the module docstring)."""
    data = TrainingData()
    for spec in specs:
        kind, _, value = spec.partition("=")
        if kind == "hauptstimme":
            if not value:
                raise PairError("--data hauptstimme=AUDIO_DIR: name the folder of the renderings")
            scores = shared / "data" / "hauptstimme"
            data.train += hauptstimme_pairs(scores, value, HAUPTSTIMME_SPLITS["train"], cache_dir)
            data.selection += hauptstimme_pairs(scores, value, HAUPTSTIMME_SPLITS["selection"], cache_dir)
            data.queries += read_ground_truth(shared / "benchmarks" / "hauptstimme" / "ground_truth.csv")
        elif kind == "bach_violin":
            data.train += bach_violin_pairs(Path(value) if value else shared / "data" / "bach_violin")
        elif Path(spec).suffix.lower() == ".csv":
            pairs = csv_pairs(spec)
            splits = _csv_splits(Path(spec))
            data.train += [p for p, s in zip(pairs, splits, strict=True) if s != "selection"]
            data.selection += [p for p, s in zip(pairs, splits, strict=True) if s == "selection"]
        else:
            raise PairError(f"--data {spec}: expected hauptstimme=AUDIO_DIR, bach_violin[=DIR] or a pairs .csv")
    if validation_csv is not None:
        data.queries += read_ground_truth(validation_csv)
    if not data.train:
        raise PairError(f"--data {' '.join(specs)}: no training recordings")
    return data


def _csv_splits(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return [(row.get("split") or "train").strip().lower() for row in csv.DictReader(f)]
