"""A manifest's parts (``<name>.parts/``): the one part writer, the one naming scheme, the one order.

Readers merge the base and the parts in ``part_order``, the newest row per key winning, so the
order of part names *is* the order of writes. One scheme names every part:

* a new part: ``part-<UTC time to the nanosecond>Z-<writer>.parquet``
  (``part-20260501T101112.123456789Z-3f2a9c1e.parquet``). The time is strictly increasing within
  a process, and never earlier than the newest part already there: a part sorts after every part
  that existed when it was written, whatever the clocks of the machines writing.
* a merged part (compaction): ``<newest input's name>@<generation>``, which sorts right after its
  newest input and before any part that sorted after it, so merging keeps newest-wins.

Names of earlier versions (``part-<local time to the second>-<writer>-<seq>``) sort among these by
the same string order: their second is the same prefix, and within one second an old name sorts
before a new one (``-`` before ``.``), so part files left on disk by an older run are read in order.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from commercial98k.manifest.files import ManifestError, fsync_dir, write_table
from commercial98k.manifest.schema import rows_to_table

#: the time in a part name: the second (both schemes), then the nanoseconds (current scheme)
_STAMP = re.compile(r"part-(\d{8}T\d{6})(?:\.(\d{9})Z)?")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
#: the writer tag of this process, when a caller names none
_PROCESS_TAG = uuid.uuid4().hex[:8]
_clock_lock = threading.Lock()
_last_ns = 0


def parts_dir(path: str | os.PathLike) -> Path:
    """``<name>.parts/`` beside the manifest file."""
    path = Path(path)
    return path.with_name(path.stem + ".parts")


def part_order(part: Path) -> tuple[str, int]:
    """Sort key of a part: its name without a merge generation, then the generation."""
    stem = part.name.removesuffix(".parquet")
    base, _, gen = stem.partition("@")
    return base, int(gen) if gen.isdigit() else 0


def list_parts(path: str | os.PathLike) -> list[Path]:
    """The manifest's parts, oldest first (``part_order``)."""
    pdir = parts_dir(path)
    return sorted(pdir.glob("part-*.parquet"), key=part_order) if pdir.is_dir() else []


def has_parts(path: str | os.PathLike) -> bool:
    """Whether the manifest has any part (cheaper than ``list_parts``: stops at the first)."""
    pdir = parts_dir(path)
    return pdir.is_dir() and any(pdir.glob("part-*.parquet"))


def stamp_ns(part: Path) -> int | None:
    """The write time a part's name records, in ns since the epoch (the second, for an older
    name); None for a name that records none."""
    m = _STAMP.match(part.name)
    if m is None:
        return None
    second = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    return int(second.timestamp()) * 1_000_000_000 + int(m.group(2) or 0)


def _format_stamp(ns: int) -> str:
    second = datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{second}.{ns % 1_000_000_000:09d}Z"


def new_part_name(path: str | os.PathLike, writer: str | None = None) -> str:
    """The name (no suffix) of a new part of ``path``: it sorts after every part there now."""
    global _last_ns
    parts = list_parts(path)
    newest = parts[-1] if parts else None
    floor = 0
    if newest is not None:
        recorded = stamp_ns(newest)
        if recorded is None:  # a name without a time (written by hand): sort right after it
            return merged_name(newest)
        floor = recorded + 1
    with _clock_lock:
        ns = max(time.time_ns(), _last_ns + 1, floor)
        _last_ns = ns
    tag = _UNSAFE.sub("_", writer)[:80] if writer else _PROCESS_TAG
    return f"part-{_format_stamp(ns)}-{tag}"


def merged_name(newest: Path) -> str:
    """The name (no suffix) that sorts right after part ``newest`` and before any part after it."""
    base, gen = part_order(newest)
    return f"{base}@{gen + 1}"


def write_part(path: str | os.PathLike, kind: str, rows: list[dict] | pa.Table, writer: str | None = None,
               after: Path | None = None) -> Path | None:
    """Write ``rows`` (dicts, or a table of the kind's schema) as one part of ``path``: atomic, fsync'd.

    Named by ``new_part_name`` (sorts after every existing part; ``writer`` tags it), or with
    ``after`` by ``merged_name(after)`` (a merge's output), in which case an existing part of that
    name is never overwritten: nothing is written and None is returned. Empty ``rows``: None.
    """
    table = rows_to_table(rows, kind) if isinstance(rows, list) else rows
    if not table.num_rows:
        return None
    name = merged_name(after) if after is not None else new_part_name(path, writer)
    part = parts_dir(path) / f"{name}.parquet"
    if after is not None and part.exists():
        return None
    return write_table(table, part)


def drop_parts(path: str | os.PathLike, parts: Iterable[Path]) -> None:
    """Delete ``parts`` (already folded elsewhere), oldest first, and the parts folder once it is empty."""
    for p in parts:
        p.unlink(missing_ok=True)
    fsync_dir(parts_dir(path))
    with contextlib.suppress(OSError):
        parts_dir(path).rmdir()


def part_rows(part: Path) -> int:
    """Rows in a part (from its Parquet footer; a part never changes once written, so footers are cached)."""
    try:
        st = part.stat()
        return _footer_rows(str(part), st.st_mtime_ns, st.st_size)
    except Exception as e:  # a corrupt part: one line naming it
        raise ManifestError(f"{part}: not a readable Parquet file ({e})") from e


@functools.lru_cache(maxsize=4096)
def _footer_rows(path: str, mtime_ns: int, size: int) -> int:
    return pq.read_metadata(path).num_rows
