"""Training a chroma model on score–audio pairs: CTC, linear or strong labels; resumable.

One run trains from a pretrained id (fine-tuning) or from scratch on the excerpts of the
training recordings, validates after every epoch by retrieval MRR on held-out works (the
engine's own search over a small index of the validation recordings), keeps the best epoch's
weights and stops early when validation stops improving.

Everything a run needs to continue is in its output folder: ``checkpoint.safetensors`` (weights
and optimiser state, no pickle) and ``checkpoint.json`` (where it stands). They are replaced
atomically every ``checkpoint_seconds``, at every epoch's end and on Ctrl-C, so an interrupted
or killed run resumes at the step it last saved. The data order and augmentation of step ``s``
of epoch ``e`` depend only on ``(seed, e, s)``, so a resumed run takes the same path.
The best weights are ``weights.safetensors`` with their model card ``model.json``.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import safetensors
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F
from tqdm import tqdm

from models.errors import ParameterError
from models.files import atomic_write, atomic_write_text
from models.network import ChromaNet
from models.registry import WEIGHTS_FILE, load
from training.augment import MIX_GAIN_DB, SEMITONE_BINS, mix_log_hcqt, shift_bins
from training.cache import HCQTCache, network_input
from training.pairs import Excerpt, PairRecording, cut_excerpts
from training.targets import BLANK, LOSSES, ctc_target, linear_target, strong_target

__all__ = ["CARD_FILE", "TrainConfig", "TrainResult", "TrainingInterrupted", "batch_loss", "network_logits", "train"]

CARD_FILE = "model.json"
CARD_FORMAT = "score-audio-retrieval/chroma-model/1"
SCRATCH = "scratch"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the checkpoint it names was saved first."""


@dataclass(frozen=True)
class TrainConfig:
    """What a training run does. Fields that change the result must match to resume a run.

    ``init`` is a pretrained id, a trained model's path, or ``"scratch"``; ``pitch_shift`` the
    largest random transposition (semitones, HCQT and targets rolled together; 0 = none); ``mix``
    the share of excerpts that get an excerpt of another recording mixed in, at a level drawn from
    :data:`training.augment.MIX_GAIN_DB`, their targets unchanged (0 = none). No gain
    augmentation: the network input is normalised per frame, so a level change would only act
    through the front end's dB floor.
    """

    init: str = "v2_ctc_train123valid4"
    loss: str = "ctc"
    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 8
    seed: int = 0
    excerpt_seconds: float = 10.0
    steps_per_epoch: int | None = None  # None: every excerpt once per epoch
    patience: int = 3  # epochs without a better validation MRR before stopping
    pitch_shift: int = 0
    mix: float = 0.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ParameterError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.excerpt_seconds <= 0:
            raise ParameterError("lr and excerpt_seconds must be positive")
        if not 0.0 <= self.mix <= 1.0:
            raise ParameterError(f"mix must be a share between 0 and 1, got {self.mix}")

    def resumable_with(self, other: TrainConfig) -> bool:
        keep = ("epochs", "patience", "device")
        return all(getattr(self, f) == getattr(other, f) for f in asdict(self) if f not in keep)


@dataclass
class TrainResult:
    """What a run did: per-epoch history, the best epoch and where the model is."""

    out: Path
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_mrr: float | None = None
    stopped_early: bool = False


@dataclass(frozen=True)
class _Run:
    """What one call of :func:`train` fixes: where it writes, its config, how it validates, what its
    card says of the data, and whether it shows progress."""

    out: Path
    config: TrainConfig
    validation: Callable[[ChromaNet], dict] | None
    card: dict
    progress: bool


@dataclass
class _State:
    epoch: int = 0  # epochs completed
    step: int = 0  # steps done in the current epoch
    history: list[dict] = field(default_factory=list)
    best_mrr: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0


