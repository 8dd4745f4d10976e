"""Which clips ``c98k label`` still has to label, and how a labelled row records its result.

A clip is pending when split made it ``ok`` and its feature files are missing or were made by
other models than this run's (the provenance columns). A clip whose labelling failed is left
alone unless ``retry_failed``. ``plan_label`` streams the manifest (``manifest.scan``) and keeps
only the pending rows as dicts.
"""

from __future__ import annotations

import os
from collections import Counter

from commercial98k.manifest.done_keys import row_finished
from commercial98k.manifest.status import record, split_result, stage_result
from commercial98k.storage.feature_store import FeatureStore

FEATURE_COLUMNS = {"audio": "audio_embedding", "frames": "frame_embedding", "tags": "tag_embedding"}


def is_labelled(row: dict, store: FeatureStore, provenance: dict[str, str | None], has_emotion: bool) -> bool:
    """True when the row's features exist and were made by the models of this run."""
    if row.get("status") != "ok":
        return False
    for col in ("audio_model", "frame_model", "text_model") + (("emotion_model",) if has_emotion else ()):
        if row.get(col) != provenance[col]:
            return False
    if provenance.get("ocr_model") and row.get("ocr_model") != provenance["ocr_model"]:
        return False
    return all(store.has(row.get(col)) for col in FEATURE_COLUMNS.values())


def select_pending(rows: list[dict], store: FeatureStore, provenance: dict[str, str | None], has_emotion: bool,
                   limit: int | None = None, retry_failed: bool = False) -> tuple[list[dict], int]:
    """(rows split made ``ok`` still to label, number already labelled by these models).

    A row whose labelling failed is retried only with ``retry_failed`` (or when the failure is retryable).
    """
    pending, done = [], 0
    for r in rows:
        if split_result(r) != "ok" or (stage_result(r, "label") == "failed" and row_finished(r, "label", retry_failed)):
            continue  # done keys: the one reader's rule (manifest.done_keys.row_finished)
        if is_labelled(r, store, provenance, has_emotion):
            done += 1
        else:
            pending.append(r)
    return (pending[:limit] if limit else pending), done


def plan_label(manifest: str | os.PathLike, store: FeatureStore, provenance: dict[str, str | None],
               has_emotion: bool, limit: int | None = None,
               retry_failed: bool = False) -> tuple[list[dict], Counter]:
    """(rows to label, counts ``skipped`` (already labelled), ``not_ok`` (split did not make them
    ``ok``), ``failed_before`` (label failed; retried only with ``retry_failed``)).

    The manifest is streamed in batches (``manifest.scan``); only pending rows are kept.
    """
    import pyarrow.compute as pc

    from commercial98k.manifest.scan import scan_manifest

    pending: list[dict] = []
    counts: Counter = Counter(skipped=0, not_ok=0, failed_before=0)
    for batch in scan_manifest(manifest, "clips"):
        # only rows split made ok become dicts (the reader gave rows from before the per-stage
        # columns their split_status)
        split_ok = batch.filter(pc.fill_null(pc.equal(batch.column("split_status"), "ok"), False)).to_pylist()
        counts["not_ok"] += batch.num_rows - len(split_ok)
        if not retry_failed:
            counts["failed_before"] += sum(stage_result(r, "label") == "failed" for r in split_ok)
        chosen, n = select_pending(split_ok, store, provenance, has_emotion, retry_failed=retry_failed)
        pending += chosen
        counts["skipped"] += n
    return (pending[:limit] if limit else pending), counts


def label_result(row: dict) -> dict:
    """Record the label step's result (the row's ``status``/``error``) as label's own; split's stays."""
    return record(row, "label", row.get("status") or "failed", row.get("error"))
