"""Per-stage status: every stage records its own result, and ``status`` is derived from them.

A clips row carries ``fetch_status``/``fetch_error`` (copied from its video), ``split_status``/
``split_error`` and ``label_status``/``label_error``; a videos row carries the fetch pair. A stage
writes only its own pair (``record``); the row's ``status``/``error`` are then the first stage
that did not end ``ok`` (the place where the clip stopped), else ``ok``. So a label failure
never hides that split succeeded, and ``c98k label --retry-failed`` finds exactly its own
failures. Rows written before these columns existed get them when read (``manifest.legacy``),
so the functions here read the stage columns only.
"""

from __future__ import annotations

STAGES = ("fetch", "split", "label")


def stage_result(row: dict, stage: str) -> str | None:
    """A stage's own status of a row (None: the stage has not run on it)."""
    return row.get(f"{stage}_status")


def stage_error(row: dict, stage: str) -> str | None:
    """A stage's own error of a row."""
    return row.get(f"{stage}_error")


def split_result(row: dict) -> str | None:
    """Split's own status of a clips row (``stage_result(row, "split")``)."""
    return stage_result(row, "split")


def overall(row: dict) -> tuple[str | None, str | None]:
    """(status, error) of the first stage that did not end ``ok``; ``ok`` when all recorded ones did."""
    for stage in STAGES:
        s = row.get(f"{stage}_status")
        if s is not None and s != "ok":
            return s, row.get(f"{stage}_error")
    return "ok", None


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
