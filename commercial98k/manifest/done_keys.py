"""Done keys: the one reader of "which keys has a stage finished", so a rerun skips them."""

from __future__ import annotations

import os
from collections.abc import Iterator

from commercial98k.manifest.reader import manifest_exists
from commercial98k.manifest.scan import scan_manifest
from commercial98k.manifest.schema import KEYS
from commercial98k.manifest.status import stage_error, stage_result


def finished(status: str | None, error: str | None, retry_failed: bool = False) -> bool:
    """Whether a stage's recorded result means its key is done (a rerun does not work on it again).

    Not done: no result yet; ``blocked`` and the retryable failures (``truncated (...)``,
    ``empty file (...)``: ``sources.common.is_retryable``), always; other failures with ``retry_failed``.
    """
    # here, not at import: the sources package loads its downloaders
    from commercial98k.sources.common import is_retryable

    if status is None or is_retryable(status, error):
        return False
    return not (retry_failed and status == "failed")


def row_finished(row: dict, stage: str, retry_failed: bool = False) -> bool:
    """``finished`` applied to ``stage``'s own result of a manifest row (``status.stage_result``)."""
    return finished(stage_result(row, stage), stage_error(row, stage), retry_failed)


def stage_results(path: str | os.PathLike, kind: str, stage: str, columns: tuple[str, ...] = (),
                  batch_rows: int = 65_536) -> Iterator[list[dict]]:
    """Rows of the manifest, streamed in lists, each with its key, ``columns`` and ``result``/
    ``result_error`` (``stage``'s own status and error). An absent manifest yields nothing; an
    unreadable one or one of the other kind raises ``ManifestError``."""
    if not manifest_exists(path):
        return
    cols = list(dict.fromkeys([KEYS[kind], *columns, f"{stage}_status", f"{stage}_error"]))
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
