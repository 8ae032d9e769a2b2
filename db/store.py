"""Persistent index: SQLite (through sqlite-utils) plus one FAISS file beside it.

Tables, plain enough for any SQLite tool:

- ``settings(key, value)``: the :class:`models.retrieval_features.IndexSettings` (JSON) and the FAISS
  factory string in use; ``coarsened`` (``1``) once an index made with ``coarse_at_scale`` turned its
  features coarse (:meth:`IndexStore.coarsen`).
- ``recordings``: one row per audio file: path, size, mtime, content hash, duration, sample rate,
  channels, model id, ``status`` (``indexed`` or ``failed``), ``error``, ``n_frames``,
  ``in_index`` (1 once its vectors are in the saved FAISS file).
- ``features(recording_id, data)``: the retrieval-rate chroma ``(n_frames, 12)``, kept for
  re-ranking and for rebuilding the vector index, as ``uint8`` (``round(255·x)``: the values lie in
  [0, 1], error ≤ 1/510, 540 kB per audio hour) or, in indexes made before that format and not yet
  converted by :meth:`IndexStore.compact`, float32 (the ``features_dtype`` setting says which).
- ``cens(recording_id, data)``: CENS of the same front end at half the retrieval rate
  (:func:`models.retrieval_features.cens_rows`), ``uint8`` as the features, where the index keeps
  them (the ``cens_frames`` setting); themes written out in full texture are ranked by both.
- ``pending_removals(recording_id)``: recordings deleted from the tables whose vectors may still
  be in the saved FAISS file.
- ``frame_offsets(recording_id, offset, n_frames)``: where each recording's ``uint8`` frames lie
  in the frames file ``PATH.frames-N`` (named by the ``frames_file`` setting; :mod:`db.frames`),
  which readers map to score the hits of a lossy FAISS index exactly.

Crash safety: every change to the tables is one transaction; the FAISS file is replaced
atomically; ``in_index`` is set only after the FAISS file holding those vectors is saved, and
pending removals are cleared only after the FAISS file without them is saved. Adding a
recording's vectors first removes its id range, so replaying an interrupted step is harmless.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from urllib.parse import quote

import numpy as np
import sqlite_utils

from db.frames import append_frames, map_frames
from db.vectors import (
    EXACT_FACTORY,
    FINGERPRINT_BLOCKS,
    IVF_FLAT_LIMIT,
    VectorFileError,
    VectorIndex,
    auto_factory,
    file_fingerprint,
)
from models.errors import RetrievalError
from models.retrieval_features import IndexSettings, coarsened, shingles

__all__ = ["FEATURE_DTYPES", "FEATURE_STEP", "FILE_ROW", "IndexStore", "Recording", "StoreError", "StoredFrames",
           "decode_features", "encode_features"]


REPAIR_HINT = "run `cli.py index` on the collection again: it rebuilds the vectors from the stored features"


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection that sees the last committed state, also while ``index`` writes.

    ``mode=ro`` first: SQLite reads the write-ahead log through the shared-memory file, which it
    may use read-only (another user's index: the files an index run keeps exist) or create.
    Where neither can be done (a read-only folder or mount without them), the file is opened
    ``immutable``, which is right only when its log was checkpointed: a non-empty ``-wal`` beside
    it holds changes this reader cannot apply, and :class:`StoreError` says so.
    """
    uri = f"file:{quote(str(path.resolve()))}"
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
    wal = IndexStore.files(path)["wal"]
    if wal.is_file() and wal.stat().st_size > 0:
        raise StoreError(
            f"{path}: its write-ahead log {wal.name} holds changes that cannot be read here (no {path.name}-shm "
            "and no right to make one): wait for the index run to finish, or checkpoint the index before copying "
            f"it read-only (sqlite3 {path.name} 'PRAGMA wal_checkpoint(TRUNCATE)')"
        )
    return sqlite3.connect(f"{uri}?immutable=1", uri=True)


def _disk_full(error: BaseException) -> bool:
    """Whether ``error`` says the disk (or quota) is full: an ``OSError``, SQLite's message, or FAISS's."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(words in str(error) for words in ("database or disk is full", "No space left on device",
                                                 "Disk quota exceeded"))


FRAME_OFFSETS_TABLE = ("CREATE TABLE IF NOT EXISTS frame_offsets (recording_id INTEGER PRIMARY KEY, "
                       "offset INTEGER NOT NULL, n_frames INTEGER NOT NULL)")
"""Where each recording's frames lie in the frames file (:mod:`db.frames`)."""


