"""Batch feature extraction: deep chroma of many recordings into one ``.npz`` per recording."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from indexer.walk import find_audio
from models.audio import AudioError, check_readable
from models.extractor import ChromaExtractor, ChromaFeatures
from models.files import atomic_write

__all__ = ["ExtractionReport", "extract_to_folder", "output_path"]


@dataclass
class ExtractionReport:
    """What a batch run wrote and what failed (path, one-line reason)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "written": [str(p) for p in self.written],
            "failed": [{"path": str(p), "error": e} for p, e in self.failed],
        }


def output_path(audio: Path, root: Path | None, out_dir: Path) -> Path:
    """``out_dir/<stem>.npz`` for a file given directly; the folder's tree mirrored for a walk."""
    rel = audio.relative_to(root) if root is not None else Path(audio.name)
    return out_dir / rel.with_suffix(".npz")


def _save_atomic(features: ChromaFeatures, path: Path) -> None:
    """Write the ``.npz`` through :func:`models.files.atomic_write`: no half-written output."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            features.save(f)

    atomic_write(path, write)


def extract_to_folder(
    inputs: Iterable[str | Path], out_dir: str | Path, extractor: ChromaExtractor, progress: bool = True
) -> ExtractionReport:
    """Extract deep chroma of every recording in ``inputs`` (files or folders) into ``out_dir``.

    A file that cannot be read is recorded in the report with its reason and the others go on.
    """
    out_dir = Path(out_dir)
    jobs: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        root = item if item.is_dir() else None
        jobs += [(audio, output_path(audio, root, out_dir)) for audio in find_audio([item])]
    report = ExtractionReport()
    bar = tqdm(jobs, unit="file", disable=not progress, dynamic_ncols=True)
    for audio, target in bar:
        bar.set_postfix_str(audio.name, refresh=False)
        try:
            check_readable(audio)
            features = extractor.from_file(audio)
        except (AudioError, ValueError) as exc:
            message = str(exc) if str(audio) in str(exc) else f"{audio}: {exc}"
            report.failed.append((audio, message))
            tqdm.write(f"error: {message}", file=sys.stderr)
            continue
        _save_atomic(features, target)
        report.written.append(target)
    return report
