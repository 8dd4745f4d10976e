"""Reading and writing Parquet manifests: a base file plus parts, compacted incrementally (LSM-like).

A manifest at ``manifests/c98k.parquet`` (the base) may have a sibling folder
``manifests/c98k.parts/`` holding parts that stages flush. Readers merge the base and the parts
in part order (``part_order``), the newest row per key winning, so a killed run loses at most
the rows it had not yet flushed. A part row whose ``status`` is ``TOMBSTONE`` deletes its key.

Compaction never rewrites the base per flush (``manifest_compact``): parts of similar size are
merged into one larger part (size-tiered); the base is rewritten only when the parts outweigh
it (amortised: each row is rewritten O(log n) times) or on ``compact(..., full=True)``. Every
step writes its output atomically before it deletes its inputs, and a merged part sorts right
after its newest input, so a crash between steps leaves duplicates that newest-wins resolves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from commercial98k.errors import C98kError
from commercial98k.manifest.schema import (
    KEYS,
    Problem,
    conform,
    guess_kind,
    rows_to_table,
    schema_for,
    validate_table,
)
from commercial98k.storage.files import atomic_path


class ManifestError(C98kError, ValueError):
    """A manifest that cannot be read or does not validate."""


#: ``status`` of a part row that deletes its key (dropped by readers and by a full compaction).
TOMBSTONE = "__deleted__"


def parts_dir(path: str | os.PathLike) -> Path:
    """``<name>.parts/`` beside the manifest file."""
    path = Path(path)
    return path.with_name(path.stem + ".parts")


def part_order(part: Path) -> tuple[str, int]:
    """Sort key of a part: its name without a merge generation, then the generation.

    Plain parts (``part-<time>-<writer>-<seq>.parquet``) sort by name, as always; a merged part
    ``part-<newest input>@<gen>.parquet`` sorts right after its newest input and before any part
    that sorted after it, so merging keeps newest-wins.
    """
    stem = part.name.removesuffix(".parquet")
    base, _, gen = stem.partition("@")
    return base, int(gen) if gen.isdigit() else 0


def list_parts(path: str | os.PathLike) -> list[Path]:
    """The manifest's parts, oldest first (``part_order``)."""
    pdir = parts_dir(path)
    return sorted(pdir.glob("part-*.parquet"), key=part_order) if pdir.is_dir() else []


def _read_file(path: Path) -> pa.Table:
    if not path.is_file():
        raise ManifestError(f"{path}: no such file")
    try:
        return pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise ManifestError(f"{path}: not a readable Parquet file ({e})") from e


def _check_kind(table: pa.Table, path: Path, kind: str) -> None:
    """Refuse a table of the other kind, or one without its key or ``status`` column."""
    found = guess_kind(table.schema)
    if found != kind:
        why = "it has clip columns" if found == "clips" else "it has no clip columns"
        raise ManifestError(f"{path}: a {found} manifest ({why}) where a {kind} manifest is expected")
    missing = [c for c in (KEYS[kind], "status") if c not in table.column_names]
    if missing:
        raise ManifestError(f"{path}: not a {kind} manifest: missing column {', '.join(missing)}")


def _check_types(table: pa.Table, path: Path, kind: str) -> None:
    """Refuse a column whose stored type is not the schema's (``validate_table``'s column check).

    Types that convert without loss of meaning are accepted (an all-null column, int32 for
    int64, float32 for float64, large_string for string); anything else names file and column.
    """
    expected = schema_for(kind)
    for field in table.schema:
        if field.name not in expected.names or field.type == expected.field(field.name).type:
            continue
        want = expected.field(field.name).type
        if not _compatible(field.type, want):
            raise ManifestError(f"{path}: column {field.name} has type {field.type}, expected {want}; "
                                f"fix the column or write the manifest again (`c98k validate {path}` lists problems)")


