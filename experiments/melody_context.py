"""Can seconds of context pick the melody out of equal-velocity orchestral audio? Two measurements.

    python experiments/melody_context.py head AUDIO_DIR WORK_DIR --loss strong [--epochs 8] [--report]
    python experiments/melody_context.py oracle AUDIO_DIR WORK_DIR [--accuracy 1 0.9 0.8 0.7 0.6]
    python experiments/melody_context.py score-oracle AUDIO_DIR WORK_DIR [--melody-weight 2 4]

AUDIO_DIR: the Hauptstimme renderings (``bench/build_hauptstimme.sh``), WORK_DIR: this script's
caches and results. Splits are :data:`training.pairs.HAUPTSTIMME_SPLITS`.

``head``: the pretrained network stays frozen; its pitch salience ``(T, 216)`` feeds a head of
dilated 1-D convolutions that sees ±1.28 s (the network alone sees ±0.2 s) and adds to the
network's 13 logits, starting at zero (epoch 0 is the pretrained model). Trained on the train works'
melody with ``ctc``, ``strong`` (frame-wise cross-entropy) or ``contrastive`` (each melody frame's
cosine score for its pitch class against every batch frame where that class is not the melody:
the quantity DTW sums); validated each epoch by retrieval MRR on the selection works, as
``cli.py train``, beside the share of their melody frames whose most probable class is the
melody's. ``--report`` then searches the report works' queries in the whole collection (ANN and
exhaustive) with the best epoch (by selection) and, for information, the last one.

``oracle``: no network — every recording's chroma is its melody itself (one pitch class per
note, from the renderer's timing; blank between notes), each note replaced by a wrong pitch class
with probability ``1 − accuracy``: how accurate a melody extractor must be for the report works'
MRR to reach a target.

``score-oracle``: every recording's chroma is its whole score's pitch classes at the renderer's
times (a perfect multi-pitch transcription, all parts, chords whole): each sounding pitch class 1
(*presence*), or the number of notes sounding it (*voices*, as loudness adds up at equal velocity),
or presence with the melody's pitch class raised to ``w`` (a melody ``w`` times as strong as
anything else); beside the melody alone. Would training towards all of the score's pitch classes
(chord-level targets) serve melody queries, and how strongly must a chroma mark the melody?
Results go to WORK_DIR as JSON and are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from models.audio import load_audio
from models.extractor import ChromaExtractor
from models.files import atomic_write_npy, atomic_write_text
from models.frontend import FEATURE_RATE, SAMPLE_RATE
from models.network import LEAKY_SLOPE, N_BINS, ChromaNet, chroma_from_probabilities
from models.retrieval_features import COARSE_RATES, IndexSettings, retrieval_features
from retrieval.ground_truth import read_ground_truth
from retrieval.theme import load_theme
from training.loop import batch_loss
from training.pairs import (
    HAUPTSTIMME_SPLITS,
    PairRecording,
    cut_excerpts,
    hauptstimme_pairs,
    hauptstimme_work,
    rendering_clock,
    score_notes,
)
from training.targets import BLANK, ctc_target, strong_target
from training.validation import evaluate_features

SHARED = Path(__file__).resolve().parents[2] / "shared"


class ContextHead(nn.Module):
    """Salience ``(B, T, 216)`` → the frozen network's logits plus a learned correction ``(B, T, 13)``."""

    def __init__(self, net: ChromaNet, hidden: int = 128, dilations: tuple[int, ...] = (1, 2, 4, 8, 16),
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.pool, self.blank = net.chroma_pool, net.blank.requires_grad_(False)
        self.inp = nn.Conv1d(N_BINS, hidden, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv1d(hidden, hidden, 3, padding=d, dilation=d) for d in dilations)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, 13)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.context = 1 + sum(dilations)  # frames on each side

    def forward(self, sal: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.inp(sal.transpose(1, 2)), LEAKY_SLOPE)
        for conv in self.blocks:
            h = h + F.leaky_relu(conv(self.drop(h)), LEAKY_SLOPE)
        base = torch.cat([sal @ self.pool, self.blank(sal)], dim=-1)
        return base + self.out(h.transpose(1, 2))


