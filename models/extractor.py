"""Audio → deep chroma: the CTC chroma models applied to whole recordings.

:class:`ChromaExtractor` runs the fast path: :class:`models.hcqt.FastHCQT` over overlapping
chunks (so long recordings never need the full HCQT at hop rate in memory), exact median
binning with a global reference (see :func:`models.frontend.median_bin_db`), then the network
over overlapping, batched chunks of frames. Chunk overlaps cover the filters' and the
network's receptive fields, so the result equals whole-signal processing.
:func:`reference_features` is the faithful path, as ``ctc_chroma`` computes it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import librosa
import numpy as np
import torch

from models.audio import load_audio
from models.cens import cens_from_log_hcqt
from models.errors import ParameterError
from models.frontend import (
    AMIN,
    FEATURE_RATE,
    SAMPLE_RATE,
    TOP_DB,
    finish_hcqt,
    grid_boundaries,
    median_bin_db,
    normalize_frames,
    normalize_hcqt,
)
from models.hcqt import FastHCQT, hcqt_reference, n_hcqt_frames
from models.network import ChromaNet, chroma_from_probabilities
from models.pitch_fft import with_pitch_fft
from models.registry import DEFAULT_MODEL, load

__all__ = [
    "CPU_CHUNK_SECONDS", "GPU_BATCH", "GPU_CHUNK_SECONDS", "ChromaExtractor", "ChromaFeatures", "chroma_features",
    "default_chunk_seconds", "exact_cuda", "inputs_and_cens", "reference_features", "reference_hcqt",
]


GPU_BATCH = 32
"""Network windows per batch on a GPU (the batch the throughput tables were measured with)."""

CPU_CHUNK_SECONDS = 120.0
"""Audio per front-end chunk on the CPU (600 s was slower there: 262× against 325× front end)."""

GPU_CHUNK_SECONDS = 600.0
"""Audio per front-end chunk on a GPU: fewer, larger kernels. On an H100, 22 min of decoded audio,
front end and network: 13,406× real time against 9,508× with 120 s chunks (bench/gpu_check.py,
2026-11-26)."""


def default_chunk_seconds(device: str | torch.device) -> float:
    """Audio per front-end chunk on ``device``: :data:`CPU_CHUNK_SECONDS` or :data:`GPU_CHUNK_SECONDS`."""
    return CPU_CHUNK_SECONDS if torch.device(device).type == "cpu" else GPU_CHUNK_SECONDS


@dataclass(frozen=True)
class ChromaFeatures:
    """Deep chroma of one recording at :data:`models.frontend.FEATURE_RATE` Hz, and CENS of the
    same front end when asked for (``from_signal(y, cens=True)``)."""

    probabilities: np.ndarray  # (13, T): C..B, then the CTC blank
    chroma: np.ndarray  # (12, T): blank dropped, each frame L2-normalised
    times: np.ndarray  # (T,) seconds
    cens: np.ndarray | None = None  # (12, T): models.cens.cens_from_log_hcqt of the same HCQT

    def save(self, path: str | Path) -> None:
        """Write ``probabilities``, ``chroma`` and ``times`` to an ``.npz`` file."""
        np.savez_compressed(path, probabilities=self.probabilities, chroma=self.chroma, times=self.times)


def chroma_features(probabilities: torch.Tensor, n_frames: int, cens: np.ndarray | None = None) -> ChromaFeatures:
    """Wrap ``(T, 13)`` probabilities into :class:`ChromaFeatures` (chroma: blank dropped, L2 per
    frame), with ``cens`` ``(12, ≥ T)`` of the same front end where it is given."""
    chroma = chroma_from_probabilities(probabilities)
    return ChromaFeatures(
        probabilities=probabilities.T.cpu().numpy(),
        chroma=chroma.T.cpu().numpy(),
        times=np.arange(n_frames) / FEATURE_RATE,
        cens=None if cens is None else cens[:, :n_frames],
    )


def reference_hcqt(y: np.ndarray) -> np.ndarray:
    """The original front end ``(6, 216, T)``: six librosa CQTs, dB, ``librosa.util.sync`` median."""
    mag = hcqt_reference(y)
    log_hcqt = librosa.amplitude_to_db(mag, ref=np.max, top_db=TOP_DB) / TOP_DB + 1.0
    bounds = grid_boundaries(mag.shape[-1])
    return librosa.util.sync(log_hcqt, list(bounds), aggregate=np.median, pad=False, axis=-1)


def reference_features(y: np.ndarray, net: ChromaNet) -> ChromaFeatures:
    """Faithful path: :func:`reference_hcqt`, then the network on the whole signal at once."""
    x = torch.from_numpy(normalize_hcqt(reference_hcqt(y))).permute(2, 0, 1)[None]
    with torch.inference_mode():
        probs = net(x.to(next(net.parameters()).device))[0]
    return chroma_features(probs, probs.shape[0])


def exact_cuda() -> None:
    """Turn off TF32 in PyTorch's CUDA convolutions and matrix products (on by default for cuDNN).

    With TF32 the network is up to 5.7e-3 off the original models (measured on an H200,
    2026-11-26; 0.05 on a full recording against the CPU); without it 8.6e-7, at the same speed.
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


