"""Read TensorFlow 1.x checkpoints (tensor bundles) in pure Python, without TensorFlow.

A checkpoint ``<prefix>`` is two files:

* ``<prefix>.index``: an SSTable (LevelDB table format). Its footer points at the index
  block, whose entries point at data blocks; each block holds prefix-compressed keys with
  restart points and may be snappy-compressed. Keys are variable names, values are
  ``BundleEntryProto`` messages (dtype, shape, shard, offset, size, crc32c); the empty key
  holds the ``BundleHeaderProto``.
* ``<prefix>.data-00000-of-0000N``: the raw little-endian tensor bytes.

``read_checkpoint(prefix)`` returns ``{name: np.ndarray}`` and verifies each tensor's masked
crc32c. CRC-32C comes from the ``crc32c`` package and snappy from ``cramjam``; only the
tensor-bundle and SSTable layout is parsed here, since no PyPI package reads it without TensorFlow.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import cramjam
import crc32c as _crc32c
import numpy as np

from commercial98k.errors import C98kError

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48
_BLOCK_TRAILER_LEN = 5  # 1 byte compression type + 4 bytes masked crc32c

# tensorflow/core/framework/types.proto -> numpy (little-endian)
_DTYPES: dict[int, str] = {
    1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?",
    14: "<u2",  # DT_BFLOAT16: kept as raw uint16 bits
    17: "<u2", 19: "<f2", 22: "<u4", 23: "<u8",
}


class CheckpointError(C98kError, RuntimeError):
    """The checkpoint files are missing, truncated or not a TF tensor bundle."""


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lives in the data file(s)."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None


# ---------------------------------------------------------------- protobuf wire format
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Decode one protobuf message into ``(field_number, wire_type, value)`` triples."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        out.append((field, wire, value))
    return out


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for field, _, value in _fields(buf):
        if field == 2:  # repeated Dim {int64 size = 1; string name = 2}
            size = next((v for f, _, v in _fields(value) if f == 1), 0)  # type: ignore[arg-type]
            dims.append(int(size) - (1 << 64) if int(size) >= 1 << 63 else int(size))
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> BundleEntry:
    values = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0, "crc32c": None}
    for field, _, value in _fields(buf):
        if field == 1:
            values["dtype"] = value
        elif field == 2:
            values["shape"] = _parse_shape(value)  # type: ignore[arg-type]
        elif field == 3:
            values["shard_id"] = value
        elif field == 4:
            values["offset"] = value
        elif field == 5:
            values["size"] = value
        elif field == 6:
            values["crc32c"] = value
        elif field == 7:
            raise CheckpointError(f"{name}: partitioned (sliced) variables are not supported")
    return BundleEntry(name=name, **values)  # type: ignore[arg-type]


# ---------------------------------------------------------------- snappy (raw format)
def snappy_decompress(data: bytes) -> bytes:
    """Decompress a raw snappy block (the format LevelDB tables use), with ``cramjam``."""
    try:
        return bytes(cramjam.snappy.decompress_raw(data))
    except Exception as e:  # cramjam raises its own DecompressionError
        raise CheckpointError(f"corrupt snappy block ({e})") from None


# ---------------------------------------------------------------- SSTable
def _read_block(table: bytes, offset: int, size: int) -> bytes:
    end = offset + size
    if end + _BLOCK_TRAILER_LEN > len(table):
        raise CheckpointError("index block runs past the end of the file")
    kind = table[end]
    block = table[offset:end]
    if masked_crc32c(table[offset:end + 1]) != struct.unpack_from("<I", table, end + 1)[0]:
        raise CheckpointError(f"index block at byte {offset}: crc32c mismatch (corrupt .index file)")
    if kind == 0:
        return block
    if kind == 1:
        return snappy_decompress(block)
    raise CheckpointError(f"unknown block compression type {kind}")


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of one table block (prefix-compressed keys, restart array at the end)."""
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * num_restarts
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos:pos + value_len]))
        pos += value_len
    return entries


