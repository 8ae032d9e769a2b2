"""Training throughput: audio hours learnt per second of training, per loss, on this machine.

    python bench/train_throughput.py [--device cpu|cuda] [--batch-size 8] [--excerpt-seconds 10] [--steps 5]
                                     [--threads N]

Times full optimiser steps (forward, loss, backward, Adam) of the chroma network on batches of
network inputs of the training shape. Throughput does not depend on what the inputs hold, so
random inputs and labels stand in for a data set; the front end is cached once per recording in a
real run (``training/cache.py``) and is not part of a step. Prints one row per loss; the
first step of each is a warm-up and not timed. On a GPU the whole measurement takes well under a
minute; the device is named in the output.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch

from models.extractor import exact_cuda
from models.registry import load
from training.loop import batch_loss, network_logits
from training.targets import BLANK

RATE = 25


def _batch(batch: int, frames: int, context: int, rng: np.random.Generator):
    x = torch.from_numpy(rng.random((batch, 6, frames + 2 * context, 216), dtype=np.float32))
    frame_targets = [rng.integers(0, BLANK + 1, frames) for _ in range(batch)]
    sequences = [rng.integers(0, 12, frames // 12) for _ in range(batch)]
    return x, frame_targets, sequences


def measure(loss: str, device: str, batch: int, seconds: float, steps: int) -> dict:
    net = load(device=device).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-4)
    frames = int(seconds * RATE)
    x, frame_targets, sequences = _batch(batch, frames, net.receptive_field, np.random.default_rng(0))
    x = x.to(device)
    targets = sequences if loss == "ctc" else frame_targets
    times = []
    for step in range(steps + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        value = batch_loss(network_logits(net, x, net.receptive_field), targets, [frames] * batch, loss)
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        optimiser.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - t0)
    per_step = float(np.median(times))
    audio = batch * seconds
    return {"loss": loss, "step_s": per_step, "audio_s_per_step": audio, "x_real_time": audio / per_step,
            "audio_hours_per_s": audio / per_step / 3600}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--excerpt-seconds", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: all cores)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("error: --device cuda: no CUDA device", file=sys.stderr)
            return 2
        exact_cuda()
        machine = torch.cuda.get_device_name()
    else:
        machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    rows = [measure(loss, args.device, args.batch_size, args.excerpt_seconds, args.steps)
            for loss in ("ctc", "linear", "strong")]
    if args.json:
        print(json.dumps({"device": machine, "batch": args.batch_size, "excerpt_s": args.excerpt_seconds,
                          "rows": rows}, indent=2))
        return 0
    print(f"{machine}; batch {args.batch_size} × {args.excerpt_seconds:g} s, median of {args.steps} steps")
    print(f"{'loss':<7} {'s/step':>7} {'× real time':>12} {'audio h / s':>12}")
    for r in rows:
        print(f"{r['loss']:<7} {r['step_s']:7.2f} {r['x_real_time']:12.1f} {r['audio_hours_per_s']:12.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