def _compatible(have: pa.DataType, want: pa.DataType) -> bool:
    if pa.types.is_null(have):
        return True
    families = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_timestamp)
    for family in families:
        if family(want):
            return family(have) or (pa.types.is_floating(want) and pa.types.is_integer(have))
    if pa.types.is_string(want) or pa.types.is_large_string(want):
        return pa.types.is_string(have) or pa.types.is_large_string(have)
    if pa.types.is_map(want):
        return pa.types.is_map(have) and _compatible(have.key_type, want.key_type) and \
            _compatible(have.item_type, want.item_type)
    if pa.types.is_list(want) or pa.types.is_large_list(want):
        return (pa.types.is_list(have) or pa.types.is_large_list(have)) and _compatible(have.value_type, want.value_type)
    if pa.types.is_struct(want):
        names = {have.field(i).name: have.field(i).type for i in range(have.num_fields)} \
            if pa.types.is_struct(have) else {}
        return bool(names) and all(want.field(i).name in names and _compatible(names[want.field(i).name],
                                                                                  want.field(i).type)
                                   for i in range(want.num_fields))
    return False


def manifest_exists(path: str | os.PathLike) -> bool:
    """Whether a manifest file or any flushed part of it exists (an absent output starts empty)."""
    path = Path(path)
    pdir = parts_dir(path)
    return path.exists() or (pdir.is_dir() and any(pdir.glob("part-*.parquet")))


def read_manifest(path: str | os.PathLike, kind: str | None = None, with_parts: bool = True,
                  validate: bool = True) -> pa.Table:
    """Read a manifest (file plus pending parts), newest row per key, conformed to its schema.

    Raises ``ManifestError`` naming the file for a missing or unreadable file, a manifest of
    the other kind (a videos manifest where clips are expected, or the reverse), one without
    its key or ``status`` column, a column of the wrong type, or (``validate``) the first
    problem ``validate_table`` finds.
    """
    path = Path(path)
    sources: list[tuple[Path, pa.Table]] = []
    if path.exists():
        sources.append((path, _read_file(path)))
    if with_parts:
        sources += [(p, _read_file(p)) for p in list_parts(path)]
    if not sources:
        raise ManifestError(f"{path}: no such manifest (run the stage that writes it first)")
    kind = kind or guess_kind(sources[0][1].schema)
    for source, table in sources:
        _check_kind(table, source, kind)
        _check_types(table, source, kind)
    merged = without_tombstones(dedupe_latest(
        pa.concat_tables([conform(t, kind) for _, t in sources], promote_options="permissive"), KEYS[kind]))
    if validate:
        problems = validate_table(merged, kind, max_problems=2)
        if problems:
            more = " (and more)" if len(problems) > 1 else ""
            raise ManifestError(f"{path}: {problems[0]}{more}; fix it or write it again "
                                f"(`c98k validate {path}` lists every problem)")
    return merged


def dedupe_latest(table: pa.Table, key: str) -> pa.Table:
    """Keep the last row for every key, in first-seen key order."""
    keys = table.column(key).to_pylist()
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
        last[k] = i
    if len(last) == len(keys):
        return table
    order = sorted(last.values(), key=lambda i: first[keys[i]])
    return table.take(pa.array(order, pa.int64()))


def without_tombstones(table: pa.Table) -> pa.Table:
    """``table`` without rows that delete their key (``TOMBSTONE``)."""
    if "status" not in table.column_names or not table.num_rows:
        return table
    status = table.column("status")
    if not pc.any(pc.fill_null(pc.equal(status, TOMBSTONE), False)).as_py():
        return table
    return table.filter(pc.fill_null(pc.not_equal(status, TOMBSTONE), True))


