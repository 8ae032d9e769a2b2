"""A concert hall for rendered audio: a synthetic room impulse response and its convolution.

Recordings of orchestras are made in rooms: every note rings on, blurring onsets and mixing each
chord into the next. Renderings for benchmarks and training (``bench/render_scores.py --room``)
add that with a statistical model of late reverberation — Gaussian noise whose energy decays
exponentially, by 60 dB in ``rt60`` seconds below :data:`CROSSOVER_HZ` and faster above it (air
and walls absorb high frequencies: ``rt60 · brightness`` at 8 kHz) — after a few sparse early
reflections. Nothing is downloaded; the response is fully determined by its arguments.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from models.errors import ParameterError
from models.frontend import SAMPLE_RATE

__all__ = ["CROSSOVER_HZ", "energy_decay_db", "in_room", "room_response"]

CROSSOVER_HZ = 500.0
EARLY_REFLECTIONS = 8
EARLY_SECONDS = 0.08


def room_response(rt60: float, sample_rate: int = SAMPLE_RATE, *, brightness: float = 0.5,
                  seed: int = 0) -> np.ndarray:
    """Impulse response of a room's reverberation, shape (n,), unit energy, no direct sound.

    ``rt60``: seconds for the energy to fall by 60 dB at low frequencies (a concert hall: 1.6–2.4).
    ``brightness`` (0, 1]: the 8 kHz reverberation time as a fraction of ``rt60`` (log-frequency
    interpolation in between). Length: 1.2 · ``rt60``.
    """
    if not 0.05 <= rt60 <= 10 or not 0 < brightness <= 1:
        raise ParameterError(f"room: rt60 must lie in [0.05, 10] s and brightness in (0, 1], got {rt60}, {brightness}")
    rng = np.random.default_rng(seed)
    n = int(1.2 * rt60 * sample_rate)
    nfft = 512
    _, _, spectrum = scipy.signal.stft(rng.standard_normal(n + nfft), fs=sample_rate, nperseg=nfft)
    freqs = np.fft.rfftfreq(nfft, 1 / sample_rate)
    times = np.arange(spectrum.shape[1]) * (nfft // 2) / sample_rate
    octaves = np.clip(np.log2(np.maximum(freqs, 1.0) / CROSSOVER_HZ), 0, None) / np.log2(8000 / CROSSOVER_HZ)
    band_rt60 = rt60 * brightness ** octaves  # (freqs,)
    decay = np.exp(-3 * np.log(10) * times[None, :] / band_rt60[:, None])  # amplitude: −60 dB of energy at rt60
    _, late = scipy.signal.istft(spectrum * decay, fs=sample_rate, nperseg=nfft)
    response = late[:n]
    for _ in range(EARLY_REFLECTIONS):
        at = int(rng.uniform(0.005, EARLY_SECONDS) * sample_rate)
        response[at] += rng.choice([-1, 1]) * rng.uniform(0.3, 1.0) * np.abs(response).max()
    return (response / np.sqrt(np.sum(response ** 2))).astype(np.float32)


def in_room(audio: np.ndarray, response: np.ndarray, direct_to_reverberant_db: float = 3.0) -> np.ndarray:
    """``audio`` (n,) heard in the room: the dry signal plus its convolution with ``response``
    (unit energy) scaled so the direct sound's energy is ``direct_to_reverberant_db`` above the
    reverberation's; shape (n + len(response) - 1,), peak ≤ 0.9 (no clipping in a file)."""
    wet = scipy.signal.oaconvolve(audio, response)
    out = wet * 10 ** (-direct_to_reverberant_db / 20)
    out[: len(audio)] += audio
    peak = float(np.abs(out).max())
    return (out * (0.9 / peak) if peak > 0.9 else out).astype(np.float32)


def energy_decay_db(response: np.ndarray) -> np.ndarray:
    """Schroeder's backward-integrated energy decay curve of ``response`` (n,), in dB, 0 at the start."""
    energy = np.cumsum(response[::-1].astype(np.float64) ** 2)[::-1]
    return 10 * np.log10(np.maximum(energy / energy[0], 1e-30))
