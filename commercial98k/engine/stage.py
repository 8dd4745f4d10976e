"""The ``Stage`` contract and the worker that runs one: ``setup()`` once per worker, ``process_batch(rows) -> rows``.

A ``Stage`` is a picklable object and never imports Ray: executors (``engine.runner.LocalExecutor``,
``engine.ray_executor.RayExecutor``) decide where its workers run. Each worker (a thread of this
process, or one Ray actor) calls ``setup()`` once, where models are loaded, then
``process_batch`` on batches of input items. Every output row carries ``status`` and ``error``.
``resources`` declares what one worker reserves on Ray (CPUs, GPUs, memory); ``threads`` caps
its model threads (None: the executor's share of the cores; 0: a stage without models, left alone).

``StageWorker`` wraps a stage inside a worker; it is the one place where an item's exception
becomes rows (``crash_rows``: the stage's own ``failed_rows`` with ``Type: message``), so a bug
hit locally and the same bug hit on a Ray actor leave identical rows. A machine fault
(``faults.EnvironmentFault``) is raised instead. Given a part writer, the worker writes its rows
as manifest parts itself and returns only ``{key, status, error}`` per row.
"""

from __future__ import annotations

import logging
import os
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commercial98k.errors import error_line
from commercial98k.faults import raise_if_environment

log = logging.getLogger(__name__)

#: the torch device an executor gave this worker process (``cuda:0`` on a Ray GPU actor), else None
_worker_device: str | None = None


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage reserves on Ray; ``num_gpus`` may be fractional."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_mb: int | None = None


class Stage:
    """Base class: override ``setup`` (load models) and ``process_batch``; set ``key`` and ``resources``."""

    #: the output rows' key column (``clip_id`` or ``video_id``)
    key: str = "clip_id"
    #: the manifest kind the output rows belong to (``clips`` or ``videos``)
    kind: str = "clips"
    resources: Resources = Resources()
    batch_size: int = 8
    #: torch/BLAS threads per worker: None lets the executor divide the cores; 0 leaves them alone
    threads: int | None = None
    #: where the stage writes: no permission there is the machine's fault, not the item's
    data_root: str | None = None

    def setup(self) -> None:
        """Once per worker, before any batch: thread limits (``threads.set_worker_threads``), then
        models. Subclasses call super()."""
        if self.threads:
            from commercial98k.engine.threads import set_worker_threads

            set_worker_threads(self.threads)

    def process_batch(self, rows: list[dict]) -> list[dict]:
        raise NotImplementedError

    def failed_rows(self, item: dict, error: str) -> list[dict]:
        """Output rows recording that ``item`` failed with ``error`` (a bug, or its worker died);
        a stage with per-stage status columns records them here."""
        return [failed_row(item, error)]


def failed_row(item: dict, error: str) -> dict:
    """``item`` as a ``failed`` row with ``error``."""
    return dict(item, status="failed", error=error)


def crash_rows(stage: Stage, item: dict, cause: BaseException) -> list[dict]:
    """The rows of an item whose processing raised ``cause`` or whose worker died of it: the one
    rule, for every executor (a Ray error is unwrapped to its cause by the Ray executor first)."""
    return stage.failed_rows(item, error_line(cause))


def safe_call(step: Callable[[dict], dict], item: dict) -> dict:
    """Call ``step``; turn an unexpected exception into a failed row naming the cause (a machine
    fault is raised as ``faults.EnvironmentFault`` instead)."""
    try:
        return step(item)
    except Exception as e:  # a bug or an unforeseen input must not stop the run
        raise_if_environment(e)
        log.debug("step failed on %s\n%s", item, traceback.format_exc())
        return failed_row(item, error_line(e))


def worker_device(requested: str) -> str:
    """The torch device a stage's models use: the one its executor assigned this worker, else ``requested``."""
    return _worker_device or requested


def assign_worker_device(device: str | None) -> None:
    """For executors: the device every stage in this process uses (``worker_device``)."""
    global _worker_device
    _worker_device = device


def batches(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """Consecutive lists of ``size`` items, read lazily (planning can stream keys)."""
    chunk: list[dict] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= max(1, size):
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class Done:
    """A finished batch as the driver receives it: how many input items it covers and their rows
    (``crashed``: rows the driver made for an item whose worker died; not stored yet)."""

    items: int
    rows: list[dict]
    crashed: bool = False


@dataclass(frozen=True)
class PartWriter:
    """Where a worker writes its rows: parts of ``manifest`` (picklable; a path and a kind)."""

    manifest: str
    kind: str


class StageWorker:
    """A stage inside one worker: ``setup`` once, then ``run(batch)``; Ray actors wrap this class."""

    def __init__(self, stage: Stage, parts: PartWriter | None = None):
        self.stage = stage
        self.parts = parts
        self.tag = uuid.uuid4().hex[:8]
        self.pid = os.getpid()
        stage.setup()

    def run(self, rows: list[dict]) -> list[dict]:
        """Process one batch. With a part writer: write the rows as one part, return ``{key, status, error}``."""
        out = self._process(rows)
        for r in out:
            r.setdefault("error", None)
            if not r.get("status"):
                r["status"] = "failed"
                r["error"] = r["error"] or "no status returned"
        if self.parts is None:
            return out
        write_part(self.parts.manifest, self.parts.kind, out, self.tag)  # the part writer orders the parts
        return summaries(self.stage, out)

    def _process(self, rows: list[dict]) -> list[dict]:
        try:
            return self.stage.process_batch(rows)
        except Exception as e:  # noqa: BLE001 - a bug on one item must not fail the others
            raise_if_environment(e, self.stage.data_root)
            log.debug("batch of %d raised\n%s", len(rows), traceback.format_exc())
            if len(rows) == 1:
                return crash_rows(self.stage, rows[0], e)
            return [r for item in rows for r in self._process([item])]  # each item alone: find the one

    def info(self) -> dict[str, Any]:
        return {"pid": self.pid, "tag": self.tag}


def summaries(stage: Stage, rows: list[dict]) -> list[dict]:
    """``{key, status, error}`` of each row: what the driver keeps when workers write the rows."""
    return [{stage.key: str(r.get(stage.key)), "status": r["status"], "error": r.get("error")} for r in rows]


def write_part(manifest: str | os.PathLike, kind: str, rows: list[dict], name: str) -> Path | None:
    """Write ``rows`` as one part of ``manifest`` (``manifest.parts.write_part``: its name sorts after
    every part there, so its rows win); ``name`` tags the writer in the part's name."""
    from commercial98k.manifest.parts import write_part as write_manifest_part

    return write_manifest_part(manifest, kind, rows, writer=name)
