"""Distil the averaged probabilities of several pretrained models into one network, from audio alone.

    python experiments/distill.py AUDIO_DIR WORK_DIR OUT --steps 275 [--init MODEL] [--seed 0] [--lr 1e-4]

``v2_ctc_mean`` (the five ``v2_ctc`` folds averaged) finds orchestral melody themes better than any
single model but costs five networks. A student network (``--init``: a pretrained id or a trained
model's folder) learns to give the teacher's class probabilities frame by frame (KL divergence of
teacher to student), so no score and no label is needed: only audio. AUDIO_DIR: the Hauptstimme
renderings (``bench/build_hauptstimme.sh``), of which the recordings of the ``--split`` works are
used (:data:`training.pairs.HAUPTSTIMME_SPLITS`; default ``train``: the selection and report
works stay unheard). WORK_DIR holds the caches, shared with ``experiments/pretrained_choices.py``: the
front end ``hcqt/`` and each teacher's probabilities ``probs/MODEL/NAME.npy`` (float16).

A step draws ``--batch-size`` excerpts of 10 s, each from a recording chosen in proportion to its
length, at a uniform random start; the data order depends only on ``--seed``. OUT receives
``weights.safetensors`` (usable as ``--model OUT`` everywhere) and ``model.json`` (teacher, init,
steps, seed, loss by 10 steps), written atomically at the end and on Ctrl-C (then with the steps
done). Retrieval is measured afterwards, as for any model: ``cli.py index --model OUT`` and
``cli.py evaluate`` (docs/experiments.md, E10, has the commands). ``--device cuda`` trains
on a GPU (the teacher's probabilities are computed once, on the CPU, and cached).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from pretrained_choices import probabilities
from safetensors.torch import save_file
from torch.nn import functional as F
from tqdm import tqdm

from models.extractor_factory import family_members
from models.files import atomic_write, atomic_write_text
from models.frontend import FEATURE_RATE
from models.network import ChromaNet
from models.registry import load
from training.cache import HCQTCache, network_input
from training.loop import network_logits
from training.pairs import HAUPTSTIMME_SPLITS, hauptstimme_work

EXCERPT_FRAMES = 10 * FEATURE_RATE


def distillation_loss(logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) per frame, averaged: ``logits (B, T, 13)``, ``teacher (B, T, 13)``
    probabilities (each frame renormalised to sum 1, as float16 caches do not quite)."""
    teacher = teacher / teacher.sum(-1, keepdim=True)
    return F.kl_div(F.log_softmax(logits, -1), teacher, reduction="batchmean") / logits.shape[1]


def sample_batch(inputs: dict[str, np.ndarray], teacher: dict[str, np.ndarray], names: list[str],
                 weights: np.ndarray, context: int, size: int, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(network input (B, 6, T + 2·context, 216), teacher probabilities (B, T, 13))``, T 10 s."""
    xs, ts = [], []
    for name in rng.choice(names, size, p=weights):
        start = int(rng.integers(context, len(inputs[name]) - EXCERPT_FRAMES - context))
        xs.append(network_input(inputs[name][start - context : start + EXCERPT_FRAMES + context]))
        ts.append(teacher[name][start : start + EXCERPT_FRAMES].astype(np.float32))
    return torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(np.stack(ts))


def save(out: Path, net: ChromaNet, card: dict) -> None:
    """Weights and model card of the student, each written atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write(out / "weights.safetensors", lambda tmp: save_file(tensors, tmp))
    atomic_write_text(out / "model.json", json.dumps(card, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--init", default="v2_ctc_train123valid4", help="pretrained id or trained model folder")
    parser.add_argument("--teacher", default="v2_ctc", help="family whose folds are averaged (as v2_ctc_mean)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, help="HCQT cache folder (default WORK/hcqt)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    works = HAUPTSTIMME_SPLITS[args.split]
    audios = [a for a in sorted(args.audio_dir.glob("*.wav")) if hauptstimme_work(a.stem) in works]
    if not audios:
        parser.error(f"{args.audio_dir}: no renderings of the {args.split} works")
    cache = HCQTCache(args.cache or args.work / "hcqt")
    folds = family_members(args.teacher)
    fold_probs = [probabilities(m, audios, cache, args.work / "probs" / m) for m in folds]
    teacher = {a.stem: np.mean([p[a.stem].astype(np.float32) for p in fold_probs], axis=0) for a in audios}
    inputs = {a.stem: cache.get(a) for a in audios}
    net = load(args.init, args.device).train()
    context = net.receptive_field
    names = [n for n in inputs if len(inputs[n]) > EXCERPT_FRAMES + 2 * context]
    weights = np.array([len(inputs[n]) for n in names], dtype=float)
    optimiser = torch.optim.Adam(net.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    losses: list[float] = []
    card = {"format": "score-audio-retrieval/chroma-model/1", "init": args.init, "loss": "distillation",
            "teacher": f"{args.teacher}_mean ({', '.join(folds)})", "training_audio": [a.name for a in audios],
            "lr": args.lr, "batch_size": args.batch_size, "excerpt_seconds": EXCERPT_FRAMES / FEATURE_RATE,
            "seed": args.seed, "device": args.device,
            "versions": {"python": platform.python_version(), "torch": torch.__version__}}
    try:
        for _ in tqdm(range(args.steps), desc="distilling", unit="step", dynamic_ncols=True):
            x, t = sample_batch(inputs, teacher, names, weights / weights.sum(), context, args.batch_size, rng)
            loss = distillation_loss(network_logits(net, x.to(args.device), context), t.to(args.device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
    finally:
        card.update(steps=len(losses), loss_by_10_steps=[round(float(np.mean(losses[i : i + 10])), 4)
                                                         for i in range(0, len(losses), 10)])
        save(args.out, net.eval(), card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
