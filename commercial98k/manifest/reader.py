"""The one reader of a manifest: its base file plus its parts, newest row per key, tombstones dropped,
legacy rows upgraded.

``merged_pieces`` is the whole rule; ``io.read_manifest`` takes its pieces as one table and
``scan.scan_manifest`` streams them in record batches. The parts (at most ``FOLD_RATIO`` of the
base before compaction folds them) are read whole first and merged (newest row per key, tombstones
kept); the base is then read piece by piece, a base row a part overrides replaced in place by the
part's row (or dropped, when the part's row is a ``TOMBSTONE``), and the part rows of keys the base
lacks follow in the order they were first written. This is the order of the keys' first
appearance, which the full read has always had.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from commercial98k.manifest.files import ManifestError, check_file, file_schema, read_file
from commercial98k.manifest.legacy import needed_columns, upgrade_legacy_rows
from commercial98k.manifest.parts import has_parts, list_parts
from commercial98k.manifest.schema import KEYS, TOMBSTONE, guess_kind, schema_for


def manifest_exists(path: str | os.PathLike) -> bool:
    """Whether a manifest file or any flushed part of it exists (an absent output starts empty)."""
    return Path(path).exists() or has_parts(path)


def dedupe_latest(table: pa.Table, key: str) -> pa.Table:
    """Keep the last row for every key, in first-seen key order."""
    if pc.count_distinct(table.column(key), mode="all").as_py() == table.num_rows:
        return table
    keys = table.column(key).to_pylist()
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
        last[k] = i
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


def conform_columns(table: pa.Table, kind: str, columns: list[str] | None) -> pa.Table:
    """``table`` with exactly ``columns`` (None: the kind's schema, then any extra columns it has),
    each of the schema's type; a column it lacks (written before the column existed) is null."""
    schema = schema_for(kind)
    names = columns if columns is not None else \
        [*schema.names, *(c for c in table.column_names if c not in schema.names)]
    arrays, fields = [], []
    for name in names:
        field = schema.field(name) if name in schema.names else None
        if name in table.column_names:
            col = table.column(name)
            if field is not None and col.type != field.type:
                col = col.cast(field.type)
            arrays.append(col)
            fields.append(field if field is not None else table.schema.field(name))
        else:
            field = field or pa.field(name, pa.string())
            arrays.append(pa.nulls(table.num_rows, field.type))
            fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def checked_sources(path: Path, kind: str | None, with_parts: bool = True) -> tuple[str, bool, list[Path]]:
    """(kind, whether the base exists, parts) of a manifest whose every file has been checked
    (``files.check_file``: the kind, the key and ``status``, column types)."""
    parts = list_parts(path) if with_parts else []
    base = path.exists()
    if not base and not parts:
        raise ManifestError(f"{path}: no such manifest (run the stage that writes it first)")
    schemas = ([(path, file_schema(path))] if base else []) + [(p, file_schema(p)) for p in parts]
    kind = kind or guess_kind(schemas[0][1])
    for source, schema in schemas:
        check_file(schema, source, kind)
    return kind, base, parts


def merged_pieces(path: str | os.PathLike, kind: str | None = None, columns: list[str] | None = None,
                  batch_rows: int | None = 65_536, with_parts: bool = True) -> Iterator[pa.Table]:
    """The manifest as tables of ``columns`` (default: all, extra columns kept), newest row per key,
    without tombstones, legacy rows upgraded; ``batch_rows`` None reads the base as one piece.

    Raises ``ManifestError`` naming the file for a missing or unreadable file, a file of the other
    kind, one without its key or ``status`` column, or a column of the wrong type.
    """
    path = Path(path)
    kind, base, parts = checked_sources(path, kind, with_parts)
    key = KEYS[kind]
    wanted = list(dict.fromkeys([key, *columns])) if columns is not None else None
    read_cols = needed_columns(kind, wanted) if wanted is not None else None
    part_cols = list(dict.fromkeys([*read_cols, "status"])) if read_cols is not None else None

    def finish(table: pa.Table) -> pa.Table:
        table = upgrade_legacy_rows(without_tombstones(table), kind)
        return table.select(wanted) if wanted is not None and table.column_names != wanted else table

    overrides = None
    if parts:
        tables = [conform_columns(read_file(p, part_cols), kind, part_cols) for p in parts]  # oldest first
        overrides = dedupe_latest(pa.concat_tables(tables, promote_options="permissive"), key)
    used = np.zeros(overrides.num_rows if overrides is not None else 0, bool)
    if base:
        for piece in _base_pieces(path, read_cols, batch_rows):
            piece = conform_columns(piece, kind, part_cols if overrides is not None else read_cols)
            if overrides is not None and overrides.num_rows:
                piece = _overlay(piece, overrides, key, used)
            if piece.num_rows or batch_rows is None:  # a whole read keeps an empty base's columns
                yield finish(piece)
    if overrides is not None:
        rest = overrides.filter(pa.array(~used)) if used.any() else overrides
        if rest.num_rows:
            yield finish(rest)


def _base_pieces(path: Path, columns: list[str] | None, batch_rows: int | None) -> Iterator[pa.Table]:
    """The base file whole, or batch by batch with ``ParquetFile.iter_batches``, which yields the first
    rows at once (a dataset scanner decodes a whole row group first, and a manifest written in one
    piece is one row group: 7 s before the first row of a 1,000,000-row manifest, against 0.1 s)."""
    if batch_rows is None:
        yield read_file(path, columns)
        return
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(path)
        present = [c for c in columns if c in f.schema_arrow.names] if columns is not None else None
        for batch in f.iter_batches(batch_size=batch_rows, columns=present):
            yield pa.Table.from_batches([batch])
    except ManifestError:
        raise
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise ManifestError(f"{path}: not a readable Parquet file ({e})") from e


def _overlay(piece: pa.Table, overrides: pa.Table, key: str, used: np.ndarray) -> pa.Table:
    """``piece`` with each row whose key ``overrides`` holds replaced by that row, in place; marks
    the override rows taken in ``used``."""
    at = pc.index_in(piece.column(key), value_set=overrides.column(key))
    if at.null_count == len(at):
        return piece
    at = np.asarray(pc.fill_null(at, -1).to_numpy(zero_copy_only=False), np.int64)
    hit = at >= 0
    used[at[hit]] = True
    # take the few override rows first: a take over the whole overrides table per piece would
    # copy it once per piece
    taken = overrides.take(pa.array(at[hit], pa.int64()))
    order = np.arange(piece.num_rows)
    order[hit] = piece.num_rows + np.arange(int(hit.sum()))
    both = pa.concat_tables([piece, taken], promote_options="permissive")
    return both.take(pa.array(order, pa.int64()))


def read_merged(path: str | os.PathLike, kind: str | None = None, with_parts: bool = True) -> pa.Table:
    """The whole manifest as one table (``merged_pieces``), conformed to its schema, not validated."""
    path = Path(path)
    kind = checked_sources(path, kind, with_parts)[0]
    pieces = list(merged_pieces(path, kind, batch_rows=None, with_parts=with_parts))
    if not pieces:
        return conform_columns(schema_for(kind).empty_table(), kind, None)
    table = pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces, promote_options="permissive")
    return dedupe_latest(table, KEYS[kind])  # a base written by hand may repeat a key: the last one wins
