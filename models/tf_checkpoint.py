"""Read TensorFlow checkpoints (tensor-bundle format) with plain Python and numpy.

A TF2 checkpoint ``prefix`` is two files: ``prefix.index``, a LevelDB-style sorted string
table mapping each variable name to a ``BundleEntryProto`` (dtype, shape, shard, offset,
size), and ``prefix.data-00000-of-0000N``, the raw little-endian tensor bytes. Only the
subset of the format that Keras weight checkpoints use is supported: uncompressed blocks,
unpartitioned tensors; numeric tensors are loaded. Anything else raises ``CheckpointError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import RetrievalError

__all__ = ["CheckpointError", "TensorEntry", "read_checkpoint", "read_index"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER_SIZE = 5  # one compression-type byte and a 32-bit CRC

# tensorflow/core/framework/types.proto DataType -> numpy dtype
_DTYPES = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    4: np.dtype("u1"),
    5: np.dtype("<i2"),
    6: np.dtype("i1"),
    9: np.dtype("<i8"),
    10: np.dtype("?"),
    19: np.dtype("<f2"),
}


class CheckpointError(RetrievalError, ValueError):
    """The files are not a tensor-bundle checkpoint this reader understands."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in the data shards, as recorded in the ``.index`` table."""

    dtype_code: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Split a protobuf message into (field number, value) pairs (varint or bytes)."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        fields.append((number, value))
    return fields


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim (field 2) with size in field 1."""
    dims = []
    for number, value in _proto_fields(buf):
        if number == 2:
            size = dict(_proto_fields(value)).get(1, 0)
            dims.append(int(size))
        elif number == 3 and value:
            raise CheckpointError("tensor of unknown rank")
    return tuple(dims)


def _parse_entry(buf: bytes) -> TensorEntry:
    """BundleEntryProto: dtype=1, shape=2, shard_id=3, offset=4, size=5, slices=7."""
    fields = dict(_proto_fields(buf))
    if 7 in fields:
        raise CheckpointError("partitioned (sliced) tensors are not supported")
    return TensorEntry(
        dtype_code=int(fields.get(1, 0)),
        shape=_parse_shape(fields.get(2, b"")),
        shard_id=int(fields.get(3, 0)),
        offset=int(fields.get(4, 0)),
        size=int(fields.get(5, 0)),
    )


def _block_handle(buf: bytes, pos: int) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _read_block(table: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """Decode one table block into its (key, value) entries (prefix-compressed keys)."""
    if offset + size + _BLOCK_TRAILER_SIZE > len(table):
        raise CheckpointError("block lies outside the index file")
    if table[offset + size] != 0:
        raise CheckpointError("compressed index blocks are not supported")
    block = table[offset : offset + size]
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * n_restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def read_index(prefix: str | Path) -> dict[str, TensorEntry]:
    """Return every tensor entry of the checkpoint ``prefix`` by variable name."""
    path = Path(f"{prefix}.index")
    try:
        table = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint index ({exc.strerror})") from exc
    if len(table) < _FOOTER_SIZE:
        raise CheckpointError(f"{path}: too short to be a checkpoint index")
    footer = table[-_FOOTER_SIZE:]
    if struct.unpack("<Q", footer[-8:])[0] != _TABLE_MAGIC:
        raise CheckpointError(f"{path}: not a checkpoint index (bad table magic)")
    _, _, pos = _block_handle(footer, 0)  # meta-index block, unused
    index_offset, index_size, _ = _block_handle(footer, pos)
    entries: dict[str, TensorEntry] = {}
    for _, handle in _read_block(table, index_offset, index_size):
        offset, size, _ = _block_handle(handle, 0)
        for key, value in _read_block(table, offset, size):
            if key:  # the empty key holds the BundleHeaderProto
                entries[key.decode()] = _parse_entry(value)
    return entries


def read_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """Load the numeric tensors of the checkpoint ``prefix`` into numpy arrays, by name.

    String tensors (such as Keras's serialised object graph) carry no weights and are skipped.
    """
    prefix = Path(prefix)
    entries = read_index(prefix)
    shards = sorted(prefix.parent.glob(prefix.name + ".data-*-of-*"))
    if not shards:
        raise CheckpointError(f"{prefix}: no .data shard beside the index")
    data = [shard.read_bytes() for shard in shards]
    tensors = {}
    for name, entry in entries.items():
        if entry.dtype_code not in _DTYPES:
            continue
        dtype = _DTYPES[entry.dtype_code]
        count = int(np.prod(entry.shape, dtype=np.int64))
        if entry.size != count * dtype.itemsize:
            raise CheckpointError(f"{prefix}: {name}: size {entry.size} does not match shape")
        if entry.shard_id >= len(data) or entry.offset + entry.size > len(data[entry.shard_id]):
            raise CheckpointError(f"{prefix}: {name}: bytes lie outside the data shard")
        raw = data[entry.shard_id][entry.offset : entry.offset + entry.size]
        tensors[name] = np.frombuffer(raw, dtype=dtype).reshape(entry.shape).copy()
    return tensors