def contrastive_loss(logits: torch.Tensor, labels: list[np.ndarray], tau: float = 0.1, n_positive: int = 512
                     ) -> torch.Tensor:
    """Melody frames' cosine scores ``chroma[t, k]`` (``k`` their pitch class) against those of every
    frame whose melody is not ``k``, softmax at temperature ``tau``; ``labels`` frame-wise (blank: none)."""
    probs = torch.softmax(logits, dim=-1)[..., :12]
    chroma = probs / probs.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    melody = torch.cat([torch.from_numpy(t) for t in labels])
    chroma = torch.cat([c[: len(t)] for c, t in zip(chroma, labels, strict=True)])  # (N, 12)
    melody = torch.where(melody == BLANK, -1, melody)
    positive = torch.nonzero(melody >= 0)[:, 0]
    positive = positive[torch.randperm(len(positive))[:n_positive]]
    k = melody[positive]
    scores = chroma[:, k].T / tau  # (P, N)
    own = scores[torch.arange(len(positive)), positive]
    others = torch.where(melody[None, :] != k[:, None], scores, torch.full_like(scores, -1e4))
    return (torch.logsumexp(torch.cat([own[:, None], others], dim=1), dim=1) - own).mean()


def salience(audios: list[Path], folder: Path) -> dict[str, np.ndarray]:
    """The pretrained network's salience ``(T, 216)`` float16 of each recording, cached in ``folder``."""
    extractor, out = ChromaExtractor(), {}
    for audio in tqdm(audios, desc="salience", unit="rec", dynamic_ncols=True):
        target = folder / f"{audio.stem}.npy"
        if not target.is_file():
            y, _ = load_audio(audio, SAMPLE_RATE)
            sal = extractor.network_many([extractor.front_end(y)], fn=extractor.net.salience)[0]
            array = sal.numpy().astype(np.float16)
            atomic_write_npy(target, array)
        out[audio.stem] = np.load(target, allow_pickle=False)
    return out


def features_of(chroma: np.ndarray) -> np.ndarray:
    """Chroma ``(12, T)`` at 25 Hz → the index's retrieval features ``(T', 12)``."""
    settings = IndexSettings(**COARSE_RATES)  # 12.5 Hz, as the documented runs
    return retrieval_features(chroma, settings.downsample, settings.smoothing)


def split_rows(split: str) -> list[dict]:
    """The hauptstimme benchmark queries of one split's works, themes parsed."""
    rows = read_ground_truth(SHARED / "benchmarks" / "hauptstimme" / "ground_truth.csv")
    works = HAUPTSTIMME_SPLITS[split]
    return [{**r, "query": load_theme(r["query"])} for r in rows if hauptstimme_work(r["recording"]) in works]


def head_chroma(head: ContextHead, sal: np.ndarray) -> np.ndarray:
    """Chroma ``(12, T)`` of one recording through the head."""
    head.eval()
    with torch.inference_mode():
        logits = head(torch.from_numpy(sal.astype(np.float32))[None])[0]
    return chroma_from_probabilities(torch.softmax(logits, dim=-1)).T.numpy()


def search(head: ContextHead, sal: dict[str, np.ndarray], audio_dir: Path, names: list[str], rows: list[dict],
           exhaustive: bool = False) -> dict:
    metrics, table = evaluate_features([audio_dir / f"{n}.wav" for n in names],
                                       [features_of(head_chroma(head, sal[n])) for n in names], rows,
                                       exhaustive=exhaustive)
    return {"mrr": metrics["mrr"], "top1": metrics["top1"], "top10": metrics["top10"], "queries": table}


def melody_accuracy(head: ContextHead, sal: dict[str, np.ndarray], recordings: list[PairRecording]) -> float:
    """Share of melody frames whose most probable pitch class (blank aside) is the melody's."""
    hits = total = 0
    for recording in recordings:
        best = head_chroma(head, sal[recording.name]).argmax(axis=0)
        for note in recording.notes:
            a, b = int(note.onset * FEATURE_RATE), min(len(best), int(note.offset * FEATURE_RATE))
            hits += int((best[a:b] == note.pitch % 12).sum())
            total += max(0, b - a)
    return hits / total