@dataclass(frozen=True)
class StoredFrames:
    """The frames file mapped: ``frames`` ``(F, 12)`` uint8 (value = round(255·x)), and per
    recording id ``(max id + 1,)`` its first frame ``offsets`` and its ``lengths`` (0: none)."""

    frames: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray

    def decoded(self, recording_id: int) -> np.ndarray | None:
        """A recording's frames ``(n_frames, 12)`` float32, as :meth:`IndexStore.frames` gives them
        (``None`` where the file holds none): a copy out of the mapped file, no SQLite read."""
        if not 0 <= recording_id < len(self.lengths) or not self.lengths[recording_id]:
            return None
        start = self.offsets[recording_id]
        return self.frames[start : start + self.lengths[recording_id]].astype(np.float32) * np.float32(FEATURE_STEP)


class StoreError(RetrievalError, RuntimeError):
    """The index file is missing, unreadable or inconsistent with what was asked."""


MMAP_BYTES = 1 << 40
"""SQLite's memory-map limit for readers: features are read through the page cache, not copied."""

FEATURE_DTYPES = ("uint8", "float32")
"""How stored features are encoded: ``uint8`` (new indexes) or ``float32`` (older ones)."""

FEATURE_STEP = 1.0 / 255
"""The ``uint8`` quantisation step: a stored value is within half of it of the computed one."""


def encode_features(features: np.ndarray, dtype: str) -> bytes:
    """``(n_frames, 12)`` features in [0, 1] as the bytes of the table's ``data`` column."""
    if dtype == "uint8":
        return np.round(np.clip(features, 0.0, 1.0) * 255).astype(np.uint8).tobytes()
    return np.ascontiguousarray(features, dtype=np.float32).tobytes()


def decode_features(data: bytes, dtype: str) -> np.ndarray:
    """The float32 features ``(n_frames, 12)`` stored as ``data`` (see :func:`encode_features`)."""
    if dtype == "uint8":
        return np.frombuffer(data, dtype=np.uint8).reshape(-1, 12).astype(np.float32) * np.float32(FEATURE_STEP)
    return np.frombuffer(data, dtype=np.float32).reshape(-1, 12)


@dataclass(frozen=True)
class Recording:
    """One row of the ``recordings`` table."""

    id: int
    path: str
    size: int
    mtime: float
    hash: str
    duration: float | None
    sample_rate: int | None
    channels: int | None
    model_id: str
    status: str
    error: str | None
    n_frames: int
    in_index: int
    indexed_at: float

    @property
    def name(self) -> str:
        return Path(self.path).stem


_RECORDING_COLUMNS = {f.name: {"int": int, "str": str, "float": float}[f.type.split(" ")[0]] for f in fields(Recording)}
"""The ``recordings`` table, column by column: the fields of :class:`Recording` (the one definition)."""

FILE_ROW = ("path", "size", "mtime", "hash", "duration", "sample_rate", "channels")
"""The columns that describe a recording's file (what an extraction reports), as :class:`Recording` names them."""


