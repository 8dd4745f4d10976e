"""One stored manifest file (a base or a part): read it, check it is the expected kind, write it durably.

Every Parquet file of a manifest is read with ``read_file`` and checked with ``check_file``, and
written with ``write_table``: atomic (temp file, then rename) and fsync'd before and after the
rename, so a compaction that deletes its inputs after writing its output never loses rows to a
power cut.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from commercial98k.errors import C98kError
from commercial98k.manifest.schema import KEYS, guess_kind, schema_for
from commercial98k.storage.files import atomic_path


class ManifestError(C98kError, ValueError):
    """A manifest that cannot be read or does not validate."""


def read_file(path: Path, columns: list[str] | None = None) -> pa.Table:
    """The Parquet file at ``path`` (only ``columns`` it has, when given); one-line errors naming it."""
    if not path.is_file():
        raise ManifestError(f"{path}: no such file")
    try:
        f = pq.ParquetFile(path)
        present = [c for c in columns if c in f.schema_arrow.names] if columns is not None else None
        return f.read(columns=present)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise ManifestError(f"{path}: not a readable Parquet file ({e})") from e


def file_schema(path: Path) -> pa.Schema:
    """The stored schema of a manifest file (its footer only)."""
    if not path.is_file():
        raise ManifestError(f"{path}: no such file")
    try:
        return pq.read_schema(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise ManifestError(f"{path}: not a readable Parquet file ({e})") from e


def check_file(schema: pa.Schema, path: Path, kind: str) -> None:
    """Refuse a file of the other kind, one without its key or ``status`` column, or a column whose
    stored type does not convert to the schema's (``compatible``); the error names file and column."""
    found = guess_kind(schema)
    if found != kind:
        why = "it has clip columns" if found == "clips" else "it has no clip columns"
        raise ManifestError(f"{path}: a {found} manifest ({why}) where a {kind} manifest is expected")
    missing = [c for c in (KEYS[kind], "status") if c not in schema.names]
    if missing:
        raise ManifestError(f"{path}: not a {kind} manifest: missing column {', '.join(missing)}")
    expected = schema_for(kind)
    for field in schema:
        if field.name not in expected.names or field.type == expected.field(field.name).type:
            continue
        want = expected.field(field.name).type
        if not compatible(field.type, want):
            raise ManifestError(f"{path}: column {field.name} has type {field.type}, expected {want}; "
                                f"fix the column or write the manifest again (`c98k validate {path}` lists problems)")


def compatible(have: pa.DataType, want: pa.DataType) -> bool:
    """Whether a stored type converts to the schema's without loss of meaning (an all-null column,
    int32 for int64, float32 for float64, large_string for string, nested alike)."""
    if pa.types.is_null(have):
        return True
    families = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_timestamp)
    for family in families:
        if family(want):
            return family(have) or (pa.types.is_floating(want) and pa.types.is_integer(have))
    if pa.types.is_string(want) or pa.types.is_large_string(want):
        return pa.types.is_string(have) or pa.types.is_large_string(have)
    if pa.types.is_map(want):
        return pa.types.is_map(have) and compatible(have.key_type, want.key_type) and \
            compatible(have.item_type, want.item_type)
    if pa.types.is_list(want) or pa.types.is_large_list(want):
        return (pa.types.is_list(have) or pa.types.is_large_list(have)) and compatible(have.value_type, want.value_type)
    if pa.types.is_struct(want):
        names = {have.field(i).name: have.field(i).type for i in range(have.num_fields)} \
            if pa.types.is_struct(have) else {}
        return bool(names) and all(want.field(i).name in names and compatible(names[want.field(i).name],
                                                                                 want.field(i).type)
                                   for i in range(want.num_fields))
    return False


def write_table(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` atomically and durably: the data is on disk before the rename,
    and the rename is on disk before this returns (callers delete what the file replaces next)."""
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fsync_dir(path.parent)
    return path


def fsync_dir(folder: Path) -> None:
    """Make a rename or delete inside ``folder`` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
