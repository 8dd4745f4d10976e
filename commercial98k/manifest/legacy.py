"""Rows from before the per-stage columns, upgraded once, when read.

Before ``fetch_status``/``split_status``/``label_status`` existed, a row carried only ``status``
and ``error``. The reader (``manifest.reader``) passes every table it returns through
``upgrade_legacy_rows``, so no other code infers a stage's result from ``status``; a compaction
then stores the upgraded rows.

What the old writers did decides the inference: a videos row's ``status`` was fetch's. Split wrote
clip rows (ids not ending ``-none``) only for ``ok`` clips, and label overwrote ``status`` with
``failed``: so an old clip row that is ``failed`` was split fine and failed in label; any other
old clips row holds split's result, and its video was fetched (it has a clips row). Label's own
``ok`` was never recorded, so it stays unknown (null); label decides by the models that made the
row (``label.plan``).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

#: the stages whose ``<stage>_status``/``<stage>_error`` columns a manifest kind has
STAGE_COLUMNS = {"videos": ("fetch",), "clips": ("fetch", "split", "label")}
#: the columns the inference reads besides the stage columns
SOURCE_COLUMNS = ("status", "error")


def stage_columns(kind: str) -> list[str]:
    """The per-stage status and error columns of ``kind``."""
    return [f"{s}_{c}" for s in STAGE_COLUMNS[kind] for c in ("status", "error")]


def needed_columns(kind: str, columns: list[str]) -> list[str]:
    """The columns to read so that ``columns`` of legacy rows can be upgraded (``columns`` first)."""
    if not set(columns) & set(stage_columns(kind)):
        return columns
    extra = [*SOURCE_COLUMNS, *stage_columns(kind), *(("clip_id",) if kind == "clips" else ())]
    return list(dict.fromkeys([*columns, *extra]))


def legacy_mask(table: pa.Table, kind: str) -> pa.Array | None:
    """True for rows without any per-stage status; None when ``table`` lacks a stage column."""
    cols = [f"{s}_status" for s in STAGE_COLUMNS[kind]]
    if any(c not in table.column_names for c in cols):
        return None
    mask = pc.is_null(table.column(cols[0]))
    for c in cols[1:]:
        mask = pc.and_(mask, pc.is_null(table.column(c)))
    return mask


def upgrade_legacy_rows(table: pa.Table, kind: str) -> pa.Table:
    """``table`` with the per-stage columns of its legacy rows filled in (module docstring); other
    rows, and a table without the stage columns or without a legacy row, are returned unchanged."""
    legacy = legacy_mask(table, kind)
    if legacy is None or not table.num_rows or not pc.any(legacy).as_py():
        return table
    n = table.num_rows
    status = table.column("status") if "status" in table.column_names else pa.nulls(n, pa.string())
    error = table.column("error") if "error" in table.column_names else pa.nulls(n, pa.string())
    none = pa.nulls(n, pa.string())
    if kind == "videos":
        filled = {"fetch_status": status, "fetch_error": error}
    else:
        cid = pc.fill_null(table.column("clip_id"), "")
        clip = pc.and_(pc.not_equal(cid, ""), pc.invert(pc.ends_with(cid, "-none")))
        label_failed = pc.and_(pc.fill_null(pc.equal(status, "failed"), False), clip)
        filled = {
            "fetch_status": pa.array(["ok"] * n, pa.string()), "fetch_error": none,
            "split_status": pc.if_else(label_failed, pa.scalar("ok"), status),
            "split_error": pc.if_else(label_failed, pa.scalar(None, pa.string()), error),
            "label_status": pc.if_else(label_failed, pa.scalar("failed"), pa.scalar(None, pa.string())),
            "label_error": pc.if_else(label_failed, error, pa.scalar(None, pa.string())),
        }
    for name, values in filled.items():
        if name not in table.column_names:
            continue
        i = table.schema.get_field_index(name)
        old = table.column(name)
        values = values.cast(old.type) if values.type != old.type else values
        table = table.set_column(i, table.schema.field(i), pc.if_else(legacy, values, old))
    return table
