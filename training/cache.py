"""The front end of every training recording, computed once and kept on disk as float16.

The front end (decoding, resampling, HCQT, binning) costs as much as the network's forward
pass; training reads the same recordings every epoch, so it is computed once per recording and
stored before its per-frame normalisation — the log-HCQT ``(T, 6, 216)`` of
:meth:`models.extractor.ChromaExtractor.log_hcqt`, which mixing augmentation needs (levels are
lost once each frame is normalised) — as float16 ``.npy`` (values in [0, 1], relative error
≤ 5e-4; 2.6 kB per 25 Hz frame, 233 MB per audio hour), read back by memory map;
:func:`network_input` normalises it. Files are
named by the audio's content hash and :data:`FRONT_END_VERSION`, so a changed recording or front
end is never read stale; plain ``.npy`` (no pickle) is the only format read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.audio import load_audio
from models.extractor import ChromaExtractor
from models.files import atomic_write_npy
from models.frontend import SAMPLE_RATE, normalize_frames

__all__ = ["FRONT_END_VERSION", "HCQTCache", "network_input"]

FRONT_END_VERSION = 2
"""Bumped when what is cached changes (2: the log-HCQT before normalisation): older files are then ignored."""


def network_input(log_hcqt: np.ndarray) -> np.ndarray:
    """Cached ``(T, 6, 216)`` → the network input ``(T, 216, 6)`` float32 (L2 per frame and harmonic)."""
    return normalize_frames(torch.from_numpy(np.asarray(log_hcqt, dtype=np.float32))).numpy()


class HCQTCache:
    """Log-HCQTs ``(T, 6, 216)`` of audio files, cached in ``folder``."""

    def __init__(self, folder: str | Path, device: str = "cpu") -> None:
        self.folder = Path(folder)
        self.device = device
        self._extractor = None
        self._keys: dict[Path, str] = {}

    def path(self, audio: Path) -> Path:
        """Cache file of ``audio`` (named by its content)."""
        if audio not in self._keys:
            digest = hashlib.blake2b(digest_size=12)
            with open(audio, "rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
            self._keys[audio] = f"{audio.stem}-{digest.hexdigest()}-v{FRONT_END_VERSION}.npy"
        return self.folder / self._keys[audio]

    def get(self, audio: str | Path) -> np.ndarray:
        """The cached log-HCQT of ``audio`` (computed first if missing), memory-mapped float16."""
        audio = Path(audio)
        target = self.path(audio)
        if not target.is_file():
            x = self._front_end(audio).astype(np.float16)
            atomic_write_npy(target, x)
        return np.load(target, mmap_mode="r", allow_pickle=False)

    def fill(self, audios: list[Path], progress: bool = True) -> None:
        """Compute every missing cache file (a progress bar counts recordings)."""
        for audio in tqdm(audios, unit="rec", desc="front end", disable=not progress, dynamic_ncols=True):
            self.get(audio)

    def _front_end(self, audio: Path) -> np.ndarray:
        if self._extractor is None:
            self._extractor = ChromaExtractor(device=self.device)

        y, _ = load_audio(audio, SAMPLE_RATE)
        return self._extractor.log_hcqt(y).cpu().numpy()