class _Batches:
    """Excerpts → network inputs and targets, with context frames for the receptive field."""

    def __init__(self, recordings: list[PairRecording], cache: HCQTCache, config: TrainConfig, context: int) -> None:
        self.inputs = [cache.get(r.audio) for r in recordings]
        self.excerpts: list[Excerpt] = []
        for i, (rec, x) in enumerate(zip(recordings, self.inputs, strict=True)):
            self.excerpts += cut_excerpts(i, rec.notes, len(x), config.excerpt_seconds)
        if not self.excerpts:
            raise ParameterError("no training excerpts: the pairs hold no melody notes inside their audio")
        if config.loss == "strong" and not all(r.aligned for r in recordings):
            raise ParameterError("strong labels need aligned pairs; some pairs have no alignment (use ctc or linear)")
        self.config, self.context = config, context
        self.target = {"ctc": ctc_target, "linear": linear_target, "strong": strong_target}[config.loss]

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.config.seed, epoch]).permutation(len(self.excerpts))

    def batch(self, indices: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, list[np.ndarray], list[int]]:
        """``(inputs (B, 6, T + 2·context, 216), targets, lengths)``; zero-padded to the longest."""
        chosen = [self.excerpts[i] for i in indices]
        width = max(e.n_frames for e in chosen) + 2 * self.context
        x = np.zeros((len(chosen), width, 216, 6), dtype=np.float32)
        targets, lengths = [], []
        for b, e in enumerate(chosen):
            source = self.inputs[e.recording]
            lo, hi = max(0, e.start - self.context), min(len(source), e.stop + self.context)
            at = self.context - (e.start - lo)
            log_hcqt = np.asarray(source[lo:hi], dtype=np.float32)
            if rng.random() < self.config.mix:
                log_hcqt = mix_log_hcqt(log_hcqt, self._other(e.recording, hi - lo, rng), rng.uniform(*MIX_GAIN_DB))
            x[b, at : at + hi - lo] = network_input(log_hcqt)
            target = self.target(e)
            shift = int(rng.integers(-self.config.pitch_shift, self.config.pitch_shift + 1))
            if shift:
                x[b] = shift_bins(x[b], shift * SEMITONE_BINS)
                target = np.where(target == BLANK, BLANK, (target + shift) % 12)
            targets.append(target)
            lengths.append(e.n_frames)
        return torch.from_numpy(x).permute(0, 3, 1, 2), targets, lengths

    def _other(self, recording: int, n_frames: int, rng: np.random.Generator) -> np.ndarray:
        """``n_frames`` of log-HCQT from a random excerpt of another recording (of this one if it is
        the only one), zero-padded (silence) where that recording ends."""
        others = [i for i in range(len(self.inputs)) if i != recording] or [recording]
        source = self.inputs[others[int(rng.integers(len(others)))]]
        start = int(rng.integers(max(1, len(source) - n_frames + 1)))
        part = np.zeros((n_frames,) + source.shape[1:], dtype=np.float32)
        piece = source[start : start + n_frames]
        part[: len(piece)] = piece
        return part


def batch_loss(logits: torch.Tensor, targets: list[np.ndarray], lengths: list[int], loss: str) -> torch.Tensor:
    """The training loss of a batch: ``logits`` ``(B, T, 13)`` (excerpt frames only, context
    cropped), ``targets`` per excerpt from :mod:`training.targets` (a pitch-class sequence for
    ``ctc``, frame labels for ``linear`` and ``strong``), ``lengths`` the excerpts' frames (the
    rest of ``T`` is padding, ignored)."""
    log_probs = F.log_softmax(logits, dim=-1)
    if loss == "ctc":
        flat = torch.from_numpy(np.concatenate(targets)).to(logits.device)
        target_lengths = torch.tensor([len(t) for t in targets])
        return F.ctc_loss(log_probs.transpose(0, 1), flat, torch.tensor(lengths), target_lengths,
                          blank=BLANK, reduction="mean", zero_infinity=True)
    frame_targets = torch.full(log_probs.shape[:2], -100, dtype=torch.long)
    for b, t in enumerate(targets):
        frame_targets[b, : len(t)] = torch.from_numpy(t)
    return F.nll_loss(log_probs.reshape(-1, 13), frame_targets.view(-1).to(logits.device), ignore_index=-100)


def network_logits(net: ChromaNet, x: torch.Tensor, context: int) -> torch.Tensor:
    """``net``'s logits ``(B, T, 13)`` of input ``(B, 6, T + 2·context, 216)``, context frames cropped."""
    return net.logits(x)[:, context : x.shape[2] - context]


def _initial_network(init: str, device: str) -> ChromaNet:
    if init == SCRATCH:
        torch.manual_seed(0)
        net = ChromaNet()
        net.chroma_pool.copy_(load().chroma_pool)  # the fixed 216 → 12 pooling is not learned
        return net.to(device)
    return load(init, device)


