"""Command line of the cross-modal music retrieval engine (thin: parsing and printing only)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

__all__ = ["main"]


def _add_extractor_options(parser: argparse.ArgumentParser) -> None:
    from models.registry import DEFAULT_MODEL

    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"deep chroma model id (default {DEFAULT_MODEL}; `python cli.py models` lists all)",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: all cores)")


def _extractor(args: argparse.Namespace):
    import torch

    from models.extractor import ChromaExtractor

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return ChromaExtractor(args.model, device=args.device)


def cmd_features(args: argparse.Namespace) -> int:
    from indexer.features import extract_to_folder

    report = extract_to_folder(args.inputs, args.output, _extractor(args), progress=not args.quiet)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(f"wrote {len(report.written)} feature file(s) to {args.output}, {len(report.failed)} failed")
    return 1 if report.failed else 0


def cmd_models(args: argparse.Namespace) -> int:
    from models.registry import DEFAULT_MODEL, MODEL_IDS

    if args.json:
        print(json.dumps({"default": DEFAULT_MODEL, "models": list(MODEL_IDS)}))
    else:
        for model_id in MODEL_IDS:
            print(model_id + ("  (default)" if model_id == DEFAULT_MODEL else ""))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthesise a C-major scale, extract deep chroma, and show the detected pitch classes."""
    import numpy as np
    import soundfile as sf

    from models.frontend import FEATURE_RATE, SAMPLE_RATE
    from models.synth import harmonic_tones

    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    pitches, note_s = [60, 62, 64, 65, 67, 69, 71, 72], 0.5
    extractor = _extractor(args)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "demo_scale.wav"
        sf.write(wav, harmonic_tones(pitches, note_s, lead_in=0.5), SAMPLE_RATE)
        features = extractor.from_file(wav)
    per_note, lead = int(note_s * FEATURE_RATE), int(0.5 * FEATURE_RATE)
    rows = []
    for i, pitch in enumerate(pitches):
        mean = features.chroma[:, lead + i * per_note : lead + (i + 1) * per_note].mean(axis=1)
        rows.append({"note": i, "expected": names[pitch % 12], "detected": names[int(np.argmax(mean))]})
    correct = sum(r["expected"] == r["detected"] for r in rows)
    if args.json:
        print(json.dumps({"model": args.model, "notes": rows, "correct": correct}))
    else:
        print(f"deep chroma ({args.model}) of a synthesised C-major scale, {features.chroma.shape[1]} frames:")
        for r in rows:
            print(f"  note {r['note']}: expected {r['expected']:<2}  detected {r['detected']}")
        print(f"{correct}/{len(rows)} notes detected correctly")
    return 0 if correct == len(rows) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py", description="Cross-modal (score-to-audio) music retrieval.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("features", help="extract deep chroma of audio files or folders into .npz files")
    p.add_argument("inputs", nargs="+", help="audio files and/or folders (searched recursively)")
    p.add_argument("-o", "--output", type=Path, default=Path("features"), help="output folder (default ./features)")
    _add_extractor_options(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("models", help="list the pretrained deep chroma models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="run the extractor on a synthesised scale (no data needed)")
    _add_extractor_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
