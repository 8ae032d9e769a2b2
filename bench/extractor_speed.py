"""Throughput of deep chroma extraction: faithful reference-style path vs. the fast path.

    python bench/extractor_speed.py [AUDIO] [--model ID] [--minutes 6]

Without AUDIO, a recording of ``--minutes`` minutes (synthesised harmonic tones, 44.1 kHz
stereo FLAC) is written to a temporary folder. Both paths run on the same file in this one
run, alternately ``--repeat`` times (the machine is shared: single runs vary); the table gives
the median × real time per stage (decoding, front end, network, total), the fast/faithful
ratio, each repetition's end-to-end ratio, and the largest difference between their
probabilities.

Faithful path: ``librosa.load`` + six ``librosa.cqt`` + ``amplitude_to_db`` + ``librosa.util.sync``
median (as ``ctc_chroma``) + the network on the whole recording at once.
Fast path: :func:`models.audio.load_audio` + :class:`models.extractor.ChromaExtractor`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.audio import load_audio  # noqa: E402
from models.extractor import ChromaExtractor, reference_hcqt  # noqa: E402
from models.frontend import normalize_hcqt  # noqa: E402
from models.registry import DEFAULT_MODEL, load  # noqa: E402
from models.tones import harmonic_tones  # noqa: E402


def _timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def faithful(path: Path, model_id: str) -> tuple[np.ndarray, dict[str, float]]:
    import librosa

    net = load(model_id)
    y, t_dec = _timed(lambda p: librosa.load(p, sr=22050)[0], path)
    x, t_fe = _timed(lambda s: normalize_hcqt(reference_hcqt(s)), y)

    def network(inp: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(inp).permute(2, 0, 1)[None])[0].numpy()

    probs, t_net = _timed(network, x)
    return probs, {"decode": t_dec, "front end": t_fe, "network": t_net}


def fast(path: Path, model_id: str, device: str) -> tuple[np.ndarray, dict[str, float]]:
    extractor = ChromaExtractor(model_id, device=device)
    y, t_dec = _timed(lambda p: load_audio(p)[0], path)
    x, t_fe = _timed(extractor.front_end, y)
    probs, t_net = _timed(lambda inp: extractor.network(inp).cpu().numpy(), x)
    if device == "cuda":
        torch.cuda.synchronize()
    return probs, {"decode": t_dec, "front end": t_fe, "network": t_net}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", nargs="?", type=Path)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.audio
        if path is None:
            rng = np.random.default_rng(0)
            tone = harmonic_tones(rng.integers(40, 90, size=int(args.minutes * 120)), 0.5, sr=44100)
            path = Path(tmp) / "bench.flac"
            sf.write(path, np.stack([tone, 0.8 * tone], axis=1), 44100)
        duration = sf.info(path).duration
        fast(path, args.model, args.device)  # warm-up: filter bases, weights, allocator
        runs = []
        for _ in range(args.repeat):
            ref_probs, ref_t = faithful(path, args.model)
            fast_probs, fast_t = fast(path, args.model, args.device)
            runs.append((ref_t | {"total": sum(ref_t.values())}, fast_t | {"total": sum(fast_t.values())}))

    print(f"{path.name}: {duration / 60:.1f} min, model {args.model}, torch threads {torch.get_num_threads()}, "
          f"fast path on {args.device}, median of {args.repeat} alternating runs")
    print("| stage | faithful (× real time) | fast (× real time) | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    for stage in runs[0][0]:
        ref_s = float(np.median([r[stage] for r, _ in runs]))
        fast_s = float(np.median([f[stage] for _, f in runs]))
        print(f"| {stage} | {duration / ref_s:.0f}× | {duration / fast_s:.0f}× | {ref_s / fast_s:.2f}× |")
    print("end-to-end speed-up per run: " + ", ".join(f"{r['total'] / f['total']:.2f}×" for r, f in runs))
    print(f"max |probabilities fast − faithful| = {np.abs(fast_probs - ref_probs).max():.2e}")

if __name__ == "__main__":
    main()
