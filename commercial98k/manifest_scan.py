"""Stream a manifest in record batches (``pyarrow.dataset``) instead of materialising every row.

``scan_manifest`` reads the compacted file batch by batch plus the pending parts
(``<name>.parts/``), newest row per key winning: the parts (one run's flushes: small) are read
whole first, and rows of the compacted file whose key a part overrides are dropped on the fly.
``iter_pending`` turns only the rows a planner selects into dicts, so a stage can plan a
million-row manifest with a driver of a few hundred MB.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .manifest import ManifestError, _check_kind, _check_types, dedupe_latest, parts_dir
from .schema import KEYS


def scan_manifest(path: str | os.PathLike, kind: str, columns: list[str] | None = None,
                  batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
    """Record batches of ``columns`` (default: all) of the manifest, newest row per key."""
    path = Path(path)
    key = KEYS[kind]
    cols = list(dict.fromkeys([key, *columns])) if columns else None
    parts = sorted(parts_dir(path).glob("part-*.parquet")) if parts_dir(path).is_dir() else []
    if not path.exists() and not parts:
        raise ManifestError(f"{path}: no such manifest (run the stage that writes it first)")
    part_table = None
    if parts:
        for p in parts:
            empty = ds.dataset(str(p), format="parquet").schema.empty_table()
            _check_kind(empty, p, kind)
            _check_types(empty, p, kind)
        tables = [_read_columns(ds.dataset(str(p), format="parquet"), cols) for p in parts]  # in name order
        part_table = dedupe_latest(pa.concat_tables(tables, promote_options="permissive"), key)
    overridden = part_table.column(key) if part_table is not None else None
    if path.exists():
        try:
            dataset = ds.dataset(str(path), format="parquet")
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise ManifestError(f"{path}: not a readable Parquet file ({e})") from e
        _check_kind(dataset.schema.empty_table(), path, kind)
        _check_types(dataset.schema.empty_table(), path, kind)  # a wrong-typed column: one line naming it
        present = [c for c in cols if c in dataset.schema.names] if cols else None
        for batch in dataset.to_batches(columns=present, batch_size=batch_rows):
            batch = _add_missing(batch, cols)
            if overridden is not None and len(overridden):
                batch = batch.filter(pc.invert(pc.is_in(batch.column(key), value_set=overridden)))
            if batch.num_rows:
                yield batch
    if part_table is not None:
        yield from part_table.to_batches(max_chunksize=batch_rows)


def _add_missing(batch: pa.RecordBatch, cols: list[str] | None) -> pa.RecordBatch:
    """``batch`` with null columns for requested ``cols`` it lacks (a manifest written before they existed)."""
    if not cols or all(c in batch.schema.names for c in cols):
        return batch
    arrays = [batch.column(c) if c in batch.schema.names else pa.nulls(batch.num_rows, pa.string()) for c in cols]
    return pa.RecordBatch.from_arrays(arrays, names=cols)


def _read_columns(dataset: ds.Dataset, cols: list[str] | None) -> pa.Table:
    """The whole ``dataset`` (a manifest part), with null columns for requested ones it lacks."""
    present = [c for c in cols if c in dataset.schema.names] if cols else None
    table = dataset.to_table(columns=present)
    return pa.Table.from_batches([_add_missing(b, cols) for b in table.to_batches()]) if table.num_rows and cols \
        else table


def iter_pending(path: str | os.PathLike, kind: str, columns: list[str],
                 select: Callable[[pa.RecordBatch], pa.Array], batch_rows: int = 65_536) -> Iterator[list[dict]]:
    """Lists of row dicts (``columns`` only) of the rows ``select(batch)`` marks True, batch by batch."""
    for batch in scan_manifest(path, kind, columns, batch_rows):
        picked = batch.filter(select(batch))
        if picked.num_rows:
            yield picked.to_pylist()
