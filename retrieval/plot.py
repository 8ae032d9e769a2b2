"""``--plot``: the theme's chroma beside the chroma of its best-matching excerpt (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np

from models.retrieval_features import retrieval_features
from retrieval.variants import symbolic_chroma

__all__ = ["plot_match"]

_PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def plot_match(result, collection, path: str | Path | BinaryIO, rank: int = 1) -> None:
    """Save a PNG to a path or binary file: theme (symbolic, at the matched tempo and transposition) |
    the excerpt of the match of ``rank`` (1: the best)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = result.matches[rank - 1]
    settings = collection.settings
    notes = [type(n)(n.onset / best.tempo_scale, n.duration / best.tempo_scale, n.pitch + best.transposition,
                     n.program, n.part) for n in result.theme.notes]
    theme = retrieval_features(symbolic_chroma(notes), settings.downsample, settings.smoothing)
    features = collection.frames(best.recording_id)
    lo, hi = int(best.start * settings.rate), int(np.ceil(best.end * settings.rate))
    excerpt = features[lo:hi]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True, constrained_layout=True)
    for ax, data, title, t0 in (
        (axes[0], theme, f"theme ({Path(result.theme.source).name})", 0.0),
        (axes[1], excerpt, f"{Path(best.path).name}, score {best.score:.3f}", best.start),
    ):
        extent = (t0, t0 + len(data) / settings.rate, -0.5, 11.5)
        ax.imshow(data.T, origin="lower", aspect="auto", cmap="gray_r", extent=extent, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("time (s)")
    axes[0].set_yticks(range(12), _PITCH_CLASSES)
    fig.savefig(path, dpi=100)
    plt.close(fig)
