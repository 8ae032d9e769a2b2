"""Indexing cost of feature choices, side by side: extraction time of each model id on one file.

    python bench/feature_cost.py AUDIO [--models v2_ctc_train123valid4 v2_ctc_train123valid4+cens cens]
        [--cens-frames] [--repeat 3]

Each id's extractor (:func:`models.extractor_factory.make_extractor`) reads and converts the same file,
the ids taking turns ``--repeat`` times (the machine may be shared: single runs vary); with
``--cens-frames`` each deep id also runs as an index that keeps CENS beside its chroma extracts it
(``from_signal(y, cens=True)``, decoding included as for the others). Prints the
median seconds, × real time, and the ratio to the first id (the cost a preset adds to indexing,
whose other stages — hashing, shingling, FAISS — do not depend on the features).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import soundfile as sf

from models.audio import load_audio
from models.extractor_factory import make_extractor
from models.frontend import SAMPLE_RATE
from models.retrieval_features import IndexSettings

DEFAULT_IDS = ["v2_ctc_train123valid4", "v2_ctc_train123valid4+cens", "cens"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio", type=Path)
    parser.add_argument("--models", nargs="+", default=DEFAULT_IDS)
    parser.add_argument("--cens-frames", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    seconds = sf.info(args.audio).duration
    runs = {}
    for model in args.models:
        extractor = make_extractor(model)
        runs[model] = extractor.from_file
        if args.cens_frames and IndexSettings(model_id=model).cens_frames:
            runs[f"{model}, with CENS frames"] = (
                lambda path, e=extractor: e.from_signal(load_audio(path, SAMPLE_RATE)[0], cens=True))
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(args.repeat):
        for label, run in runs.items():
            t0 = time.perf_counter()
            run(args.audio)
            times[label].append(time.perf_counter() - t0)
    first = statistics.median(times[args.models[0]])
    print(f"{args.audio.name}: {seconds:.0f} s of audio, median of {args.repeat}")
    print("| features | s | × real time | ÷ first |\n|---|---:|---:|---:|")
    for label in runs:
        median = statistics.median(times[label])
        print(f"| {label} | {median:.2f} | {seconds / median:.0f}× | {median / first:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
