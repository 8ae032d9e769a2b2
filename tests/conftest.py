"""Shared test fixtures: the reference data of ``../shared`` (skipped with a reason if absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "fixtures" / "ctc_chroma_reference"
RECORDINGS = SHARED / "data" / "recordings"
EXCERPTS = ("Beethoven_Op002-2-01_Pitman", "Beethoven_Op067-01_DavidHighSchool")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference fixtures not found at {REFERENCE} (../shared is absent)")
    return REFERENCE


@pytest.fixture(scope="session")
def recordings_dir() -> Path:
    if not RECORDINGS.is_dir():
        pytest.skip(f"recordings not found at {RECORDINGS} (../shared is absent)")
    return RECORDINGS
