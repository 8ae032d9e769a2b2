"""Find the audio files of a collection: explicit files as given, folders recursively."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from models.audio import AUDIO_EXTENSIONS, UNSUPPORTED_EXTENSIONS

__all__ = ["find_audio"]


def find_audio(paths: Iterable[str | Path], follow_symlinks: bool = True) -> list[Path]:
    """Expand ``paths``: a file is kept as given (whatever its extension, so that a bad file
    is reported rather than silently dropped); a folder contributes, recursively and sorted,
    its files with an audio extension (:data:`AUDIO_EXTENSIONS` and
    :data:`UNSUPPORTED_EXTENSIONS`). Hidden files and folders are skipped.

    Symbolic links to files are followed, wherever they point (also outside the folder), unless
    ``follow_symlinks`` is false; links to folders are not walked (no cycles). A link that
    leads nowhere (dangling, or a loop) is kept, so that indexing reports it instead of
    skipping it silently.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            found.append(path)
            continue
        for candidate in sorted(path.rglob("*")):
            rel = candidate.relative_to(path)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if candidate.suffix.lower() not in AUDIO_EXTENSIONS | UNSUPPORTED_EXTENSIONS:
                continue
            if candidate.is_symlink():
                if follow_symlinks and not candidate.is_dir():
                    found.append(candidate)
            elif candidate.is_file():
                found.append(candidate)
    return found
