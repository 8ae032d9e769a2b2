"""Validation by retrieval: the engine's own search over held-out recordings, as the report measures.

Each epoch the network being trained extracts the validation recordings' chroma (from the cached
front end), a small index is built from them in a temporary folder, and the held-out works'
theme queries are searched (ANN + DTW re-ranking, symbolic rendering): MRR, top-1 and top-10.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from db.store import IndexStore
from models.errors import ParameterError
from models.extractor import ChromaExtractor
from models.network import ChromaNet, chroma_from_probabilities
from models.retrieval_features import IndexSettings, retrieval_features
from retrieval.ground_truth import evaluate
from retrieval.theme import load_theme
from training.cache import HCQTCache, network_input
from training.pairs import PairRecording

__all__ = ["RetrievalValidation", "evaluate_features"]


class RetrievalValidation:
    """``net → {"mrr", "top1", "top10"}`` on ``rows`` of a ground-truth CSV over ``recordings``.

    Themes are parsed once; rows whose recording is not among ``recordings`` are dropped.
    """

    def __init__(self, recordings: list[PairRecording], rows: list[dict], cache: HCQTCache,
                 device: str = "cpu") -> None:
        names = {r.name for r in recordings}
        self.rows = [{**row, "query": load_theme(row["query"])} for row in rows if row["recording"] in names]
        if not self.rows:
            raise ParameterError("no validation queries: no ground-truth recording is a validation recording")
        self.recordings, self.cache, self.device = recordings, cache, device

    def features(self, net: ChromaNet) -> list[np.ndarray]:
        """Retrieval features ``(T', 12)`` of every validation recording with ``net``."""
        settings = IndexSettings()
        extractor = ChromaExtractor(device=self.device, net=net)
        out = []
        for rec in self.recordings:
            x = torch.from_numpy(network_input(self.cache.get(rec.audio)))
            chroma = chroma_from_probabilities(extractor.network(x)).T.cpu().numpy()
            out.append(retrieval_features(chroma, settings.downsample, settings.smoothing))
        return out

    def __call__(self, net: ChromaNet) -> dict[str, float]:
        metrics, _ = evaluate_features([r.audio for r in self.recordings], self.features(net), self.rows)
        return {"mrr": metrics["mrr"], "top1": metrics["top1"], "top10": metrics["top10"]}


def evaluate_features(audios: list[Path], features: list[np.ndarray], rows: list[dict],
                      settings: IndexSettings | None = None, **options) -> tuple[dict, list[dict]]:
    """Search ``rows`` (ground truth with parsed ``query`` themes) in a temporary index of
    ``features`` (retrieval features ``(T', 12)`` of each audio file, as stored by the indexer,
    computed with ``settings``: default :class:`~models.retrieval_features.IndexSettings`,
    the index's; the queries are cut with the same), without writing anything else:
    ``(metrics, per-query rows)`` of
    :func:`retrieval.ground_truth.evaluate` (``options``: its :class:`~retrieval.query.QueryOptions`
    fields, e.g. ``exhaustive=True``). Experiments and validation score features this way before
    any model is saved.
    """

    with tempfile.TemporaryDirectory(prefix="chroma_validation_") as folder:
        store = IndexStore.create(Path(folder) / "validation.db", settings or IndexSettings())
        try:
            for audio, feats in zip(audios, features, strict=True):
                stat = audio.stat()
                store.put_indexed({"path": str(audio), "size": stat.st_size, "mtime": stat.st_mtime, "hash": "",
                                   "duration": len(feats) / store.settings.rate, "sample_rate": None,
                                   "channels": None, "model_id": "training"}, feats)
            store.checkpoint()
            return evaluate(store, rows, top=10, **options)
        finally:
            store.close()