class IndexStore:
    """An index on disk: ``PATH`` (SQLite) and ``PATH.faiss``."""

    def __init__(self, path: str | Path, db: sqlite_utils.Database, settings: IndexSettings,
                 readonly: bool = False) -> None:
        """``settings`` as the index was made (:attr:`declared`); :attr:`settings` are those its
        stored features have now: the same, or :meth:`IndexSettings.at_scale` once :meth:`coarsen` ran."""
        self.path = Path(path)
        self.readonly = readonly
        self.db = db
        self.declared = settings
        self.settings = settings.at_scale() if self._setting("coarsened") else settings
        self._vectors: VectorIndex | None = None
        self._unsaved: tuple[list[int], list[int]] = ([], [])
        self._rebuild_all = False
        self._frames: StoredFrames | None | bool = None  # False: looked, none usable
        row = db.execute("SELECT value FROM settings WHERE key = 'features_dtype'").fetchone()
        self.features_dtype = row[0] if row else "float32"

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, settings: IndexSettings, features_dtype: str = FEATURE_DTYPES[0],
               replace: bool = False) -> IndexStore:
        """A new, empty index at ``path``, storing features as ``features_dtype``
        (:data:`FEATURE_DTYPES`; float32 only to keep them exactly as computed).

        ``path`` must not exist unless ``replace`` (a rebuild: the old index is replaced). The
        tables are made in a temporary file renamed into place, so a reader sees the old index
        or the new empty one, never one half made.
        """
        if features_dtype not in FEATURE_DTYPES:
            raise StoreError(f"features_dtype must be one of {FEATURE_DTYPES}, got {features_dtype!r}")
        path = Path(path)
        if path.exists() and not replace:
            raise StoreError(f"{path}: an index already exists (use --rebuild to start over)")
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = path.with_name(f".{path.name}.new")
        fresh.unlink(missing_ok=True)
        db = sqlite_utils.Database(fresh)
        db.execute("PRAGMA journal_mode=WAL")
        with db.atomic():
            db["settings"].create({"key": str, "value": str}, pk="key")
            db["recordings"].create(_RECORDING_COLUMNS, pk="id", not_null={"path", "status"})
            db["recordings"].create_index(["path"], unique=True)
            db["features"].create({"recording_id": int, "data": bytes}, pk="recording_id")
            db["cens"].create({"recording_id": int, "data": bytes}, pk="recording_id")
            db["pending_removals"].create({"recording_id": int}, pk="recording_id")
            db.execute(FRAME_OFFSETS_TABLE)
            db["settings"].insert({"key": "features", "value": settings.to_json()})
            db["settings"].insert({"key": "faiss_factory", "value": ""})
            db["settings"].insert({"key": "features_dtype", "value": features_dtype})
        db.close()  # the last connection: its log is checkpointed into the file and removed
        for name, file in cls.files(path).items():  # the old index's log and vectors go before it does
            if name in ("wal", "shm", "vectors"):
                file.unlink(missing_ok=True)
        for file in path.parent.glob(f"{glob.escape(path.name)}.frames-*"):
            file.unlink()
        os.replace(fresh, path)
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False) -> IndexStore:
        """Open an existing index: the SQLite database with its FAISS and frames files beside it.

        Parameters
        ----------
        path : str or Path
            The database file ``cli.py index --db PATH`` made (default name ``music_index.db``).
        readonly : bool
            For readers (status, list, query, serve): nothing is written and no write permission
            is needed. The database is opened ``mode=ro``, or ``immutable`` where even SQLite's
            shared-memory file cannot be made (a read-only folder or mount, another user's index);
            the FAISS file is memory-mapped (:meth:`db.vectors.VectorIndex.load`), and so are the
            database's pages, so opening costs no memory whatever the index's size.

        Returns
        -------
        IndexStore
            Use it as ``collection`` of :func:`retrieval.query`; ``close()`` when done.

        Raises
        ------
        StoreError
            No index at ``path``, a folder, a file that is not an index of this engine, or one
            made by an incompatible version.
        """
        path = Path(path)
        if path.is_dir():
            raise StoreError(f"{path}: is a folder; give the index database file (e.g. {path / 'music_index.db'})")
        if not path.is_file():
            raise StoreError(f"{path}: no index here (build one with: python cli.py index AUDIO_DIR --db {path})")
        try:
            db = sqlite_utils.Database(_connect_readonly(path)) if readonly else sqlite_utils.Database(path)
            if readonly:
                db.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            row = db.execute("SELECT value FROM settings WHERE key = 'features'").fetchone()
        except Exception as error:  # sqlite3.DatabaseError and friends: a foreign or broken file
            raise StoreError(f"{path}: not an index database ({error})") from None
        if row is None:
            raise StoreError(f"{path}: not an index database (no index settings)")
        if not readonly:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(FRAME_OFFSETS_TABLE)  # indexes made before it: filled at the next checkpoint
        return cls(path, db, IndexSettings.from_json(row[0]), readonly)

    @staticmethod
    def files(path: str | Path) -> dict[str, Path]:
        """Every file of the index at ``path``: database, its WAL and shared memory, vectors, lock."""
        path = Path(path)
        return {"database": path, "wal": path.with_name(path.name + "-wal"), "shm": path.with_name(path.name + "-shm"),
                "vectors": path.with_name(path.name + ".faiss"), "lock": path.with_name(path.name + ".lock")}

    @classmethod
    @contextmanager
    def writing(cls, path: str | Path) -> Iterator[None]:
        """Hold the index's write lock: one writer (``index`` run) per index at a time, or :class:`StoreError`.

        Readers take no lock (they open read-only); a second writer would overwrite the FAISS file.
        """
        lock_path = cls.files(path)["lock"]
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"{path}: another index run is updating this index; wait for it to finish") from None
            try:
                yield
            except (OSError, sqlite3.OperationalError, RuntimeError) as error:
                if not _disk_full(error):
                    raise
                raise StoreError(f"{path}: disk full; the index keeps what was saved before: free some space "
                                 "and run index again to resume") from None

    @property
    def faiss_path(self) -> Path:
        return self.path.with_name(self.path.name + ".faiss")

    def close(self) -> None:
        self.db.close()

    # -- settings --------------------------------------------------------------------------

    def _setting(self, key: str) -> str:
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
        return row[0] if row else ""

    @property
    def factory(self) -> str:
        """The FAISS factory string of the saved vector index ('' before the first save)."""
        return self._setting("faiss_factory")

    # -- recordings ------------------------------------------------------------------------

    def recordings(self, status: str | None = None) -> list[Recording]:
        where, args = ("status = ?", [status]) if status else (None, None)
        return [Recording(**row) for row in self.db["recordings"].rows_where(where, args, order_by="path")]

    def longest_duration(self) -> float:
        """Seconds of the longest indexed recording (0 when there is none): one SQL aggregate."""
        row = self.db.execute("SELECT max(duration) FROM recordings WHERE status = 'indexed'").fetchone()
        return float(row[0] or 0.0)

    def recording(self, recording_id: int) -> Recording | None:
        rows = list(self.db["recordings"].rows_where("id = ?", [recording_id]))
        return Recording(**rows[0]) if rows else None

    def by_path(self) -> dict[str, Recording]:
        return {r.path: r for r in self.recordings()}

    def frames(self, recording_id: int) -> np.ndarray:
        """The stored frames ``(n_frames, 12)`` of a recording (float32, within the ``uint8`` step)."""
        row = self.db.execute("SELECT data FROM features WHERE recording_id = ?", [recording_id]).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no features stored for recording {recording_id}")
        return decode_features(row[0], self.features_dtype)

    def cens(self, recording_id: int) -> np.ndarray | None:
        """A recording's stored CENS ``(n, 12)`` (float32, within the ``uint8`` step; the
        index's :attr:`~models.retrieval_features.IndexSettings.cens_rate`), ``None`` where it has none."""
        if not self.settings.cens_frames:
            return None
        row = self.db.execute("SELECT data FROM cens WHERE recording_id = ?", [recording_id]).fetchone()
        return None if row is None else decode_features(row[0], "uint8")

    def iter_frames(self) -> Iterator[tuple[Recording, np.ndarray]]:
        for rec in self.recordings("indexed"):
            yield rec, self.frames(rec.id)

    def put_indexed(self, row: dict, features: np.ndarray, cens: np.ndarray | None = None) -> int:
        """Insert or replace a recording with its features (and its CENS rows, where the index
        keeps them) in one transaction; returns its id.

        ``row["error"]``, if given, is a warning kept with an indexed recording (a damaged file).

        The row starts with ``in_index = 0``: its vectors count only once the FAISS file is saved.
        """
        row = {"error": None, **row, "status": "indexed", "n_frames": len(features), "in_index": 0}
        data = encode_features(features, self.features_dtype)
        with self.db.atomic():
            rid = self._upsert(row)
            self.db["features"].upsert({"recording_id": rid, "data": data}, pk="recording_id")
            if cens is not None and self.settings.cens_frames:
                self.db["cens"].upsert({"recording_id": rid, "data": encode_features(cens, "uint8")},
                                       pk="recording_id")
            else:
                self._delete_cens(rid)
        return rid

    def _delete_cens(self, recording_id: int) -> None:
        if self.settings.cens_frames:
            self.db.execute("DELETE FROM cens WHERE recording_id = ?", [recording_id])

    def put_failed(self, row: dict, error: str) -> int:
        """Record a file that could not be indexed (its old features and vectors are dropped)."""
        row = {**row, "status": "failed", "error": error, "n_frames": 0, "in_index": 0}
        with self.db.atomic():
            rid = self._upsert(row)
            self.db.execute("DELETE FROM features WHERE recording_id = ?", [rid])
            self._delete_cens(rid)
            self.db["pending_removals"].upsert({"recording_id": rid}, pk="recording_id")
        return rid

    def touch(self, recording_id: int, mtime: float) -> None:
        """A file whose content is unchanged got a new mtime."""
        with self.db.atomic():
            self.db["recordings"].update(recording_id, {"mtime": mtime})

    def delete(self, recording_ids: list[int]) -> None:
        """Delete recordings; their vectors leave the FAISS file at the next :meth:`save_vectors`."""
        with self.db.atomic():
            for rid in recording_ids:
                self.db.execute("DELETE FROM recordings WHERE id = ?", [rid])
                self.db.execute("DELETE FROM features WHERE recording_id = ?", [rid])
                self._delete_cens(rid)
                self.db["pending_removals"].upsert({"recording_id": rid}, pk="recording_id")

    def _upsert(self, row: dict) -> int:
        row = {**row, "indexed_at": time.time()}
        existing = self.db.execute("SELECT id FROM recordings WHERE path = ?", [row["path"]]).fetchone()
        if existing:
            self.db["recordings"].update(existing[0], row)
            return existing[0]
        return self.db["recordings"].insert(row).last_pk

    # -- vectors ---------------------------------------------------------------------------

    def vectors(self) -> VectorIndex:
        """The vector index, loaded from the FAISS file (or new and empty)."""
        if self._vectors is None:
            factory = self.factory
            if factory and self.faiss_path.is_file():
                problem = self.vector_file_problem()
                if problem:
                    raise StoreError(problem)
                try:
                    self._vectors = VectorIndex.load(self.faiss_path, factory, mmap=self.readonly)
                except VectorFileError as error:
                    raise StoreError(f"{error}; {REPAIR_HINT}") from None
                if self._vectors.dim != self.settings.dim:
                    raise StoreError(
                        f"{self.faiss_path}: vectors of dimension {self._vectors.dim}, settings say "
                        f"{self.settings.dim}; rebuild the index (cli.py index --rebuild)"
                    )
            elif factory and self.readonly:
                raise StoreError(f"{self.faiss_path}: the vector file is missing: an index run is rebuilding "
                                 f"the index (try again when it has finished), or {REPAIR_HINT}")
            else:  # none saved yet (or lost): every recording's vectors must be (re-)added
                self._vectors = self._new_vectors(self._planned_factory())
                self._rebuild_all = True
        return self._vectors

    def vector_file_problem(self) -> str | None:
        """Why the FAISS file does not match the fingerprint saved with it (truncated, overwritten), or ``None``."""
        row = self.db.execute("SELECT value FROM settings WHERE key = 'faiss_fingerprint'").fetchone()
        if row is None or not self.faiss_path.is_file():
            return None
        if file_fingerprint(self.faiss_path) != row[0]:
            return (f"{self.faiss_path}: damaged vector file (its size, first and last MiB or {FINGERPRINT_BLOCKS} "
                    f"sampled blocks differ from the fingerprint saved with it); {REPAIR_HINT}")
        return None

    def discard_damaged_vectors(self) -> str | None:
        """Delete a FAISS file that is damaged (the next checkpoint rebuilds it from the stored
        features, as for a missing one); returns the problem, or ``None`` if it was sound."""
        problem = self.vector_file_problem()
        if problem is None and self.faiss_path.is_file() and self.factory:
            try:
                VectorIndex.load(self.faiss_path, self.factory)
            except VectorFileError as error:
                problem = str(error)
        if problem is not None:
            self.faiss_path.unlink()
            self._vectors = None
        return problem

    def _planned_factory(self) -> str:
        if self.settings.index_factory != "auto":
            return self.settings.index_factory
        return auto_factory(self._shingle_count(), self.settings.dim)

    def _shingles(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return shingles(features, self.settings.shingle_length, self.settings.shingle_hop)

    def _shingle_count(self) -> int:
        """About how many shingles the indexed recordings hold (their frames over the hop)."""
        n = self.db.execute("SELECT coalesce(sum(n_frames), 0) FROM recordings WHERE status = 'indexed'").fetchone()
        return int(n[0]) // self.settings.shingle_hop

    def untrainable(self, factory: str | None = None) -> str | None:
        """Why ``factory`` (default: the planned one) cannot be trained on this collection yet, or ``None``.

        Meanwhile the index searches exactly (``IDMap2,Flat``); a later run switches.
        """
        factory = factory or self._planned_factory()
        need, have = VectorIndex.min_training(factory, self.settings.dim), self._shingle_count()
        if need and have < need:
            return (f"FAISS index {factory!r} needs at least {need} shingles to train, the collection has {have}: "
                    f"searching exactly ({EXACT_FACTORY}) until it has")
        return None

    def _new_vectors(self, factory: str) -> VectorIndex:
        """An empty index of ``factory``, trained where it needs it on about
        :meth:`VectorIndex.training_size` shingles spread evenly over all recordings (an exact
        one while the collection is too small to train it, see :meth:`untrainable`)."""
        training = None
        max_training = VectorIndex.training_size(factory, self.settings.dim)
        if max_training and self.untrainable(factory):
            return VectorIndex.create(EXACT_FACTORY, self.settings.dim)
        if max_training:
            step = max(1, self._shingle_count() // max_training)
            # copies: a strided view would keep every recording's full shingle array alive
            parts = [self._shingles(feats)[1][::step].copy() for _, feats in self.iter_frames()]
            parts = [p for p in parts if len(p)]
            if not parts:  # nothing to train on yet: exact search until reorganise() switches
                return VectorIndex.create(EXACT_FACTORY, self.settings.dim)
            training = np.concatenate(parts)
        return VectorIndex.create(factory, self.settings.dim, training)

    def sync_vectors(self) -> int:
        """Bring the in-memory vector index up to date with the tables; returns recordings added.

        Adds the vectors of every indexed recording with ``in_index = 0`` (after removing any old
        ones) and removes those of pending removals. Call :meth:`save_vectors` to make it durable.
        """
        vectors = self.vectors()
        if self._rebuild_all:
            with self.db.atomic():
                self.db.execute("UPDATE recordings SET in_index = 0")
            self._rebuild_all = False
        pending = [r[0] for r in self.db.execute("SELECT recording_id FROM pending_removals")]
        todo = [r[0] for r in self.db.execute("SELECT id FROM recordings WHERE status = 'indexed' AND in_index = 0")]
        vectors.remove(pending + todo)  # one call: old vectors of a re-indexed recording go too
        for rid in todo:
            starts, vecs = self._shingles(self.frames(rid))
            vectors.add(rid, starts, vecs)
        self._unsaved = (pending, todo)
        return len(todo)

    def save_vectors(self) -> None:
        """Save the FAISS file atomically, then mark what it holds in the tables."""
        vectors = self.vectors()
        pending, todo = self._unsaved
        vectors.save(self.faiss_path, mode=self.path.stat().st_mode & 0o777)  # readable by the database's readers
        fingerprint = file_fingerprint(self.faiss_path)
        frames_name, frame_rows, dropped, superseded = self._write_frames(set(pending) | set(todo))
        with self.db.atomic():
            self.db["settings"].upsert({"key": "faiss_factory", "value": vectors.factory}, pk="key")
            self.db["settings"].upsert({"key": "faiss_fingerprint", "value": fingerprint}, pk="key")
            for rid in pending:
                self.db.execute("DELETE FROM pending_removals WHERE recording_id = ?", [rid])
            for rid in todo:
                self.db.execute("UPDATE recordings SET in_index = 1 WHERE id = ?", [rid])
            self.db.conn.executemany("DELETE FROM frame_offsets WHERE recording_id = ?", [[rid] for rid in dropped])
            self.db.conn.executemany("INSERT OR REPLACE INTO frame_offsets VALUES (?, ?, ?)", frame_rows)
            self.db["settings"].upsert({"key": "frames_file", "value": frames_name}, pk="key")
        if superseded is not None:
            superseded.unlink(missing_ok=True)
        self._unsaved = ([], [])

    # -- the frames file (exact similarities for the vote; see db.frames) --------------------

    def _frames_missing(self) -> bool:
        """Whether an indexed recording has no frames in the frames file yet (an older index)."""
        row = self.db.execute("SELECT count(*) FROM recordings r WHERE status = 'indexed' AND NOT EXISTS "
                              "(SELECT 1 FROM frame_offsets f WHERE f.recording_id = r.id)").fetchone()
        return row[0] > 0

    def _uint8_frames(self, recording_id: int) -> np.ndarray:
        row = self.db.execute("SELECT data FROM features WHERE recording_id = ?", [recording_id]).fetchone()
        if self.features_dtype == "uint8":
            return np.frombuffer(row[0], np.uint8).reshape(-1, 12)
        return np.frombuffer(encode_features(decode_features(row[0], "float32"), "uint8"), np.uint8).reshape(-1, 12)

    def _write_frames(self, changed: set[int]) -> tuple[str, list[tuple[int, int, int]], list[int], Path | None]:
        """Append the frames of every indexed recording that has none (or ``changed`` ones) to the
        frames file, before the transaction that records them: ``(file name, rows to insert,
        recordings whose rows go, a superseded file to delete after it)``. All frames go to a new
        file instead when more than half of the file belongs to recordings no longer there, or
        when the file no longer holds what the rows say (lost or cut short: an index copied
        without it), whose offsets new frames must not be appended over."""
        recorded = self.db.execute("SELECT recording_id, offset, n_frames FROM frame_offsets").fetchall()
        have = {rid: n for rid, _, n in recorded}
        indexed = [rid for (rid,) in self.db.execute("SELECT id FROM recordings WHERE status = 'indexed'")]
        name = self._setting("frames_file") or f"{self.path.name}.frames-1"
        current = self._frames_path(name)
        live = sum(n for rid, n in have.items() if rid not in changed and rid in set(indexed))
        in_file = current.stat().st_size // 12 if current.is_file() else 0
        lost = in_file < max((offset + n for _, offset, n in recorded), default=0)
        superseded = None
        if lost or (in_file and (live == 0 or in_file > 2 * live + 2**20)):  # a new generation, live frames only
            superseded = current if current.is_file() else None
            name = f"{self.path.name}.frames-{int(name.rsplit('-', 1)[1]) + 1}"
            current = self._frames_path(name)
            current.unlink(missing_ok=True)
            dropped, have = list(have), {}
        else:
            dropped = [rid for rid in have if rid in changed or rid not in set(indexed)]
        todo = [rid for rid in indexed if rid in changed or rid not in have]
        arrays = [self._uint8_frames(rid) for rid in todo]
        offsets = append_frames(current, arrays, self.path.stat().st_mode & 0o777) if todo else []
        rows = [(rid, offset, len(a)) for rid, offset, a in zip(todo, offsets, arrays, strict=True)]
        return name, rows, dropped, superseded

    def _frames_bytes(self) -> int:
        name = self._setting("frames_file")
        file = self._frames_path(name) if name else None
        return file.stat().st_size if file is not None and file.is_file() else 0

    def _frames_path(self, name: str) -> Path:
        """The frames file of generation ``name`` (the ``frames_file`` setting, ``"….frames-N"``) beside
        this database, under the database's own name: an index copied or moved to another name with
        its files reads its own frames, never those of the index it was copied from."""
        return self.path.with_name(f"{self.path.name}.frames-{name.rsplit('-', 1)[1]}")

    def stored_frames(self) -> StoredFrames | None:
        """Every indexed recording's ``uint8`` frames, memory-mapped (``None`` for an index whose
        frames file is missing or older than its tables: search then votes with FAISS's scores)."""
        if self._frames is None:
            self._frames = self._map_frames() or False
        return self._frames or None

    def _map_frames(self) -> StoredFrames | None:
        own = not self.db.conn.in_transaction
        try:
            if own:
                self.db.execute("BEGIN")  # the file name and its offsets from one snapshot
            try:
                name = self._setting("frames_file")
                rows = np.array(self.db.execute("SELECT recording_id, offset, n_frames FROM frame_offsets").fetchall(),
                                dtype=np.int64).reshape(-1, 3)
            finally:
                if own:
                    self.db.execute("COMMIT")
            frames = map_frames(self._frames_path(name)) if name else None
        except (sqlite3.OperationalError, OSError):  # no such table (an older index), or no file
            return None
        if frames is None or not len(rows) or (rows[:, 1] + rows[:, 2]).max() > len(frames):
            return None
        offsets, lengths = np.zeros(rows[:, 0].max() + 1, np.int64), np.zeros(rows[:, 0].max() + 1, np.int64)
        offsets[rows[:, 0]], lengths[rows[:, 0]] = rows[:, 1], rows[:, 2]
        return StoredFrames(frames, offsets, lengths)

    def checkpoint(self) -> None:
        """Make every change so far durable and searchable (nothing is written when nothing changed)."""
        self.sync_vectors()
        if any(self._unsaved) or not self.faiss_path.is_file() or self._frames_missing():
            self.save_vectors()

    def reorganise(self) -> bool:
        """With ``index_factory = "auto"``, switch to the factory the collection size calls for.

        Rebuilds the vector index from the stored features (no audio is decoded again) when the
        collection crossed a threshold of :func:`db.vectors.auto_factory`, or when :meth:`coarsen`
        turned its features coarse; returns whether it did.
        """
        if self.coarsen():
            return True
        planned = self._planned_factory()
        if planned == self.vectors().factory or (self.vectors().factory == EXACT_FACTORY and self.untrainable(planned)):
            return False
        self.rebuild_vectors(planned)
        return True

    def rebuild_vectors(self, factory: str) -> None:
        """Replace the vector index by a new one of FAISS ``factory`` built from the stored features
        (trained on a sample of them where the factory needs it), and save it."""
        self._vectors = self._new_vectors(factory)
        with self.db.atomic():
            self.db.execute("UPDATE recordings SET in_index = 0")
        self.checkpoint()

    def coarsen(self) -> bool:
        """Turn an index made with ``coarse_at_scale`` to :data:`~models.retrieval_features.COARSE_RATES`
        features once it holds more than :data:`db.vectors.IVF_FLAT_LIMIT` shingles; returns whether it did.

        Small collections gain from 25 Hz frames; large ones would pay twice the bytes and time per
        hit for nothing (docs/experiments.md). Each recording's stored frames ``(T, 12)`` become
        :func:`~models.retrieval_features.coarsened` ones ``(ceil(T / 2), 12)`` (no audio decoded),
        its CENS rows every second one,
        in one transaction with the ``coarsened`` setting; the FAISS file goes first, so readers
        meanwhile hear that the index is being rebuilt and a crash leaves either index whole, its
        vectors rebuilt by the next checkpoint; then the database file is shrunk (the halved frames
        free half its pages). Later recordings are extracted at the coarse rates.
        """
        if (not self.declared.coarse_at_scale or self._setting("coarsened")
                or self._shingle_count() <= IVF_FLAT_LIMIT):
            return False
        self._vectors = None
        self.faiss_path.unlink(missing_ok=True)
        with self.db.atomic():
            for (rid,) in self.db.execute("SELECT recording_id FROM features").fetchall():
                features = coarsened(self.frames(rid))
                self.db.execute("UPDATE features SET data = ? WHERE recording_id = ?",
                                [encode_features(features, self.features_dtype), rid])
                self.db.execute("UPDATE recordings SET n_frames = ? WHERE id = ?", [len(features), rid])
            if self.settings.cens_frames:  # every second row: what coarse settings extract (cens_rows)
                for rid, data in self.db.execute("SELECT recording_id, data FROM cens").fetchall():
                    self.db.execute("UPDATE cens SET data = ? WHERE recording_id = ?",
                                    [encode_features(decode_features(data, "uint8")[::2], "uint8"), rid])
            self.db.execute("DELETE FROM frame_offsets")
            self.db["settings"].upsert({"key": "coarsened", "value": "1"}, pk="key")
            self.db.execute("UPDATE recordings SET in_index = 0")
        self.settings, self._frames = self.declared.at_scale(), None
        self.rebuild_vectors(self._planned_factory())
        self._shrink()
        return True

    def compact(self) -> bool:
        """Convert float32 features to ``uint8`` and rebuild the vectors from them; returns whether it did.

        One transaction rewrites every features row and the ``features_dtype`` setting and marks
        all vectors for re-adding (a crash leaves either the old index or the converted tables
        whose vectors the next checkpoint rebuilds); then the FAISS file is rebuilt and the
        database file shrunk (``VACUUM``).
        """
        if self.features_dtype == "uint8":
            return False
        with self.db.atomic():
            for (rid,) in self.db.execute("SELECT recording_id FROM features").fetchall():
                data = encode_features(self.frames(rid), "uint8")
                self.db.execute("UPDATE features SET data = ? WHERE recording_id = ?", [data, rid])
            self.db["settings"].upsert({"key": "features_dtype", "value": "uint8"}, pk="key")
            self.db.execute("UPDATE recordings SET in_index = 0")
        self.features_dtype = "uint8"
        self.rebuild_vectors(self._planned_factory())
        self._shrink()
        return True

    def _shrink(self) -> None:
        """Give the pages a rewrite of every frame freed back to the file system (``VACUUM``): the
        file would otherwise keep its largest size, here up to twice what the index holds."""
        self.db.execute("VACUUM")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- summary ---------------------------------------------------------------------------

    def stats(self) -> dict:
        """Counts for ``cli.py status``."""
        q = self.db.execute(
            "SELECT count(*), coalesce(sum(duration), 0), coalesce(sum(in_index = 0), 0) "
            "FROM recordings WHERE status = 'indexed'"
        ).fetchone()
        failed = [{"path": r.path, "error": r.error} for r in self.recordings("failed")]
        warnings = [{"path": r.path, "warning": r.error} for r in self.recordings("indexed") if r.error]
        return {
            "db": str(self.path),
            "recordings": q[0],
            "hours": q[1] / 3600,
            "not_yet_searchable": q[2],
            "shingles": len(self.vectors()) if self.faiss_path.is_file() else 0,
            "index_factory": self.factory or "(none yet)",
            "faiss_bytes": self.faiss_path.stat().st_size if self.faiss_path.is_file() else 0,
            "frames_bytes": self._frames_bytes(),
            "db_bytes": self.path.stat().st_size,
            "bytes_per_audio_hour": ((self.path.stat().st_size + self._frames_bytes() + (self.faiss_path.stat().st_size
                                      if self.faiss_path.is_file() else 0)) / (q[1] / 3600)) if q[1] else None,
            "features_dtype": self.features_dtype,
            "settings": asdict(self.settings),
            "coarsened": self.settings != self.declared,
            "failed": failed,
            "warnings": warnings,
        }