def write_manifest(table: pa.Table | list[dict], path: str | os.PathLike, kind: str | None = None,
                   validate: bool = True) -> Path:
    """Write a whole manifest atomically (temp file, then rename), then drop the parts it replaces."""
    path = Path(path)
    stale = list_parts(path)
    if isinstance(table, list):
        if kind is None:
            raise ValueError("kind is required when writing rows")
        table = rows_to_table(table, kind)
    kind = kind or guess_kind(table.schema)
    table = conform(table, kind)
    if validate:
        problems = validate_table(table, kind)
        if problems:
            raise ManifestError(f"{path}: refusing to write an invalid manifest: {problems[0]}"
                                + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd")
    drop_parts(path, stale)
    return path


def drop_parts(path: str | os.PathLike, parts: Iterable[Path]) -> None:
    """Delete ``parts`` (already folded elsewhere), and the parts folder once it is empty."""
    for p in parts:
        p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        parts_dir(path).rmdir()


def compact(path: str | os.PathLike, kind: str | None = None, full: bool = False) -> Path:
    """Compact incrementally: merge similar-size parts, fold them into the base only when they
    outweigh it (or ``full``). Never rewrites the base for a few new rows."""
    from commercial98k.manifest.compact import compact_parts

    compact_parts(Path(path), kind, full=full)
    return Path(path)


def write_rows_part(path: str | os.PathLike, kind: str, rows: list[dict]) -> Path | None:
    """Write ``rows`` as one atomic part that sorts after every existing part (so its rows win).

    Named by time, like a writer's parts; when the clock does not put it last (same second, or a
    skewed clock), it is named after the newest part with the next generation (``part_order``).
    """
    if not rows:
        return None
    name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}-000000"
    parts = list_parts(path)
    if parts and part_order(Path(name + ".parquet")) <= part_order(parts[-1]):
        last, gen = part_order(parts[-1])
        name = f"{last}@{gen + 1}"
    part = parts_dir(path) / f"{name}.parquet"
    with atomic_path(part, suffix=".parquet") as tmp:
        pq.write_table(rows_to_table(rows, kind), tmp, compression="zstd")
    return part


def problems_in(path: str | os.PathLike, kind: str | None = None) -> list[Problem]:
    """Validate a manifest as stored (no conforming): the base file, then each part that outlived
    its run (tombstones aside); a part's problems name the part file."""
    path = Path(path)
    parts = list_parts(path)
    problems = validate_table(_read_file(path), kind) if path.exists() or not parts else []
    for part in parts:
        table = without_tombstones(_read_file(part))
        problems += [dataclasses.replace(p, message=f"{p.message} (in {part.name})")
                     for p in validate_table(table, kind)]
    return problems


class ManifestWriter:
    """Appends rows to a manifest as parts, flushed every ``flush_every`` rows or seconds.

    Use as a context manager; each flush merges similar-size parts, and a clean exit runs
    ``compact`` (the base is rewritten only when the parts outweigh it).
    Rows with an existing key replace the old row (newest wins).
    """

    def __init__(self, path: str | os.PathLike, kind: str, flush_every: int = 64, flush_seconds: float = 30.0):
        self.path = Path(path)
        self.kind = kind
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self._rows: list[dict] = []
        self._last_flush = time.monotonic()
        self._seq = 0
        self._run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"

    def add(self, row: dict) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.flush_every or time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def extend(self, rows: Iterable[dict]) -> None:
        for r in rows:
            self.add(r)

    def flush(self) -> None:
        """Write buffered rows as one part file (atomic), then merge similar-size parts."""
        self._last_flush = time.monotonic()
        if not self._rows:
            return
        table = rows_to_table(self._rows, self.kind)
        part = parts_dir(self.path) / f"part-{self._run}-{self._seq:06d}.parquet"
        with atomic_path(part, suffix=".parquet") as tmp:
            pq.write_table(table, tmp, compression="zstd")
        self._seq += 1
        self._rows = []
        from commercial98k.manifest.compact import merge_parts

        merge_parts(self.path, self.kind)

    def close(self) -> None:
        self.flush()
        compact(self.path, self.kind)

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Flush what finished even on error or Ctrl-C; compact only on a clean exit.
        self.flush()
        if exc_type is None:
            compact(self.path, self.kind)

