"""Read WebDataset tar shards sample by sample, without webdataset's generic tar and decode chain.

``shard_samples`` turns a stream of shard URLs (local paths) into the samples WebDataset would
give: dicts with ``__key__``, ``__url__`` and one read-only ``memoryview`` of the bytes per
member extension (``"frames.npy"``, ``"json"``, ...). Members of one sample are consecutive in the tar and share
the name up to the first dot of the file name, as ``wds.TarWriter`` writes them.

Plain ustar headers (what ``c98k build-shards`` writes) are parsed here, with their checksum;
anything else (PAX or GNU long-name headers, base-256 sizes, a bad checksum) hands the rest of
the shard to :mod:`tarfile`, which reads every format and reports damage. ``npy`` decodes
``.npy`` bytes into a read-only view without copying.
"""

from __future__ import annotations

import io
import mmap
import os
import re
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

import numpy as np

from commercial98k.errors import C98kError

BLOCK = 512
_EMPTY_BLOCK = bytes(BLOCK)
# ustar header fields: name, size, checksum, type flag, magic, prefix (the rest is skipped)
_USTAR = struct.Struct("100s24x12s12x8sB100x5s83x155s12x")
_REGULAR = frozenset(b"07\0")  # type flags of regular files ('7': contiguous file)
_SPECIAL = frozenset(b"xgLK")  # PAX and GNU long-name headers: tarfile reads them
_META = re.compile(r"__[^/]*__($|/)")  # webdataset's skipped metadata members


class ShardError(C98kError, ValueError):
    """A shard that does not match ``index.json`` (truncated, changed, missing), cannot be read, or an unusable split."""


REBUILD = "rebuild it with `c98k build-shards`"


def _plain_members(buf: memoryview, f: BinaryIO, url: str) -> Iterator[tuple[str, memoryview]]:
    """(name, bytes view) of the regular files of the tar in ``buf`` (``f``: the same file, for tarfile)."""
    pos, end = 0, len(buf)
    while pos < end:
        if pos + BLOCK > end:
            raise ShardError(f"{url}: truncated tar header at byte {pos}; {REBUILD}")
        name, size_field, checksum_field, flag, magic, prefix = _USTAR.unpack_from(buf, pos)
        if not name[0] and buf[pos:pos + BLOCK] == _EMPTY_BLOCK:
            return  # end of archive
        try:
            size = int(size_field.strip(b" \0") or b"0", 8)
            checksum = int(checksum_field.strip(b" \0"), 8)
        except ValueError:
            size = checksum = -1
        # the ustar checksum is the header's byte sum with its own field counted as spaces;
        # adler32's low half is that sum + 1 modulo 65521, computed in C
        if (flag in _SPECIAL or size < 0 or magic != b"ustar" or zlib.adler32(buf[pos:pos + BLOCK]) & 0xFFFF
                != (1 + checksum + sum(checksum_field) - 8 * 32) % 65521):
            f.seek(pos)  # PAX or GNU headers, base-256 sizes, damage: tarfile reads (or rejects) the rest
            yield from _tarfile_members(f, url)
            return
        start = pos + BLOCK
        pos = start + (size + BLOCK - 1) // BLOCK * BLOCK
        if flag in _REGULAR:
            name = name.split(b"\0", 1)[0]
            if prefix[0]:
                name = prefix.split(b"\0", 1)[0] + b"/" + name
            if start + size > end:
                raise ShardError(f"{url}: truncated tar member {name.decode('utf-8', 'replace')!r}; {REBUILD}")
            yield name.decode("utf-8", "surrogateescape"), buf[start:start + size]
    if pos > end:
        raise ShardError(f"{url}: truncated tar (the last member's padding ends at byte {pos} of {end}); {REBUILD}")


def _tarfile_members(f: BinaryIO, url: str) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the regular files from ``f``'s position on, read by :mod:`tarfile`."""
    try:
        with tarfile.open(fileobj=f, mode="r|") as stream:
            for info in stream:
                if info.isreg():
                    yield info.name, memoryview(stream.extractfile(info).read())
                stream.members = []
    except tarfile.TarError as e:
        raise ShardError(f"{url}: not a readable tar shard ({e}); {REBUILD}") from e


def tar_samples(url: str) -> Iterator[dict[str, Any]]:
    """The samples of one tar shard, as ``webdataset`` groups them (see the module docstring).

    The shard is memory-mapped: member values are read-only ``memoryview`` slices of the page
    cache, valid while referenced (``c98k build-shards`` replaces shards by rename, never in place).
    """
    sample: dict[str, Any] | None = None
    with open(url, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise ShardError(f"{url}: empty shard file; {REBUILD}")
        buf = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        for name, data in _plain_members(buf, f, url):
            slash = name.rfind("/")
            dot = name.find(".", slash + 1)
            if dot <= slash + 1 or (name.startswith("__") and _META.match(name)):
                continue
            key, ext = name[:dot], name[dot + 1:].lower()
            if sample is None or sample["__key__"] != key:
                if sample is not None:
                    yield sample
                sample = {"__key__": key, "__url__": url}
            elif ext in sample:
                raise ShardError(f"{url}: member {name!r} appears twice in sample {key!r}; {REBUILD}")
            sample[ext] = data
    if sample is not None:
        yield sample


def shard_samples(urls: Iterable[str | dict], handler: Callable[[Exception], bool]) -> Iterator[dict[str, Any]]:
    """Samples of each shard in ``urls`` (paths, or ``{"url": path}`` dicts as wds shard lists give).

    An error in a shard goes to ``handler`` (webdataset's convention): True skips the rest of
    that shard, False stops; ``wds.reraise_exception`` raises it.
    """
    for item in urls:
        url = item["url"] if isinstance(item, dict) else item
        try:
            yield from tar_samples(url)
        except (OSError, ShardError) as e:
            if not handler(e if isinstance(e, ShardError) else ShardError(f"{url}: cannot read the shard ({e})")):
                break


_NPY_HEADER = re.compile(r"\{'descr': '([<>|][a-z][0-9]+)', 'fortran_order': False, 'shape': \(([0-9, ]*)\), *\}")
_NPY_LAYOUTS: dict[bytes, tuple[np.dtype, tuple[int, ...], int]] = {}  # header bytes -> dtype, shape, data offset


def npy(data: bytes | memoryview) -> np.ndarray:
    """Decode ``.npy`` bytes without copying: a read-only view over ``data``.

    The plain headers ``np.save`` writes are parsed once per distinct header (the few shapes a
    corpus has); anything else goes through ``np.load``.
    """
    if data[:6] == b"\x93NUMPY" and data[6] in (1, 2):
        start = 10 if data[6] == 1 else 12
        end = start + int.from_bytes(data[8:start], "little")
        header = bytes(data[:end])
        layout = _NPY_LAYOUTS.get(header)
        if layout is None:
            m = _NPY_HEADER.match(header[start:].decode("latin1"))
            if m:
                shape = tuple(int(x) for x in m.group(2).replace(" ", "").split(",") if x)
                layout = (np.dtype(m.group(1)), shape, end)
                if len(_NPY_LAYOUTS) > 4096:
                    _NPY_LAYOUTS.clear()
                _NPY_LAYOUTS[header] = layout
        if layout is not None:
            dtype, shape, offset = layout
            return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)
    return np.load(io.BytesIO(data), allow_pickle=False)
