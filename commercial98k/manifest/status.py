"""Per-stage status: every stage records its own result, and ``status`` is derived from them.

A clips row carries ``fetch_status``/``fetch_error`` (copied from its video), ``split_status``/
``split_error`` and ``label_status``/``label_error``; a videos row carries the fetch pair. A stage
writes only its own pair (``record``); the row's ``status``/``error`` are then the first stage
that did not end ``ok`` (the place where the clip stopped), else ``ok``. So a label failure
never hides that split succeeded, and ``c98k label --retry-failed`` finds exactly its own
failures. Rows written before these columns existed have them null; ``stage_status`` then
falls back to ``status`` for the stage that wrote the row.
"""

from __future__ import annotations

STAGES = ("fetch", "split", "label")


def stage_status(row: dict, stage: str) -> str | None:
    """The stage's recorded status (None: the stage has not run on this row)."""
    return row.get(f"{stage}_status")


def stage_result(row: dict, stage: str) -> str | None:
    """A stage's own status of a row; for a row written before per-stage columns, inferred.

    Before these columns, split wrote clip rows (ids not ending ``-none``) only for ``ok`` clips,
    and label overwrote ``status`` with ``failed``: so such a row that is ``failed`` was split
    fine and failed in label.
    """
    if any(row.get(f"{s}_status") is not None for s in STAGES):
        return row.get(f"{stage}_status")
    status, cid = row.get("status"), row.get("clip_id") or ""
    label_failed = status == "failed" and bool(cid) and not cid.endswith("-none")
    if stage == "split":
        return "ok" if label_failed else status
    if stage == "label":
        return "failed" if label_failed else None
    return status if not cid else "ok"


def stage_error(row: dict, stage: str) -> str | None:
    """The stage's own error of a row (``error`` for a row written before per-stage columns)."""
    return row.get(f"{stage}_error") if row.get(f"{stage}_status") is not None else row.get("error")


def split_result(row: dict) -> str | None:
    """Split's own status of a clips row (``stage_result(row, "split")``)."""
    return stage_result(row, "split")


def overall(row: dict) -> tuple[str | None, str | None]:
    """(status, error) of the first stage that did not end ``ok``; ``ok`` when all recorded ones did."""
    seen = False
    for stage in STAGES:
        s = row.get(f"{stage}_status")
        if s is None:
            continue
        seen = True
        if s != "ok":
            return s, row.get(f"{stage}_error")
    return ("ok", None) if seen else (row.get("status"), row.get("error"))


def record(row: dict, stage: str, status: str, error: str | None) -> dict:
    """A copy of ``row`` with ``stage``'s result recorded and ``status``/``error`` derived again."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    out = dict(row)
    out[f"{stage}_status"], out[f"{stage}_error"] = status, (None if status == "ok" else error)
    out["status"], out["error"] = overall(out)
    return out


def stopped_at(row: dict) -> str:
    """Where a clip stopped, for reports: ``"label failed"``, ``"split no_music"``, ``"labelled"``..."""
    last = None
    for stage in STAGES:
        s = row.get(f"{stage}_status")
        if s is None:
            continue
        if s != "ok":
            return f"{stage} {s}"
        last = stage
    if last is None:
        return f"{row.get('status') or 'unknown'} (no stage columns)"
    return {"fetch": "fetched, not split", "split": "split, not labelled", "label": "labelled"}[last]