def _block_handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def read_index(index_path: str | Path) -> tuple[dict[str, BundleEntry], dict[str, int]]:
    """Parse a ``.index`` file into ``({name: BundleEntry}, header_fields)``."""
    table = Path(index_path).read_bytes()
    if len(table) < _FOOTER_LEN:
        raise CheckpointError(f"{index_path}: too short to be a checkpoint index")
    footer = table[-_FOOTER_LEN:]
    if struct.unpack("<Q", footer[-8:])[0] != _TABLE_MAGIC:
        raise CheckpointError(f"{index_path}: bad table magic (not a TF checkpoint index)")
    _, _, pos = _block_handle(footer)  # metaindex handle (unused by tensor bundles)
    index_off, index_size, _ = _block_handle(footer, pos)
    entries: dict[str, BundleEntry] = {}
    header: dict[str, int] = {}
    for _, handle in _block_entries(_read_block(table, index_off, index_size)):
        off, size, _ = _block_handle(handle)
        for key, value in _block_entries(_read_block(table, off, size)):
            if key == b"":
                names = {1: "num_shards", 2: "endianness", 3: "version"}
                header = {names.get(f, str(f)): v for f, _, v in _fields(value) if isinstance(v, int)}
                continue
            name = key.decode("utf-8")
            entries[name] = _parse_entry(name, value)
    if header.get("endianness", 0) != 0:
        raise CheckpointError(f"{index_path}: big-endian checkpoints are not supported")
    return entries, header


# ---------------------------------------------------------------- crc32c (Castagnoli)
def crc32c(data: bytes | np.ndarray) -> int:
    """CRC-32C (Castagnoli) of ``data``, computed by the ``crc32c`` package (SSE4.2/ARMv8 where present)."""
    buf = data if not isinstance(data, np.ndarray) else np.ascontiguousarray(data).view(np.uint8).ravel()
    return _crc32c.crc32c(memoryview(buf))


def masked_crc32c(data: bytes | np.ndarray) -> int:
    """TensorFlow's masked CRC-32C (``crc32c::Mask``)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------- public API
def read_checkpoint(prefix: str | Path, names: list[str] | None = None, verify: bool = True) -> dict[str, np.ndarray]:
    """Load the tensors of a TF1 checkpoint ``prefix`` (``prefix.index`` + ``prefix.data-*``).

    ``names`` restricts which variables are read; ``verify`` checks each tensor's crc32c.
    String tensors are skipped.
    """
    prefix = str(prefix)
    index = Path(prefix + ".index")
    if not index.is_file():
        raise CheckpointError(f"{index}: no such checkpoint index")
    entries, header = read_index(index)
    num_shards = int(header.get("num_shards", 1)) or 1
    wanted = entries if names is None else {n: entries[n] for n in names if n in entries}
    missing = sorted(set(names or []) - set(wanted))
    if missing:
        raise CheckpointError(f"{prefix}: variables not in checkpoint: {', '.join(missing[:5])}")
    shards: dict[int, np.memmap] = {}
    out: dict[str, np.ndarray] = {}
    for name, e in sorted(wanted.items()):
        if e.dtype not in _DTYPES:
            continue  # DT_STRING and exotic types are not model weights
        if e.shard_id not in shards:
            path = Path(f"{prefix}.data-{e.shard_id:05d}-of-{num_shards:05d}")
            if not path.is_file():
                raise CheckpointError(f"{path}: missing checkpoint data shard")
            shards[e.shard_id] = np.memmap(path, dtype=np.uint8, mode="r")
        data = shards[e.shard_id]
        if e.offset + e.size > data.size:
            raise CheckpointError(f"{name}: tensor runs past the end of its data shard")
        raw = np.array(data[e.offset:e.offset + e.size])
        if verify and e.crc32c is not None and masked_crc32c(raw) != e.crc32c:
            raise CheckpointError(f"{name}: crc32c mismatch (corrupt checkpoint data)")
        dtype = np.dtype(_DTYPES[e.dtype])
        out[name] = raw.view(dtype).reshape(e.shape).astype(dtype.newbyteorder("="))
    return out
