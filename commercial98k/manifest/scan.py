"""Stream a manifest in record batches (``pyarrow.dataset``) instead of materialising every row.

``scan_manifest`` reads the base file batch by batch plus the parts (``<name>.parts/``, in
``part_order``), newest row per key winning: the parts (at most ``FOLD_RATIO`` of the base before
compaction folds them) are read whole first, and rows of the base whose key a part overrides
(or deletes: ``TOMBSTONE``) are dropped on the fly.
``iter_pending`` turns only the rows a planner selects into dicts, so a stage can plan a
million-row manifest with a driver of a few hundred MB.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import pyarrow.dataset as ds

from commercial98k.manifest.io import (
    ManifestError,
    _check_kind,
    _check_types,
    dedupe_latest,
    list_parts,
    without_tombstones,
)
from commercial98k.manifest.schema import KEYS


def scan_manifest(path: str | os.PathLike, kind: str, columns: list[str] | None = None,
                  batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
    """Record batches of ``columns`` (default: all) of the manifest, newest row per key."""
    path = Path(path)
    key = KEYS[kind]
    cols = list(dict.fromkeys([key, *columns])) if columns else None
    parts = list_parts(path)
    if not path.exists() and not parts:
        raise ManifestError(f"{path}: no such manifest (run the stage that writes it first)")
    import pyarrow.dataset as ds  # here, not at import: it pulls in pandas (0.45 s of every command's start)

    part_table = None
    if parts:
        for p in parts:
            empty = ds.dataset(str(p), format="parquet").schema.empty_table()
            _check_kind(empty, p, kind)
            _check_types(empty, p, kind)
        read_cols = list(dict.fromkeys([*cols, "status"])) if cols else None
        tables = [_read_columns(ds.dataset(str(p), format="parquet"), read_cols) for p in parts]  # oldest first
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
        live = without_tombstones(part_table)
        yield from (live.select(cols) if cols else live).to_batches(max_chunksize=batch_rows)


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


# ---- done keys: the one reader of "which keys has a stage finished" ----------------------------

#: the columns a stage's result is read from (per-stage pair, else the derived pair of old rows)
_RESULT_COLUMNS = ("clip_id", "status", "error", "fetch_status", "fetch_error", "split_status", "split_error",
                   "label_status", "label_error")


def finished(status: str | None, error: str | None, retry_failed: bool = False) -> bool:
    """Whether a stage's recorded result means its key is done (a rerun does not work on it again).

    Not done: no result yet; ``blocked`` and the retryable failures (``truncated (...)``,
    ``empty file (...)``: ``sources.common.is_retryable``), always; other failures with ``retry_failed``.
    """
    from commercial98k.sources.common import is_retryable

    if status is None or is_retryable(status, error):
        return False
    return not (retry_failed and status == "failed")


def row_finished(row: dict, stage: str, retry_failed: bool = False) -> bool:
    """``finished`` applied to ``stage``'s own result of a manifest row (``stages.stage_result``)."""
    from commercial98k.manifest.status import stage_error, stage_result

    return finished(stage_result(row, stage), stage_error(row, stage), retry_failed)


def stage_results(path: str | os.PathLike, kind: str, stage: str, columns: tuple[str, ...] = (),
                  batch_rows: int = 65_536) -> Iterator[list[dict]]:
    """Rows of the manifest, streamed in lists, each with its key, ``columns`` and ``result``/
    ``result_error`` (``stage``'s own status and error). An absent manifest yields nothing; an
    unreadable one or one of the other kind raises ``ManifestError``."""
    from commercial98k.manifest.io import manifest_exists
    from commercial98k.manifest.status import stage_error, stage_result

    if not manifest_exists(path):
        return
    cols = list(dict.fromkeys([KEYS[kind], *columns, *(c for c in _RESULT_COLUMNS if c != "clip_id" or
                                                          kind == "clips")]))
    for batch in scan_manifest(path, kind, cols, batch_rows):
        rows = batch.to_pylist()
        for r in rows:
            r["result"], r["result_error"] = stage_result(r, stage), stage_error(r, stage)
        yield rows


def done_keys(path: str | os.PathLike, kind: str, stage: str, retry_failed: bool = False,
              key: str | None = None) -> set[str]:
    """Values of ``key`` (default: the kind's key) of the rows ``stage`` has finished (``finished``):
    what a rerun of ``stage`` skips. An absent manifest has none."""
    key = key or KEYS[kind]
    return {r[key] for rows in stage_results(path, kind, stage, (key,))
            for r in rows if finished(r["result"], r["result_error"], retry_failed)}
