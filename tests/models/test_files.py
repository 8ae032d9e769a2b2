"""Atomic writes of the caches' plain .npy files."""

from __future__ import annotations

import numpy as np
import pytest

from models.files import atomic_write_npy


def test_npy_round_trips_and_leaves_no_temporary_file(tmp_path):
    array = np.arange(24, dtype=np.float16).reshape(4, 6)
    atomic_write_npy(tmp_path / "a.npy", array)
    back = np.load(tmp_path / "a.npy", allow_pickle=False)
    assert back.dtype == np.float16 and np.array_equal(back, array)
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    """An object array needs pickle, which is refused: the earlier content stays, no temporary remains."""
    atomic_write_npy(tmp_path / "a.npy", np.ones(3))
    with pytest.raises(ValueError):
        atomic_write_npy(tmp_path / "a.npy", np.array([{"x": 1}], dtype=object))
    assert np.array_equal(np.load(tmp_path / "a.npy", allow_pickle=False), np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]
