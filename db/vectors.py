"""The FAISS index over shingle vectors; ids encode (recording, first frame).

A vector id is ``recording_id * 2**FRAME_BITS + start_frame``, so a hit maps back to its
recording and time without a lookup table, and all vectors of a recording form one id range
that :meth:`VectorIndex.remove` drops without a rebuild. Vectors are L2-normalised and the
metric is the inner product: scores are cosine similarities.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import faiss
import numpy as np

from models.errors import ParameterError, RetrievalError
from models.files import atomic_write

__all__ = [
    "EXACT_FACTORY", "FINGERPRINT_BLOCKS", "FLAT_LIMIT", "FRAME_BITS", "IVF_FLAT_LIMIT", "NPROBE", "PQ_CODE",
    "VectorFileError", "VectorIndex", "auto_factory", "file_fingerprint", "nprobe_for",
]

EXACT_FACTORY = "IDMap2,Flat"
"""The exact index: small collections, and any collection too small to train the factory asked for."""

FRAME_BITS = 32
"""Bits of a vector id for the frame: recordings of up to 2**32 frames."""

FLAT_LIMIT = 50_000
"""Up to this many vectors (≈ 2.2 h of audio with the default settings, 22,500 shingles per hour)
search is exact; beyond, an exhaustive scan per query shingle costs more than the re-ranking."""

IVF_FLAT_LIMIT = 500_000
"""Up to this many vectors (≈ 22 h) an inverted file of full vectors (exact distances, 768 bytes a
shingle); beyond it compact codes (:data:`PQ_CODE`), as scanning full vectors gets too slow for
the latency targets and they take ~17 MB per audio hour (docs/scaling.md, factory sweep)."""

PQ_CODE = "PQ16x4fs"
"""The codes of large collections: 16 sub-quantisers of 4 bits, searched with FAISS's SIMD "fast
scan" (8 bytes a shingle + its 8-byte id: ~0.4 MB per audio hour). Chosen by the sweep in
docs/scaling.md: at 100 h, 32 or 48 sub-quantisers gained 0.025–0.05 MRR (within the noise of
40 themes) at 1.14–1.32 MB per audio hour with the features, beyond 1 GB per 1000 h."""

CODE_DIM = 64
"""Dimensions the compact codes of large collections encode: shingles of more are first projected
on their ``CODE_DIM`` principal directions and re-normalised (FAISS's ``PCA64,L2norm``
pre-transform, trained with the lists), so that each of the 16 sub-quantisers codes 4 of them
instead of 12 — the same 8 bytes a shingle. At 1046 h the right recording was among the candidates
for 0.80 of 40 themes (0.725 with another training sample) against 0.675 with codes of the 192
dimensions, MRR 0.648 against 0.620, no slower; at 107 h 0.80 against 0.72 (120 themes: 0.692
either way, MRR 0.611 against 0.602; docs/scaling.md, "Codes of the principal directions"). The
exact re-scoring of the hits still uses the stored frames."""

MAX_LISTS = 8192
"""At most this many inverted lists (reached at ≈ 8.4 M shingles, 370 h): more would need a k-means
training set too large to cluster in minutes on two cores (FAISS wants 39 points per list)."""

NPROBE = 64
"""Inverted lists visited per query shingle in an index of up to 4096 lists (64 kept the exact
scan's MRR on the hauptstimme benchmark, 16 lost 0.06; docs/benchmarks.md); more in larger ones
(:func:`nprobe_for`)."""


def nprobe_for(n_lists: int) -> int:
    """Inverted lists visited per query shingle in an IVF index of ``n_lists``: :data:`NPROBE`, or a
    64th of the lists where that is more — 128 of the 8192 lists of collections beyond ≈ 370 h,
    where 64 found the right recording among the candidates for 0.70 of 40 themes at 1046 h and
    128 for 0.72 (MRR 0.628 → 0.657) for ~4 ms; 256 gained nothing more (docs/scaling.md)."""
    return max(NPROBE, n_lists // 64)


def auto_factory(n_vectors: int, dim: int) -> str:
    """The FAISS ``index_factory`` string for a collection of ``n_vectors`` shingles.

    Flat (exact) for small collections; an inverted file of full vectors with about
    ``4·sqrt(n)`` lists for medium ones; beyond :data:`IVF_FLAT_LIMIT`, about ``2·sqrt(n)`` lists
    (fewer, longer lists: at 100 h 4096 found the right recording more often than 8192, MRR 0.30
    against 0.23 on 40 themes) found by an HNSW graph over their centroids (a flat scan of
    thousands of centroids per query shingle would cost more than the rest), holding
    :data:`PQ_CODE` codes of the shingles' :data:`CODE_DIM` principal directions.
    """
    if n_vectors <= FLAT_LIMIT:
        return EXACT_FACTORY
    if n_vectors <= IVF_FLAT_LIMIT:
        return f"IVF{2 ** round(math.log2(4 * math.sqrt(n_vectors)))},Flat"
    n_lists = min(MAX_LISTS, 2 ** round(math.log2(2 * math.sqrt(n_vectors))))
    projection = f"PCA{CODE_DIM},L2norm," if dim > CODE_DIM else ""
    return f"{projection}IVF{n_lists}_HNSW32,{PQ_CODE}"


class VectorFileError(RetrievalError, RuntimeError):
    """A FAISS file that cannot be read or does not match the fingerprint saved with it."""


FINGERPRINT_BLOCKS = 64
"""Blocks of 64 KiB (plus the first and last MiB) read to fingerprint a FAISS file: a few MB at
most whatever its size, so opening an index of thousands of hours stays fast."""


def file_fingerprint(path: str | Path) -> str:
    """``"<size>:<blake2b>"`` of a file's size, first and last MiB and :data:`FINGERPRINT_BLOCKS`
    evenly spread 64 KiB blocks: catches truncation, overwrites and most partial damage."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        offsets = [0, max(0, size - (1 << 20))] + [size * i // FINGERPRINT_BLOCKS for i in range(FINGERPRINT_BLOCKS)]
        for offset in offsets:
            f.seek(offset)
            digest.update(f.read(1 << 20 if offset in offsets[:2] else 1 << 16))
    return f"{size}:{digest.hexdigest()}"


class VectorIndex:
    """A FAISS index with (recording, frame) ids, saved atomically to one file."""

    def __init__(self, index: faiss.Index, factory: str) -> None:
        self.index = index
        self.factory = factory

    @classmethod
    def create(cls, factory: str, dim: int, training: np.ndarray | None = None) -> VectorIndex:
        """A new empty index from a FAISS factory string, trained on ``training`` if it needs it."""
        try:
            index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as error:
            raise ParameterError(f"invalid FAISS index factory string {factory!r}: {error}") from None
        if not index.is_trained:
            if training is None or len(training) < 1:
                raise ParameterError(f"FAISS index {factory!r} needs training vectors")
            index.train(np.ascontiguousarray(training, dtype=np.float32))
        if isinstance(index, faiss.IndexFlat):
            index = faiss.IndexIDMap2(index)
        return cls(index, factory)

    @staticmethod
    def check_factory(factory: str, dim: int) -> None:
        """:class:`ParameterError` (one line) unless FAISS can build ``factory`` for ``dim``-d vectors."""
        try:
            faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[-1].split(": ")[-1][:120] if str(error).strip() else ""
            raise ParameterError(f"invalid FAISS index factory string {factory!r} ({reason}); "
                                 "see FAISS's index_factory, or use auto") from None

    @staticmethod
    def min_training(factory: str, dim: int) -> int:
        """Fewest training vectors FAISS accepts for ``factory``: one per inverted list or per
        code word, whichever is more; 0 for an index that needs no training."""
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        if index.is_trained:
            return 0
        ivf = faiss.try_extract_index_ivf(index)
        pq = getattr(faiss.downcast_index(ivf if ivf is not None else index), "pq", None)
        return max(ivf.nlist if ivf is not None else 1, pq.ksub if pq is not None else 1)

    @staticmethod
    def training_size(factory: str, dim: int) -> int:
        """Training vectors an index of this factory string needs: 0 if none, else 40 per inverted
        list (FAISS warns below 39), at least 100,000 (for the codes), at most 500,000."""
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        if index.is_trained:
            return 0
        ivf = faiss.try_extract_index_ivf(index)
        return min(500_000, max(100_000, 40 * (ivf.nlist if ivf is not None else 0)))

    @classmethod
    def load(cls, path: str | Path, factory: str, mmap: bool = False) -> VectorIndex:
        """Read a FAISS file; :class:`VectorFileError` (one line, naming it) if FAISS cannot.

        ``mmap``: map the file instead of reading it (for searching only): opening costs no
        memory, a search pages in only the inverted lists it visits, and the kernel may drop
        them again, so an index larger than the memory of the process or the machine answers.
        """
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            return cls(faiss.read_index(str(path), flags), factory)
        except Exception as error:  # FAISS raises RuntimeError with a C++ message of many lines
            reason = str(error).strip().splitlines()[-1][:160] if str(error).strip() else type(error).__name__
            raise VectorFileError(f"{path}: damaged vector file ({reason})") from None

    def save(self, path: str | Path, mode: int | None = None) -> None:
        """Write atomically (readers never see half a file), with file mode ``mode`` if given."""
        atomic_write(path, lambda tmp: faiss.write_index(self.index, tmp), mode)

    @property
    def lossy(self) -> bool:
        """Whether the index scores with compressed codes (product or scalar quantisation), not the vectors."""
        return any(code in self.factory for code in ("PQ", "SQ", "RQ", "LSH", "LSQ"))

    @property
    def dim(self) -> int:
        return self.index.d

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, recording_id: int, starts: np.ndarray, vectors: np.ndarray) -> None:
        """Add a recording's shingles (first frames ``starts``)."""
        ids = (np.int64(recording_id) << FRAME_BITS) + starts.astype(np.int64)
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def remove(self, recording_ids: list[int]) -> int:
        """Drop every vector of the given recordings; returns how many were removed.

        On a flat index (``IDMap2,Flat``) all of them go in one pass, and only if any is there:
        FAISS moves every vector behind a removed one, so one removal per recording made adding
        R recordings cost R passes over the index — 14 ms per file at 11 h of audio, growing
        with the index (docs/scaling.md, measured on an H100). An inverted file removes by id
        range, list by list, moving nothing.
        """
        if not len(recording_ids) or not len(self):
            return 0
        if isinstance(self.index, faiss.IndexIDMap2):
            ids = faiss.vector_to_array(self.index.id_map)
            doomed = ids[np.isin(ids >> FRAME_BITS, np.asarray(recording_ids, dtype=np.int64))]
            return int(self.index.remove_ids(faiss.IDSelectorBatch(doomed))) if len(doomed) else 0
        removed = 0
        for rid in recording_ids:
            lo = int(rid) << FRAME_BITS
            removed += self.index.remove_ids(faiss.IDSelectorRange(lo, lo + (1 << FRAME_BITS)))
        return removed

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
        """The ``k`` nearest shingles of each query: ``(similarities, recording_ids, start_frames)``.

        ``nprobe``: inverted lists visited by an IVF index (default :func:`nprobe_for` its lists).
        """
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None:
            ivf.nprobe = nprobe_for(ivf.nlist) if nprobe is None else nprobe
        k = min(k, max(len(self), 1))
        sims, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        valid = ids >= 0
        return np.where(valid, sims, -np.inf), np.where(valid, ids >> FRAME_BITS, -1), ids & ((1 << FRAME_BITS) - 1)