def batches(excerpts: list, recordings: list[PairRecording], sal: dict[str, np.ndarray], context: int,
            order: np.ndarray, size: int, target):
    """``(salience (B, T + 2·context, 216), targets, lengths)`` batches in ``order``."""
    for first in range(0, len(order), size):
        chosen = [excerpts[i] for i in order[first : first + size]]
        x = np.zeros((len(chosen), max(e.n_frames for e in chosen) + 2 * context, N_BINS), np.float32)
        for b, e in enumerate(chosen):
            source = sal[recordings[e.recording].name]
            lo, hi = max(0, e.start - context), min(len(source), e.stop + context)
            at = context - (e.start - lo)
            x[b, at : at + hi - lo] = source[lo:hi]
        yield torch.from_numpy(x), [target(e) for e in chosen], [e.n_frames for e in chosen]


def run_head(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    scores = SHARED / "data" / "hauptstimme"
    sal = salience(sorted(args.audio_dir.glob("*.wav")), args.work / "salience")
    train = hauptstimme_pairs(scores, args.audio_dir, HAUPTSTIMME_SPLITS["train"], args.work / "cache")
    selection_pairs = hauptstimme_pairs(scores, args.audio_dir, HAUPTSTIMME_SPLITS["selection"], args.work / "cache")
    selection = [r.name for r in selection_pairs]
    selection_rows = split_rows("selection")
    excerpts = [e for i, r in enumerate(train) for e in cut_excerpts(i, r.notes, len(sal[r.name]))]
    from models.registry import load

    head = ContextHead(load(), dropout=args.dropout)
    target = ctc_target if args.loss == "ctc" else strong_target
    optimiser = torch.optim.Adam([p for p in head.parameters() if p.requires_grad], lr=args.lr)
    def validate() -> dict:
        return {"selection_mrr": search(head, sal, args.audio_dir, selection, selection_rows)["mrr"],
                "selection_melody_accuracy": melody_accuracy(head, sal, selection_pairs)}

    history = [{"epoch": 0, **validate()}]
    states = [{k: v.clone() for k, v in head.state_dict().items()}]
    print(history[-1], flush=True)
    for epoch in range(1, args.epochs + 1):
        head.train()
        order = np.random.default_rng([args.seed, epoch]).permutation(len(excerpts))
        losses = []
        for x, targets, lengths in batches(excerpts, train, sal, head.context, order, args.batch_size, target):
            logits = head(x)[:, head.context : x.shape[1] - head.context]
            if args.loss == "contrastive":
                loss = contrastive_loss(logits, targets)
            else:
                loss = batch_loss(logits, targets, lengths, args.loss)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), **validate()})
        states.append({k: v.clone() for k, v in head.state_dict().items()})
        print(history[-1], flush=True)
    best = max(range(len(history)), key=lambda e: history[e]["selection_mrr"])  # first of equals
    result = {"loss": args.loss, "lr": args.lr, "seed": args.seed, "history": history, "best_epoch": best}
    if args.report:
        rows, everything = split_rows("report"), sorted(sal)
        for name, epoch in (("best", best), ("last", args.epochs)):
            head.load_state_dict(states[epoch])
            result[f"report_{name}"] = {mode: search(head, sal, args.audio_dir, everything, rows, mode == "exhaustive")
                                        for mode in ("ann", "exhaustive")}
            print(name, epoch, {m: round(r["mrr"], 3) for m, r in result[f"report_{name}"].items()}, flush=True)
    return result


