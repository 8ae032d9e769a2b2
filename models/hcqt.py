"""Magnitude of the harmonic CQT: the reference (six ``librosa.cqt``) and a fast equivalent.

:func:`hcqt_reference` is the original ``ctc_chroma`` computation. :class:`FastHCQT`
computes the same filter responses with librosa's own filters (``librosa.filters.wavelet``,
``librosa.util.sparsify_rows``) and the same multi-rate scheme, but shares the work between
the six harmonics: one halving pyramid of the signal (soxr, as librosa) instead of one per
harmonic (computed on the device by :class:`models.resample.Decimator`, equal to soxr, or on the
CPU by soxr itself), and one STFT per (pyramid level, FFT size) whose frames are projected onto all
harmonics' filters at once by a single matrix product (PyTorch, CPU or CUDA). Where the
frames overlap four times or more (the upper levels, whose hop is a few samples), the same
projections are computed by :class:`models.polyphase.PolyphaseFilterBank` instead. Like librosa,
a harmonic whose filters allow ``e >= 2`` early downsamplings starts from one ``2**e``
resampling (a second chain of the pyramid): halving twice treats the transition band
differently, which shows where a bin is otherwise quiet.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np
import scipy.fft
import torch

from models.errors import ParameterError
from models.frontend import BINS_PER_OCTAVE, FMIN, HARMONICS, HOP_LENGTH, N_BINS, N_OCTAVES, SAMPLE_RATE
from models.polyphase import PolyphaseFilterBank
from models.resample import Decimator, soxr_downsample

__all__ = ["FastHCQT", "hcqt_reference", "n_hcqt_frames"]

_SPARSITY = 0.01  # librosa.cqt default
_FILTER_SCALE = 1.0
#: Projections whose frames overlap this many times or more use :mod:`models.polyphase`
#: (measured faster from here on; below it, one FFT per frame is).
POLYPHASE_MIN_OVERLAP = 4


def hcqt_reference(y: np.ndarray) -> np.ndarray:
    """``|CQT|`` ``(6, 216, n_frames)`` of a 22050 Hz signal, exactly as ``ctc_chroma``."""
    cqts = [
        librosa.cqt(
            y, sr=SAMPLE_RATE, hop_length=HOP_LENGTH, fmin=FMIN * h, n_bins=N_BINS, bins_per_octave=BINS_PER_OCTAVE
        )
        for h in HARMONICS
    ]
    n = min(c.shape[-1] for c in cqts)
    return np.abs(np.stack([c[:, :n] for c in cqts]))


def n_hcqt_frames(n_samples: int) -> int:
    """Number of hop frames :func:`hcqt_reference` returns for ``n_samples`` at 22050 Hz."""
    return 1 + n_samples // HOP_LENGTH


def _early_downsample_count(filter_cutoff: float) -> int:
    """librosa's ``__early_downsample_count`` for this front end's hop and octave count."""
    nyquist = SAMPLE_RATE / 2.0
    count1 = max(0, int(np.ceil(np.log2(nyquist / filter_cutoff)) - 1) - 1)
    num_twos = int(np.log2(HOP_LENGTH & -HOP_LENGTH))
    count2 = max(0, num_twos - N_OCTAVES + 1)
    return min(count1, count2)


@dataclass
class _Projection:
    """Filters of several (harmonic, octave) blocks that share one STFT."""

    chain: int  # which resampling chain of the pyramid (the early downsampling count, or 0)
    level: int  # pyramid level: signal at SAMPLE_RATE / 2**level
    n_fft: int
    basis: torch.Tensor | None  # (bins, n_filters) complex64, / sqrt(filter length); None: polyphase
    runs: tuple[tuple[int, int, int], ...]  # (filter, output row, count): where filters belong
    polyphase: PolyphaseFilterBank | None  # for small hops: the same responses by FFT along time
    bins: slice  # the STFT bins where the (sparsified) basis has non-zeros


def _filter_fft(sr: float, freqs: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """librosa's ``__vqt_filter_fft`` (frequency-domain, sparsified VQT basis)."""
    basis, lengths = librosa.filters.wavelet(
        freqs=freqs, sr=sr, filter_scale=_FILTER_SCALE, norm=1, pad_fft=True, window="hann", gamma=0.0, alpha=alpha
    )
    n_fft = basis.shape[1]
    basis = basis * (lengths[:, None] / float(n_fft))
    fft_basis = np.fft.fft(basis, n=n_fft, axis=1)[:, : n_fft // 2 + 1]
    sparse = librosa.util.sparsify_rows(fft_basis, quantile=_SPARSITY, dtype=np.complex64)
    return sparse.toarray()


def _frame_span(x: torch.Tensor, n_fft: int, hop: int, first: int, count: int) -> torch.Tensor:
    """The samples under frames ``first:first + count`` of ``x``'s centred STFT, on ``x``'s device.

    As ``torch.stft(..., center=True, pad_mode="constant")``: frame ``t`` covers
    ``x[t · hop - n_fft / 2 : t · hop + n_fft / 2]``, zeros outside ``x``. The result holds
    ``(count - 1) · hop + n_fft`` samples; frame ``i`` starts at ``i · hop``.
    """
    lo, hi = first * hop - n_fft // 2, (first + count - 1) * hop + n_fft // 2
    body = x[max(lo, 0) : min(hi, len(x))]
    return torch.nn.functional.pad(body, (max(0, -lo), max(0, hi - len(x))))


class FastHCQT:
    """Callable computing ``|HCQT|`` ``(6, 216, n_frames)`` of a 22050 Hz signal.

    ``device`` is where the STFTs and projections run. The resampling pyramid runs there too
    when ``pyramid_on_device`` (default: on any device but the CPU, where soxr is faster), so a
    GPU takes the whole front end with no host round trip; otherwise soxr computes it on the CPU.
    Build once and reuse: the constructor prepares all filter bases.
    """

    def __init__(self, device: str | torch.device = "cpu", pyramid_on_device: bool | None = None) -> None:
        self.device = torch.device(device)
        self.pyramid_on_device = self.device.type != "cpu" if pyramid_on_device is None else pyramid_on_device
        blocks: dict[tuple[int, int, int], list[tuple[np.ndarray, int]]] = {}
        for hi, h in enumerate(HARMONICS):
            freqs = librosa.cqt_frequencies(N_BINS, fmin=FMIN * h, bins_per_octave=BINS_PER_OCTAVE)
            alpha = librosa.filters._relative_bandwidth(freqs=freqs)
            _, cutoff = librosa.filters.wavelet_lengths(
                freqs=freqs, sr=SAMPLE_RATE, window="hann", filter_scale=_FILTER_SCALE, gamma=0.0, alpha=alpha
            )
            early = _early_downsample_count(cutoff)
            chain = early if early >= 2 else 0  # one halving is the same resampling as 2**1
            sr_h = SAMPLE_RATE / 2**early
            lengths, _ = librosa.filters.wavelet_lengths(
                freqs=freqs, sr=sr_h, window="hann", filter_scale=_FILTER_SCALE, gamma=0.0, alpha=alpha
            )
            for octave in range(N_OCTAVES):
                sl = slice(N_BINS - BINS_PER_OCTAVE * (octave + 1), N_BINS - BINS_PER_OCTAVE * octave)
                my_sr = sr_h / 2**octave
                fft_basis = _filter_fft(my_sr, freqs[sl], alpha[sl]) * np.sqrt(sr_h / my_sr)
                fft_basis /= np.sqrt(lengths[sl])[:, None]  # librosa's scale=True, moved before |.|
                key = (chain, early + octave, fft_basis.shape[1] * 2 - 2)
                blocks.setdefault(key, []).append((fft_basis, hi * N_BINS + sl.start))
        self.projections = []
        for (chain, level, n_fft), parts in sorted(blocks.items()):
            basis = np.concatenate([b for b, _ in parts])
            used = np.flatnonzero(np.any(basis != 0, axis=0))
            bins = slice(int(used[0]), int(used[-1]) + 1)
            hop = HOP_LENGTH >> level
            polyphase, freq_basis = None, None
            if n_fft >= POLYPHASE_MIN_OVERLAP * hop:
                dft = np.exp(-2j * np.pi * np.outer(np.arange(n_fft), np.arange(bins.start, bins.stop)) / n_fft)
                polyphase = PolyphaseFilterBank(dft @ basis[:, bins].T, hop, self.device)
            else:
                freq_basis = torch.from_numpy(np.ascontiguousarray(basis[:, bins].T, dtype=np.complex64))
            self.projections.append(
                _Projection(
                    chain=chain,
                    level=level,
                    n_fft=n_fft,
                    bins=bins,
                    basis=None if freq_basis is None else freq_basis.to(self.device),
                    runs=tuple((i * BINS_PER_OCTAVE, row, BINS_PER_OCTAVE) for i, (_, row) in enumerate(parts)),
                    polyphase=polyphase,
                )
            )
        self.n_levels = 1 + max(p.level for p in self.projections)
        self.chains = sorted({p.chain for p in self.projections})
        factors = {2} | {2**c for c in self.chains if c}
        self.decimators = {f: Decimator(f, self.device) for f in factors} if self.pyramid_on_device else {}

    def pyramid(self, y: np.ndarray | torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
        """The signal at 22050 / 2**level Hz, by ``(chain, level)``, resampled as librosa does.

        Chain ``c`` starts with one ``2**c`` soxr resampling, then halves; each step keeps
        ``librosa.resample(..., scale=True)`` semantics (length ``ceil(n / r)``, gain ``sqrt(r)``).
        Float32 tensors ``(n_level,)``, on the device when :attr:`pyramid_on_device`, else on the CPU.
        """
        if len(y) < 2**self.n_levels:
            raise ParameterError(f"signal of {len(y)} samples is too short for the HCQT")
        y = torch.as_tensor(y, dtype=torch.float32)
        y = y.to(self.device) if self.pyramid_on_device else y.cpu().contiguous()
        levels: dict[tuple[int, int], torch.Tensor] = {(0, 0): y}
        for chain in self.chains:
            prev, start = (y, 0) if chain == 0 else (self._downsample(y, 2**chain), chain)
            levels[(chain, start)] = prev
            for level in range(start + 1, self.n_levels):
                prev = levels[(chain, level)] = self._downsample(prev, 2)
        return levels

    def _downsample(self, x: torch.Tensor, factor: int) -> torch.Tensor:
        """One pyramid step ``(n,)`` → ``(ceil(n / factor),)``: the device's Decimator or soxr."""
        if self.pyramid_on_device:
            return self.decimators[factor](x)
        return torch.from_numpy(soxr_downsample(x.numpy(), factor))

    def frames(self, levels: dict[tuple[int, int], torch.Tensor], start: int, stop: int) -> torch.Tensor:
        """``|HCQT|`` hop frames ``start:stop``, time first ``(stop - start, 6, 216)``, from a :meth:`pyramid`.

        Only the part of each level around those frames is transformed, so a long signal can
        be processed chunk by chunk from one pyramid, with results equal to the whole-signal
        transform up to float rounding (the same samples enter every window).
        """
        n = len(levels[(0, 0)])
        if not 0 <= start < stop <= n_hcqt_frames(n):
            raise ParameterError(f"frames {start}:{stop} outside the signal's {n_hcqt_frames(n)}")
        count = stop - start
        out = torch.empty(count, len(HARMONICS) * N_BINS, dtype=torch.float32, device=self.device)
        for proj in self.projections:
            x, hop = levels[(proj.chain, proj.level)], HOP_LENGTH >> proj.level
            if proj.polyphase is not None:
                first, n_frames = proj.polyphase.aligned(start, count)
                mag = proj.polyphase(_frame_span(x, proj.n_fft, hop, first, n_frames))[start - first :]
                for src, dst, width in proj.runs:
                    out[:, dst : dst + width] = mag[:count, src : src + width]
            else:
                resp = self._spectra(_frame_span(x, proj.n_fft, hop, start, count), proj) @ proj.basis
                for src, dst, width in proj.runs:
                    torch.abs(resp[:, src : src + width], out=out[:, dst : dst + width])
        return out.reshape(count, len(HARMONICS), N_BINS)

    def _spectra(self, padded: torch.Tensor, proj: _Projection) -> torch.Tensor:
        """Bins ``proj.bins`` of the rectangular-window FFT of each frame of ``padded`` (time first).

        On the CPU, scipy's pocketfft transforms the strided frame view directly, in parallel
        over torch's thread count: several times faster than ``torch.stft``, which copies the
        frames and runs single-threaded.
        """
        hop = HOP_LENGTH >> proj.level
        if self.device.type != "cpu":
            frames = padded.to(self.device).unfold(0, proj.n_fft, hop)
            return torch.fft.rfft(frames, dim=-1)[:, proj.bins]
        frames = np.lib.stride_tricks.sliding_window_view(padded.cpu().numpy(), proj.n_fft)[::hop]
        return torch.from_numpy(scipy.fft.rfft(frames, axis=-1, workers=torch.get_num_threads())[:, proj.bins])

    def __call__(self, y: np.ndarray) -> torch.Tensor:
        """``|HCQT|`` of the whole signal as a float32 tensor ``(6, 216, n_frames)``."""
        return self.frames(self.pyramid(y), 0, n_hcqt_frames(len(y))).permute(1, 2, 0)
