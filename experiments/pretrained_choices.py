"""What the pretrained models give on orchestral melody queries without training: each variant,
averages of their probabilities, and the retrieval rate.

    python experiments/pretrained_choices.py AUDIO_DIR WORK_DIR [--split train,selection] [--cache HCQT_DIR]
        [--models ID ...] [--rates DOWNSAMPLE:SMOOTHING ...] [--ensembles SPEC ...]

AUDIO_DIR: the Hauptstimme renderings (``bench/build_hauptstimme.sh``); WORK_DIR: the class
probabilities ``(T, 13)`` of every model and recording (float16, ``probs/MODEL/NAME.npy``) and
the results. Queries: the hauptstimme ground truth of the works of ``--split``
(:data:`training.pairs.HAUPTSTIMME_SPLITS`; none of the pretrained models saw any of them, so
the train and selection works together choose, and the report works are kept for the choice made;
a shipped model such as ``hauptstimme_melody_ctc`` learned from the train works, so with it only
``--split selection`` is unseen).

Each choice is searched exhaustively (subsequence DTW over whole recordings) at the theme's
nominal tempo only, which keeps a run of ~10 choices × 224 queries within minutes on 2 cores
and measures the features rather than the ANN stage or the tempo search. Choices: every model
of ``--models`` at the index's default settings; the mean of the five ``v2_ctc`` folds (the id
``v2_ctc_mean`` an index accepts) and of all ``--models``; the default model and the all-model
mean at each ``--rates`` (``downsample:smoothing``; 1:5 is 25 Hz); each of ``--ensembles`` (model
families — ``v2_strong`` for its five folds, as ``v2_strong_mean`` — and model ids, pretrained or
shipped, joined by ``+``, e.g. ``v1_ctc+v2_ctc``: all their probabilities averaged) at each
``--rates``. Prints a Markdown table with each choice's difference to the default and its 95 %
paired-bootstrap interval; writes
``WORK_DIR/pretrained_choices_<split>.json`` (every query's reciprocal rank).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from melody_context import split_rows
from tqdm import tqdm

from models.extractor import ChromaExtractor
from models.extractor_factory import family_members
from models.files import atomic_write_npy, atomic_write_text
from models.network import chroma_from_probabilities
from models.registry import DEFAULT_MODEL, MODEL_IDS, SHIPPED_IDS
from models.retrieval_features import COARSE_RATES, IndexSettings, retrieval_features
from retrieval.evaluation import paired_bootstrap
from training.cache import HCQTCache, network_input
from training.validation import evaluate_features

DEFAULT_MODELS = ("v2_ctc_train123valid4", "v2_ctc_train234valid5", "v2_ctc_train345valid1", "v2_ctc_train451valid2",
                  "v2_ctc_train512valid3", "v2_strong_train123valid4", "v2_linear_train123valid4")


def probabilities(model: str, audios: list[Path], cache: HCQTCache, folder: Path) -> dict[str, np.ndarray]:
    """Class probabilities ``(T, 13)`` float16 of ``model`` for each recording, cached in ``folder``."""
    extractor, out = None, {}
    for audio in tqdm(audios, desc=model, unit="rec", dynamic_ncols=True):
        target = folder / f"{audio.stem}.npy"
        if not target.is_file():
            extractor = extractor or ChromaExtractor(model)
            probs = extractor.network_many([network_input(cache.get(audio))])[0].numpy().astype(np.float16)
            atomic_write_npy(target, probs)
        out[audio.stem] = np.load(target, allow_pickle=False)
    return out


def mean_features(probs: list[dict[str, np.ndarray]], names: list[str], settings: IndexSettings) -> list[np.ndarray]:
    """Retrieval features ``(T', 12)`` of each recording from the mean of several models' probabilities."""
    out = []
    for name in names:
        mean = torch.from_numpy(np.mean([p[name].astype(np.float32) for p in probs], axis=0))
        out.append(retrieval_features(chroma_from_probabilities(mean).T.numpy(), settings.downsample,
                                      settings.smoothing))
    return out


def ensemble_members(spec: str) -> list[str]:
    """Model ids of an ensemble ``"v1_ctc+v2_ctc"``: each part a model id (pretrained or shipped, e.g.
    ``hauptstimme_melody_ctc``) or a family's five folds."""
    ids = MODEL_IDS + SHIPPED_IDS
    return [m for part in spec.split("+") for m in ([part] if part in ids else family_members(part))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--split", default="train,selection", help="comma-separated splits whose queries count")
    parser.add_argument("--cache", type=Path, help="HCQT cache folder (default WORK/hcqt)")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--rates", nargs="*", default=["1:5", "1:3"], help="downsample:smoothing pairs")
    parser.add_argument("--ensembles", nargs="*", default=[],
                        help="'+'-joined model families (v2_ctc, v1_ctc, ...) or ids (pretrained or shipped) "
                             "whose probabilities are averaged")
    args = parser.parse_args(argv)
    models = [DEFAULT_MODEL, *(m for m in args.models if m != DEFAULT_MODEL)]  # the first row is the baseline
    folds = family_members("v2_ctc")
    ensembles = {spec: ensemble_members(spec) for spec in args.ensembles}
    audios = sorted(args.audio_dir.glob("*.wav"))
    names = [a.stem for a in audios]
    rows = [row for split in args.split.split(",") for row in split_rows(split)]
    cache = HCQTCache(args.cache or args.work / "hcqt")
    needed = set(models) | set(folds) | {m for members in ensembles.values() for m in members}
    probs = {m: probabilities(m, audios, cache, args.work / "probs" / m) for m in sorted(needed)}
    default = IndexSettings(**COARSE_RATES)  # 12.5 Hz, as the documented runs
    choices = [(m, [m], default) for m in models]
    choices += [("v2_ctc_mean", folds, default), (f"mean of {len(models)}", models, default)]
    for rate in args.rates:
        downsample, smoothing = (int(v) for v in rate.split(":"))
        settings = replace(default, downsample=downsample, smoothing=smoothing)
        choices += [(f"{DEFAULT_MODEL} at {rate}", [DEFAULT_MODEL], settings),
                    (f"mean of {len(models)} at {rate}", models, settings)]
        choices += [(f"{spec} ({len(members)} models) at {rate}", members, settings)
                    for spec, members in ensembles.items()]
    print(f"{len(rows)} queries ({args.split}), exhaustive DTW at the nominal tempo")
    print("| choice | MRR | top-1 | top-10 | − default [95 %] |\n|---|---:|---:|---:|---|")
    results, base = {}, None
    for label, models, settings in choices:
        features = mean_features([probs[m] for m in models], names, settings)
        metrics, table = evaluate_features(audios, features, rows, settings=settings, exhaustive=True,
                                           tempo_scales=(1.0,))
        rr = [1.0 / q["rank"] if q["rank"] else 0.0 for q in table]
        base = base if base is not None else rr
        diff, low, high = paired_bootstrap(base, rr)
        results[label] = {"models": models, "downsample": settings.downsample, "smoothing": settings.smoothing,
                          "mrr": metrics["mrr"], "top1": metrics["top1"], "top10": metrics["top10"],
                          "difference": [diff, low, high], "reciprocal_ranks": rr}
        print(f"| {label} | {metrics['mrr']:.3f} | {metrics['top1']:.3f} | {metrics['top10']:.3f} | "
              f"{diff:+.3f} [{low:+.3f}, {high:+.3f}] |", flush=True)
    out = args.work / f"pretrained_choices_{args.split.replace(',', '+')}.json"
    atomic_write_text(out, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
