"""One Stage abstraction for local and Ray runs: ``setup()`` once per worker, ``process_batch(rows) -> rows``.

A ``Stage`` is a picklable object. Each worker (this process locally, or one Ray actor per
worker) calls ``setup()`` once, where models are loaded, then ``process_batch`` on batches of
input items. Every output row carries ``status`` and ``error`` (a failing row never raises).
``resources`` declares what one worker reserves on Ray (CPUs, GPUs, memory).

``StageWorker`` wraps a stage for a worker: it runs ``setup`` and, given a manifest, writes its
own output rows as atomic Parquet parts next to the manifest (``<manifest>.parts/``), returning
only ``(key, status, error)`` per row, so the driver counts progress without holding rows.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commercial98k.engine.threads import set_worker_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage reserves on Ray; ``num_gpus`` may be fractional."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_mb: int | None = None

    def ray_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory_mb:
            opts["memory"] = int(self.memory_mb) * 1024 * 1024
        return opts


class Stage:
    """Base class: override ``setup`` (load models) and ``process_batch``; set ``key`` and ``resources``."""

    #: the output rows' key column (``clip_id`` or ``video_id``)
    key: str = "clip_id"
    #: the manifest kind the output rows belong to (``clips`` or ``videos``)
    kind: str = "clips"
    resources: Resources = Resources()
    batch_size: int = 8
    #: torch/BLAS threads per worker (None: library default); applied in ``setup``
    threads: int | None = None

    def setup(self) -> None:
        """Once per worker, before any batch: thread limits (``threads.set_worker_threads``), then
        models. Subclasses call super()."""
        if self.threads:
            set_worker_threads(self.threads)

    def process_batch(self, rows: list[dict]) -> list[dict]:
        raise NotImplementedError

    def failed_rows(self, item: dict, error: str) -> list[dict]:
        """Output rows recording that ``item`` failed with ``error`` (its worker died, say)."""
        return [dict(item, status="failed", error=error)]


class StepStage(Stage):
    """A per-item step (``engine.Step``) as a stage; ``rows_field``: the step returns its output rows
    under this key (as the split step does with ``"rows"``)."""

    def __init__(self, step: Any, key: str = "clip_id", kind: str = "clips", rows_field: str | None = None,
                 resources: Resources | None = None, batch_size: int = 1, failed: Any = None):
        self.step, self.key, self.kind, self.rows_field = step, key, kind, rows_field
        self.resources = resources or Resources()
        self.batch_size = batch_size
        self._failed = failed

    def process_batch(self, rows: list[dict]) -> list[dict]:
        from commercial98k.engine.local import safe_call

        out: list[dict] = []
        for item in rows:
            res = safe_call(self.step, item)
            if self.rows_field and self.rows_field in res:
                out.extend(res[self.rows_field])
            elif self.rows_field and self._failed is not None:
                out.extend(self._failed(item, res.get("error") or "failed"))
            else:
                out.append(res)
        return out

    def failed_rows(self, item: dict, error: str) -> list[dict]:
        if self._failed is not None:
            return self._failed(item, error)
        return super().failed_rows(item, error)


class StageWorker:
    """A stage inside one worker: ``setup`` once, then ``run(batch)``; Ray actors wrap this class."""

    def __init__(self, stage: Stage, manifest: str | None = None):
        self.stage = stage
        self.manifest = manifest
        self.tag = uuid.uuid4().hex[:8]
        self.seq = 0
        self.pid = os.getpid()
        stage.setup()

    def run(self, rows: list[dict]) -> list[tuple[str, str, str | None]] | list[dict]:
        """Process one batch. With a manifest: write the rows as one part, return (key, status, error)."""
        out = self.stage.process_batch(rows)
        for r in out:
            r.setdefault("error", None)
            if not r.get("status"):
                r["status"] = "failed"
                r["error"] = r["error"] or "no status returned"
        if self.manifest is None:
            return out
        # time first: parts are read in name order, the newest row of a key wins
        write_part(self.manifest, self.stage.kind, out, f"{time.strftime('%Y%m%dT%H%M%S')}-{self.tag}-{self.seq:06d}")
        self.seq += 1
        return [(str(r.get(self.stage.key)), r["status"], r.get("error")) for r in out]

    def info(self) -> dict[str, Any]:
        return {"pid": self.pid, "tag": self.tag}


def write_part(manifest: str | os.PathLike, kind: str, rows: list[dict], name: str) -> Path | None:
    """Write ``rows`` as one part of ``manifest`` (``manifest.parts.write_part``: its name sorts after
    every part there, so its rows win); ``name`` tags the writer in the part's name."""
    from commercial98k.manifest.parts import write_part as write_manifest_part

    return write_manifest_part(manifest, kind, rows, writer=name)