def oracle_chroma(recording: PairRecording, n_frames: int, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    """One-hot melody chroma ``(12, T)`` (uniform between notes), each note wrong with ``1 − accuracy``."""
    probabilities = np.zeros((n_frames, 13), np.float32)
    probabilities[:, BLANK] = 1.0
    for note in recording.notes:
        a, b = int(note.onset * FEATURE_RATE), min(n_frames, int(note.offset * FEATURE_RATE))
        pc = note.pitch % 12 if rng.random() < accuracy else (note.pitch + rng.integers(1, 12)) % 12
        probabilities[a:b] = 0.0
        probabilities[a:b, pc] = 1.0
    return chroma_from_probabilities(torch.from_numpy(probabilities)).T.numpy()


def run_oracle(args: argparse.Namespace) -> dict:
    import soundfile

    recordings = hauptstimme_pairs(SHARED / "data" / "hauptstimme", args.audio_dir, None, args.work / "cache")
    frames = {r.name: int(np.ceil(soundfile.info(str(r.audio)).duration * FEATURE_RATE)) for r in recordings}
    rows = split_rows("report")
    result = {"oracle": []}
    for accuracy in args.accuracy:
        rng = np.random.default_rng(args.seed)
        features = [features_of(oracle_chroma(r, frames[r.name], accuracy, rng)) for r in recordings]
        metrics, _ = evaluate_features([r.audio for r in recordings], features, rows)
        result["oracle"].append({"note_accuracy": accuracy, "mrr": metrics["mrr"], "top1": metrics["top1"],
                                 "top10": metrics["top10"]})
        print(result["oracle"][-1], flush=True)
    return result


def pitch_class_grid(notes: list[tuple[float, float, int]], n_frames: int, count: bool) -> np.ndarray:
    """Chroma ``(12, T)`` at 25 Hz of ``(onset s, offset s, MIDI pitch)`` notes: 1 where a pitch class
    sounds, or (``count``) the number of notes sounding it; every note at least one frame."""
    grid = np.zeros((12, n_frames), np.float32)
    for onset, offset, pitch in notes:
        a = int(onset * FEATURE_RATE)
        b = max(a + 1, min(n_frames, int(offset * FEATURE_RATE)))
        grid[pitch % 12, a:b] = grid[pitch % 12, a:b] + 1 if count else 1
    return grid


def run_score_oracle(args: argparse.Namespace) -> dict:
    import soundfile

    scores = SHARED / "data" / "hauptstimme"
    recordings = hauptstimme_pairs(scores, args.audio_dir, None, args.work / "cache")
    full = {p.stem: p for p in scores.rglob("*.mxl") if not p.stem.endswith("_melody")}
    grids = {}
    for r in tqdm(recordings, desc="scores", unit="rec", dynamic_ncols=True):
        n_frames = int(np.ceil(soundfile.info(str(r.audio)).duration * FEATURE_RATE))
        seconds = rendering_clock(args.audio_dir / f"{r.name}.timing.json")
        notes = [(seconds(q0), seconds(q1), pitch) for q0, q1, pitch in score_notes(full[r.name], args.work / "cache")]
        melody = [(note.onset, note.offset, note.pitch) for note in r.notes]
        grids[r.name] = (pitch_class_grid(notes, n_frames, False), pitch_class_grid(notes, n_frames, True),
                         pitch_class_grid(melody, n_frames, False))
    choices = {"melody alone": lambda presence, voices, melody: melody,
               "all parts, presence": lambda presence, voices, melody: presence,
               "all parts, voices": lambda presence, voices, melody: voices}
    choices |= {f"all parts, melody x{w:g}": (lambda presence, voices, melody, w=w: np.maximum(presence, w * melody))
                for w in args.melody_weight}
    rows, result = split_rows("report"), {"score_oracle": []}
    for label, chroma in choices.items():
        # a floor keeps silent frames defined (uniform) after the features' normalisation
        features = [features_of(chroma(*grids[r.name]) + 1e-3) for r in recordings]
        metrics, _ = evaluate_features([r.audio for r in recordings], features, rows)
        result["score_oracle"].append({"chroma": label, "mrr": metrics["mrr"], "top1": metrics["top1"],
                                       "top10": metrics["top10"]})
        print(result["score_oracle"][-1], flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("head", "oracle", "score-oracle"))
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--loss", choices=("ctc", "strong", "contrastive"), default="strong")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--accuracy", type=float, nargs="+", default=[1.0, 0.9, 0.8, 0.7, 0.6])
    parser.add_argument("--melody-weight", type=float, nargs="+", default=[2.0, 4.0])
    args = parser.parse_args(argv)
    run = {"head": run_head, "oracle": run_oracle, "score-oracle": run_score_oracle}[args.what]
    result = run(args)
    name = f"head_{args.loss}.json" if args.what == "head" else f"{args.what.replace('-', '_')}.json"
    atomic_write_text(args.work / name, json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
