"""Decode audio files to mono float32 at the front end's 22050 Hz, as ``librosa.load``.

Decoding is done by libsndfile (through soundfile): WAV, FLAC, MP3, Ogg Vorbis and Opus, AIFF
and the other formats it knows, at any sample rate and channel count. Blocks are mixed down
(channel mean) and resampled with a streaming soxr resampler (``soxr_hq``, librosa's default),
so memory stays at the size of the output signal rather than of the decoded original.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from models.frontend import SAMPLE_RATE

__all__ = ["AudioError", "audio_info", "load_audio"]

# libsndfile 1.2 misplaces the Opus pre-skip (312 samples appear mid-stream) when one read asks
# for 2**18 frames or more, as librosa.load's single whole-file read does; reads of 2**16
# frames agree with soundfile.read's.
_BLOCK_FRAMES = 1 << 16


class AudioError(ValueError):
    """An audio file that cannot be read; the message names the file and the problem."""


def _open(path: Path) -> sf.SoundFile:
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file")
    try:
        return sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError) as exc:
        reason = str(exc).split(": ", 1)[-1].strip().rstrip(".") or "unreadable"
        raise AudioError(
            f"{path}: not a decodable audio file ({reason}; libsndfile reads WAV, FLAC, MP3, Ogg Vorbis/Opus, AIFF)"
        ) from exc


def audio_info(path: str | Path) -> tuple[float, int, int]:
    """``(duration in seconds, sample rate, channels)`` of an audio file, without decoding it."""
    with _open(Path(path)) as f:
        return f.frames / f.samplerate, f.samplerate, f.channels


def load_audio(path: str | Path, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Return ``(y, orig_sr)``: the file as mono float32 at ``sr`` Hz, and its native rate.

    Equal to ``librosa.load(path, sr=sr)`` (channel mean, ``soxr_hq``, length
    ``ceil(n · sr / orig_sr)``), except for Ogg Opus where it avoids a libsndfile misdecode.
    Raises :class:`AudioError` for missing, empty, undecodable or zero-length files.
    """
    path = Path(path)
    with _open(path) as f:
        orig_sr, n_in = f.samplerate, f.frames
        n_out = int(np.ceil(n_in * sr / orig_sr))
        out = np.zeros(n_out, dtype=np.float32)
        stream = None if orig_sr == sr else soxr.ResampleStream(orig_sr, sr, 1, dtype="float32", quality="HQ")
        pos = 0
        try:
            for block in f.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
                mono = block.mean(axis=1, dtype=np.float32)
                chunk = mono if stream is None else stream.resample_chunk(mono, last=False)
                take = min(len(chunk), n_out - pos)
                out[pos : pos + take] = chunk[:take]
                pos += take
            if stream is not None:
                tail = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
                take = min(len(tail), n_out - pos)
                out[pos : pos + take] = tail[:take]
                pos += take
        except (sf.LibsndfileError, RuntimeError) as exc:
            reason = str(exc).replace("Error :", "").strip().rstrip(".")
            raise AudioError(f"{path}: corrupt audio data ({reason})") from exc
    if pos == 0:
        raise AudioError(f"{path}: contains no audio samples")
    return out, orig_sr