def train(config: TrainConfig, recordings: list[PairRecording], out: str | Path, cache: HCQTCache, *,
          validation: Callable[[ChromaNet], dict] | None = None, data_card: dict | None = None, progress: bool = True,
          checkpoint_seconds: float = 60.0) -> TrainResult:
    """Train and validate; resume from ``out``'s checkpoint when there is one of the same config.

    ``validation`` is a callable ``net → dict`` with at least ``mrr`` (see
    :class:`training.validation.RetrievalValidation`); without it every epoch counts as
    the best. Raises :class:`TrainingInterrupted` on Ctrl-C after saving a checkpoint.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    net = _initial_network(config.init, config.device).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    state = _resume(out, config, net, optimiser)
    data = _Batches(recordings, cache, config, net.receptive_field)
    per_epoch = len(data.excerpts) // config.batch_size or 1
    steps = min(per_epoch, config.steps_per_epoch or per_epoch)
    run = _Run(out, config, validation, {"data": data_card or {}, "excerpts": len(data.excerpts)}, progress)
    last_save = time.monotonic()
    if validation is not None and not state.history:  # epoch 0: the starting model, the mark to beat
        _record_validation(run, net, state, [], epoch=0)
        _save_checkpoint(run, net, optimiser, state)
    try:
        while state.epoch < config.epochs and state.bad_epochs < config.patience:
            order = data.order(state.epoch)
            bar = tqdm(total=steps, initial=state.step, desc=f"epoch {state.epoch + 1}/{config.epochs}",
                       unit="step", disable=not progress, dynamic_ncols=True)
            losses = []
            while state.step < steps:
                rng = np.random.default_rng([config.seed, state.epoch, state.step])
                chosen = order[state.step * config.batch_size : (state.step + 1) * config.batch_size]
                x, targets, lengths = data.batch(chosen, rng)
                logits = network_logits(net, x.to(config.device), net.receptive_field)
                loss = batch_loss(logits, targets, lengths, config.loss)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                losses.append(float(loss.detach()))
                state.step += 1
                bar.update()
                bar.set_postfix_str(f"loss {np.mean(losses[-20:]):.3f}", refresh=False)
                if time.monotonic() - last_save > checkpoint_seconds:
                    _save_checkpoint(run, net, optimiser, state)
                    last_save = time.monotonic()
            bar.close()
            _finish_epoch(run, net, state, losses)
            _save_checkpoint(run, net, optimiser, state)
            last_save = time.monotonic()
    except KeyboardInterrupt:
        _save_checkpoint(run, net, optimiser, state)
        raise TrainingInterrupted(f"{out}: interrupted; checkpoint saved at epoch {state.epoch + 1}, step "
                                  f"{state.step} (run the same command again to resume)") from None
    return TrainResult(out, state.history, state.best_epoch, state.best_mrr,
                       stopped_early=state.bad_epochs >= config.patience and state.epoch < config.epochs)


def _finish_epoch(run: _Run, net: ChromaNet, state: _State, losses: list[float]) -> None:
    _record_validation(run, net, state, losses, epoch=state.epoch + 1)
    state.epoch, state.step = state.epoch + 1, 0
    if state.best_epoch is not None:  # the card's history is always the whole run so far
        _write_card(run, state)


def _record_validation(run: _Run, net: ChromaNet, state: _State, losses: list[float], epoch: int) -> None:
    """Validate, append to the history, and keep the weights if they are the best so far (epoch 0: the init)."""
    net.eval()
    scores = run.validation(net) if run.validation is not None else {}
    net.train()
    entry = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else None, **scores}
    state.history.append(entry)
    mrr = scores.get("mrr")
    improved = mrr is None or state.best_mrr is None or mrr > state.best_mrr
    if improved:
        state.best_mrr, state.best_epoch, state.bad_epochs = mrr, epoch, 0
        _save_model(run.out, net)
    elif epoch > 0:
        state.bad_epochs += 1
    if run.progress:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in entry.items() if isinstance(v, float))
        tqdm.write(f"epoch {epoch}: {shown}" + ("  (best so far)" if improved else ""))


def _save_model(out: Path, net: ChromaNet) -> None:
    weights = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write(out / WEIGHTS_FILE, lambda tmp: save_file(weights, tmp, metadata={"format": CARD_FORMAT}))


def _write_card(run: _Run, state: _State) -> None:
    config = run.config
    record = {
        "format": CARD_FORMAT,
        "init": config.init,
        "loss": config.loss,
        "config": asdict(config),
        **run.card,
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "best_validation_mrr": state.best_mrr,
        "validation_history": state.history,
        "seed": config.seed,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "safetensors": safetensors.__version__},
        "licence": "MIT (see models/weights/LICENSE for the pretrained weights it may start from); "
                   "trained on the data listed under data, with their licences",
    }
    atomic_write_text(run.out / CARD_FILE, json.dumps(record, indent=2))


# -- checkpoints: safetensors for tensors, JSON for the rest (no pickle) --------------------------------


def _save_checkpoint(run: _Run, net: ChromaNet, optimiser: torch.optim.Optimizer, state: _State) -> None:
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    opt = optimiser.state_dict()
    for index, values in opt["state"].items():
        for key, value in values.items():
            tensors[f"opt.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    atomic_write(run.out / "checkpoint.safetensors", lambda tmp: save_file(tensors, tmp))
    record = {"config": asdict(run.config), "state": asdict(state), "param_groups": opt["param_groups"]}
    atomic_write_text(run.out / "checkpoint.json", json.dumps(record, indent=2))


def _resume(out: Path, config: TrainConfig, net: ChromaNet, optimiser: torch.optim.Optimizer) -> _State:
    meta, weights = out / "checkpoint.json", out / "checkpoint.safetensors"
    if not meta.is_file() or not weights.is_file():
        return _State()
    record = json.loads(meta.read_text())
    saved = TrainConfig(**record["config"])
    if not saved.resumable_with(config):
        raise ParameterError(f"{out}: holds a run with other settings ({saved}); choose another --out or delete it")
    tensors = load_file(weights)
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    opt_state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            opt_state.setdefault(int(index), {})[name] = value
    optimiser.load_state_dict({"state": opt_state, "param_groups": record["param_groups"]})
    return _State(**record["state"])