@cache
def _fast_hcqt(device: torch.device) -> FastHCQT:
    """One :class:`FastHCQT` per device: its filter bases do not depend on the model."""
    return FastHCQT(device)


def inputs_and_cens(extractor: ChromaExtractor, ys: Sequence[np.ndarray | torch.Tensor], cens: bool
                    ) -> tuple[list[torch.Tensor], list[np.ndarray | None]]:
    """Per signal, the network input ``(T, 216, 6)`` of ``extractor``'s front end and, with
    ``cens``, the CENS ``(12, T)`` of the same log HCQT (else ``None``), computed before the
    HCQT is normalised so that only one of the two is held at a time."""
    xs, censes = [], []
    for y in ys:
        log_hcqt = extractor.log_hcqt(y)
        censes.append(cens_from_log_hcqt(log_hcqt) if cens else None)
        xs.append(normalize_frames(log_hcqt))
    return xs, censes


class ChromaExtractor:
    """Fast, exact, bounded-memory deep chroma extraction.

    Parameters
    ----------
    model_id : one of :data:`models.registry.MODEL_IDS`.
    device : ``"cpu"``, ``"cuda"`` or a :class:`torch.device`.
    chunk_seconds : audio per front-end chunk (working memory ∝ this; default
        :data:`CPU_CHUNK_SECONDS` on the CPU, :data:`GPU_CHUNK_SECONDS` on a GPU).
    batch_frames : 25 Hz frames per network chunk; chunks are stacked ``batch_size`` at a time
        (default: 1 on the CPU, where larger batches gain nothing, :data:`GPU_BATCH` on a GPU,
        where one window of 400 frames leaves it mostly idle).
    net : a network to use instead of ``model_id``'s (e.g. one being trained; it is copied).
    """

    def __init__(
        self,
        model_id: str = DEFAULT_MODEL,
        device: str | torch.device = "cpu",
        chunk_seconds: float | None = None,
        batch_frames: int = 400,
        batch_size: int | None = None,
        net: ChromaNet | None = None,
    ) -> None:
        self.model_id = model_id
        self.device = torch.device(device)
        if batch_size is None:
            batch_size = 1 if self.device.type == "cpu" else GPU_BATCH
        if chunk_seconds is None:
            chunk_seconds = default_chunk_seconds(self.device)
        if chunk_seconds <= 0 or batch_frames <= 0 or batch_size <= 0:
            raise ParameterError("chunk_seconds, batch_frames and batch_size must be positive")
        if self.device.type == "cuda":
            exact_cuda()
        base = copy.deepcopy(net).eval().to(self.device) if net is not None else load(model_id, self.device)
        self.net = with_pitch_fft(base)
        self.hcqt = _fast_hcqt(self.device)
        self.chunk_groups = max(1, int(chunk_seconds * FEATURE_RATE))
        self.batch_frames = batch_frames
        self.batch_size = batch_size

    def front_end(self, y: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The normalised network input ``(T, 216, 6)`` of a 22050 Hz signal, on this extractor's
        device, chunk by chunk (on a GPU every stage runs there: see :class:`models.hcqt.FastHCQT`)."""
        return normalize_frames(self.log_hcqt(y))

    def log_hcqt(self, y: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The front end before its per-frame normalisation: ``(T, 6, 216)``, time first,
        ``(1/80)·dB + 1`` relative to the signal's largest magnitude, 0 at the 80 dB floor."""
        if len(y) == 0:
            raise ParameterError("empty signal")
        levels = self.hcqt.pyramid(y)
        bounds = grid_boundaries(n_hcqt_frames(len(levels[(0, 0)])))
        lows, highs, peaks = [], [], []
        for g0 in range(0, len(bounds) - 1, self.chunk_groups):
            g1 = min(g0 + self.chunk_groups, len(bounds) - 1)
            mag = self.hcqt.frames(levels, int(bounds[g0]), int(bounds[g1]))
            peaks.append(mag.max())
            low, high = median_bin_db(mag, bounds[g0 : g1 + 1])
            lows.append(low)
            highs.append(high)
        ref_db = 20.0 * np.log10(max(AMIN, float(torch.stack(peaks).max())))
        return finish_hcqt(torch.cat(lows), torch.cat(highs), ref_db)

    def network(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Probabilities ``(T, 13)`` from network input ``(T, 216, 6)``, in overlapping batches
        (:meth:`network_many` of one input)."""
        return self.network_many([x])[0]

    def network_many(self, xs: Sequence[np.ndarray | torch.Tensor],
                     fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Probabilities ``(T_i, 13)`` of several network inputs ``(T_i, 216, 6)``, their windows
        batched together — across recordings, so a GPU gets full batches from short files too.
        ``fn`` computes something else frame by frame with the network's receptive field instead
        (``(B, 6, T, 216)`` → ``(B, T, K)``, e.g. ``self.net.salience``); default the network.

        Output frames ``[s, s + batch_frames)`` come from input frames widened by the network's
        receptive field on each side, clipped to the signal: at the ends the convolutions then
        pad each layer with zeros exactly as on the whole signal. Windows of equal length (all
        but each input's last, usually) are stacked into batches of ``batch_size``.
        """
        xs = [torch.as_tensor(x).to(self.device, torch.float32) for x in xs]
        if any(len(x) == 0 for x in xs):
            raise ParameterError("a network input has no frames")
        ctx, step = self.net.receptive_field, self.batch_frames
        by_length: dict[int, list[tuple[int, int, int, int]]] = {}
        for i, x in enumerate(xs):
            for s in range(0, len(x), step):
                lo, hi = max(0, s - ctx), min(len(x), s + step + ctx)
                by_length.setdefault(hi - lo, []).append((i, s, lo, hi))
        fn = fn or self.net
        outs: list[torch.Tensor | None] = [None] * len(xs)
        with torch.inference_mode():
            for windows in by_length.values():
                for first in range(0, len(windows), self.batch_size):
                    part = windows[first : first + self.batch_size]
                    batch = torch.stack([xs[i][lo:hi] for i, _, lo, hi in part]).permute(0, 3, 1, 2)
                    frames = fn(batch.contiguous(memory_format=torch.channels_last))
                    for (i, s, lo, _), p in zip(part, frames, strict=True):
                        if outs[i] is None:
                            outs[i] = p.new_empty((len(xs[i]),) + p.shape[1:])
                        m = min(step, len(xs[i]) - s)
                        outs[i][s : s + m] = p[s - lo : s - lo + m]
        return outs

    def from_signal(self, y: np.ndarray | torch.Tensor, cens: bool = False) -> ChromaFeatures:
        """Deep chroma of a mono float32 signal at 22050 Hz (and, with ``cens``, CENS of the same HCQT)."""
        return self.from_signals([y], cens)[0]

    def from_signals(self, ys: Sequence[np.ndarray | torch.Tensor], cens: bool = False) -> list[ChromaFeatures]:
        """Deep chroma of several signals, the network's windows batched across them (see
        :meth:`network_many`); each result equals :meth:`from_signal` of its signal. With
        ``cens``, each also holds the CENS of its own HCQT (:func:`models.cens.cens_from_log_hcqt`)."""
        xs, censes = inputs_and_cens(self, ys, cens)
        probs = self.network_many(xs)
        return [chroma_features(p, p.shape[0], c) for p, c in zip(probs, censes, strict=True)]

    def from_file(self, path: str | Path) -> ChromaFeatures:
        """Deep chroma of an audio file.

        Parameters
        ----------
        path : str or Path
            WAV, FLAC, MP3, Ogg Vorbis/Opus or AIFF at any sample rate and channel count (decoded,
            mixed down and resampled to 22,050 Hz as ``librosa.load`` does: :func:`models.audio.load_audio`).

        Returns
        -------
        ChromaFeatures
            ``probabilities`` ``(13, T)`` (C … B, then the CTC blank), ``chroma`` ``(12, T)`` (blank
            dropped, each frame of unit L2 norm) and ``times`` ``(T,)`` in seconds, at 25 Hz.

        Raises
        ------
        models.audio.AudioError
            The file is missing, empty, not audio, or in a format libsndfile does not decode.

        Examples
        --------
        >>> from models import ChromaExtractor
        >>> features = ChromaExtractor("v2_ctc_train123valid4").from_file("recording.flac")  # doctest: +SKIP
        >>> features.chroma.shape                                                          # doctest: +SKIP
        (12, 4503)
        """
        y, _ = load_audio(path, SAMPLE_RATE)
        return self.from_signal(y)
