"""GPU check: the CUDA path equals the original models and the CPU path, and how fast it is.

    python bench/gpu_check.py [--recording FILE] [--shared ../shared] [--json-out OUT.json]

On any CUDA machine (with TF32 off, as the extractor always runs): (1) all 25 models on both
reference excerpts against the original TensorFlow outputs (max |Δ probabilities|, bound 1e-3 from
audio as the CPU test), and the GPU pyramid's 2:1 and 4:1 steps against soxr (bound 1e-5); (2) CPU
vs CUDA on a full recording (default: the longest bach_violin recording), max |Δ probabilities|;
(3) throughput of front end, network and both, × real time, on that recording already decoded and
repeated to 20 minutes, side by side with the card named: CUDA as the extractor runs by default
(the whole front end on the GPU, 600 s chunks), CUDA with the resampling pyramid left to soxr on
the CPU (the previous design: the ratio shows what the GPU pyramid gives), CUDA with the CPU's
120 s chunks (more, smaller kernels per second of audio), and the CPU. Prints a table and writes
everything as JSON. Exits 1 if an equality bound is broken, 2 without CUDA.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from report import keep_json  # the script beside this one (bench/ is on sys.path when run as a script)

from models.audio import load_audio
from models.extractor import ChromaExtractor
from models.frontend import SAMPLE_RATE
from models.hcqt import FastHCQT
from models.registry import MODEL_IDS
from models.resample import Decimator

EXCERPTS = ("Beethoven_Op002-2-01_Pitman", "Beethoven_Op067-01_DavidHighSchool")
THROUGHPUT_SECONDS = 1200


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def fixtures(shared: Path) -> dict:
    """Max |Δ| of probabilities and chroma against the original models, per model, on CUDA."""
    reference = shared / "fixtures" / "ctc_chroma_reference"
    worst: dict[str, float] = {}
    for excerpt in EXCERPTS:
        y, _ = load_audio(shared / "data" / "recordings" / f"{excerpt}.wav")
        for model_id in MODEL_IDS:
            ref = np.load(reference / f"{excerpt}__{model_id}.npz")
            ours = ChromaExtractor(model_id, device="cuda").from_signal(y)
            delta = max(float(np.abs(ours.probabilities - ref["probabilities"]).max()),
                        float(np.abs(ours.chroma - ref["chroma"]).max()))
            worst[model_id] = max(worst.get(model_id, 0.0), delta)
    return worst


def throughput(y: np.ndarray, device: str, pyramid_on_device: bool | None = None,
               chunk_seconds: float | None = None, repeats: int = 3) -> dict:
    """× real time of front end, network and both on ``y`` (median of ``repeats`` after a warm-up)."""
    extractor = ChromaExtractor(device=device, chunk_seconds=chunk_seconds)
    extractor.hcqt = FastHCQT(device, pyramid_on_device=pyramid_on_device)
    seconds = len(y) / SAMPLE_RATE
    x = extractor.front_end(y)
    extractor.network(x)  # warm-up
    front, net = [], []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        x = extractor.front_end(y)
        _sync(device)
        t1 = time.perf_counter()
        extractor.network(x)
        _sync(device)
        t2 = time.perf_counter()
        front.append(t1 - t0)
        net.append(t2 - t1)
    f, n = float(np.median(front)), float(np.median(net))
    return {"front_end_x": seconds / f, "network_x": seconds / n, "total_x": seconds / (f + n)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--recording", type=Path, default=None)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device: this check needs a GPU", file=sys.stderr)
        return 2
    recording = args.recording or max((args.shared / "data" / "bach_violin" / "audio").glob("*.mp3"),
                                      key=lambda p: p.stat().st_size)
    report = {"device": torch.cuda.get_device_name(), "cpu": platform.processor() or platform.machine(),
              "torch": torch.__version__, "recording": str(recording)}

    def stage(key: str, value) -> None:
        """Record one stage's result and write the report so far (a run cut short keeps it)."""
        report[key] = value
        print(f"{key}: done", file=sys.stderr, flush=True)
        keep_json(args.json_out, report)

    stage("fixture_max_delta", fixtures(args.shared))
    stage("decimator_max_delta", {f"{f}:1": Decimator(f, "cuda").check() for f in (2, 4)})
    y, _ = load_audio(recording)
    report["audio_seconds"] = len(y) / SAMPLE_RATE
    cpu = ChromaExtractor(device="cpu").from_signal(y).probabilities
    cuda = ChromaExtractor(device="cuda").from_signal(y).probabilities
    stage("cpu_vs_cuda_max_delta", float(np.abs(cpu - cuda).max()))
    long = np.tile(y, -(-THROUGHPUT_SECONDS * SAMPLE_RATE // len(y)))  # long enough for 600 s chunks to matter
    report["throughput_audio_seconds"] = len(long) / SAMPLE_RATE
    report["throughput"] = {}
    for name, device, options in (("cuda", "cuda", {}), ("cuda, soxr pyramid", "cuda", {"pyramid_on_device": False}),
                                  ("cuda, 120 s chunks", "cuda", {"chunk_seconds": 120.0}), ("cpu", "cpu", {})):
        stage("throughput", {**report["throughput"], name: throughput(long, device, **options)})
    worst = max(report["fixture_max_delta"].values())
    decimators = max(report["decimator_max_delta"].values())
    ok = worst < 1e-3 and report["cpu_vs_cuda_max_delta"] < 1e-4 and decimators < 1e-5
    print(f"{report['device']} (torch {report['torch']}), {recording.name}, {report['audio_seconds'] / 60:.1f} min")
    print(f"fixtures on CUDA: worst max |Δ| over 25 models × 2 excerpts = {worst:.2e} (bound 1e-3)")
    print(f"GPU pyramid vs soxr on white noise: max |Δ| = {decimators:.2e} (bound 1e-5)")
    print(f"CPU vs CUDA on the recording: max |Δ probabilities| = {report['cpu_vs_cuda_max_delta']:.2e} (bound 1e-4)")
    print(f"throughput on the recording repeated to {report['throughput_audio_seconds'] / 60:.0f} min, decoded:")
    print(f"{'device':<18} {'front end ×':>12} {'network ×':>10} {'total ×':>8}")
    for device, row in report["throughput"].items():
        print(f"{device:<18} {row['front_end_x']:12.0f} {row['network_x']:10.0f} {row['total_x']:8.0f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
