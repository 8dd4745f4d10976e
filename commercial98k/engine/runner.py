"""The one runner: ``run_stage(stage, items, executor=, sink=)`` for fetch, split and label on both engines.

* ``executor``: ``LocalExecutor`` (worker threads of this process; one worker runs in the calling
  thread) or ``ray_executor.RayExecutor`` (a pool of Ray actors); ``executor_for(engine, ...)``
  picks one. An executor is a context manager (Ray connects, checks the data root, and shuts down
  what it started) and runs single calls too (``call``: the label models' provenance).
* ``sink``: ``WorkerParts`` (workers write their rows as manifest parts; the driver keeps only
  ``{key, status, error}`` and merges parts as they pile up) or ``DriverWriter`` (rows come back
  to this process; a hook runs on each first, e.g. fetch's content dedupe and per-platform breaker,
  then the writer stores it).
* ``StageResult``: rows by status, and ``crashed``: rows of items whose worker died (a crash, an
  OOM kill, a lost node; not the input's fault), which the commands turn into exit 3.

An item whose processing raises becomes the stage's ``failed_rows`` in the worker
(``stage.StageWorker``), identically on both engines; a worker that dies is Ray's case
(``ray_executor``). A machine fault (``faults.EnvironmentFault``) or a lost cluster stops the run
in the driver: nothing is recorded for the items in flight, queued ones never start.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import logging
import os
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from commercial98k.engine.stage import Done, PartWriter, Stage, StageWorker, batches, summaries, write_part

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
#: with worker-written parts, the driver merges similar-size parts every this many rows
MERGE_EVERY = 256


class Executor(Protocol):
    """Where a stage's workers run (``LocalExecutor``, ``ray_executor.RayExecutor``)."""

    stats: dict

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...

    def run(self, stage: Stage, chunks: Iterator[list[dict]], parts: PartWriter | None) -> Iterator[Done]: ...

    def call(self, fn: Callable[..., Any], *args: Any, stage: Stage | None = None) -> Any: ...


@dataclass
class StageResult:
    """What one ``run_stage`` did: driver-side rows by status, and those whose worker crashed."""

    counts: Counter = field(default_factory=Counter)
    items: int = 0
    crashed: int = 0
    stats: dict = field(default_factory=dict)  # executor timings when asked (setup_s, run_s, actors)


class WorkerParts:
    """Workers write their rows as parts of ``manifest`` (compact it afterwards); the driver keeps summaries."""

    def __init__(self, manifest: str | os.PathLike, kind: str):
        self.parts = PartWriter(str(Path(manifest).resolve()), kind)
        self._since_merge = 0

    def take(self, stage: Stage, done: Done) -> list[dict]:
        if done.crashed:  # rows made in the driver: stored here, as a worker would have
            write_part(self.parts.manifest, self.parts.kind, done.rows, f"failed-{os.getpid()}")
            out = summaries(stage, done.rows)
        else:
            out = done.rows
        self._since_merge += len(out)
        if self._since_merge >= MERGE_EVERY:  # keep the workers' parts few (size-tiered)
            from commercial98k.manifest.compact import merge_parts

            merge_parts(self.parts.manifest, self.parts.kind)
            self._since_merge = 0
        return out


class DriverWriter:
    """Rows come back to this process: ``hook(row) -> row`` runs on each, then ``writer.add(row)``."""

    parts = None

    def __init__(self, writer: Any = None, hook: Callable[[dict], dict] | None = None):
        self.writer, self.hook = writer, hook

    def take(self, stage: Stage, done: Done) -> list[dict]:
        out = []
        for row in done.rows:
            if self.hook is not None:
                row = self.hook(row)
            if self.writer is not None:
                self.writer.add(row)
            out.append(row)
        return out


Sink = WorkerParts | DriverWriter


def run_stage(stage: Stage, items: Iterable[dict], *, executor: Executor, sink: Sink, desc: str = "",
              total: int | None = None, progress: bool | None = None,
              on_row: Callable[[dict], None] | None = None) -> StageResult:
    """Run ``stage`` over ``items`` on ``executor``, storing rows through ``sink``; ``on_row`` sees every
    driver-side row (a summary with ``WorkerParts``). A progress bar counts items, rows by status."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    result = StageResult()
    bar = Progress(total, desc, disable=None if progress is None else not progress)
    try:
        with executor:
            for done in executor.run(stage, batches(items, stage.batch_size), sink.parts):
                rows = sink.take(stage, done)
                result.items += done.items
                result.crashed += len(rows) if done.crashed else 0
                for row in rows:
                    result.counts[row.get("status")] += 1
                    if on_row is not None:
                        on_row(row)
                bar.update(done.items, rows)
    finally:
        bar.close()
    result.stats = dict(executor.stats)
    return result


class LocalExecutor:
    """``workers`` worker threads in this process, each with its own ``StageWorker`` (``setup`` once, one
    batch at a time); one worker runs in the calling thread. A stage without ``threads`` gets
    ``cores // workers`` model threads (``threads.threads_per_worker``)."""

    def __init__(self, workers: int | None = 1):
        self.workers = max(1, workers or 1)
        self.stats: dict = {}

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def call(self, fn: Callable[..., Any], *args: Any, stage: Stage | None = None) -> Any:
        """``fn(*args)`` in this process, under ``stage``'s thread limit (models built here are its workers')."""
        if stage is not None and (threads := self._threads(stage).threads):
            from commercial98k.engine.threads import set_worker_threads

            set_worker_threads(threads)
        return fn(*args)

    def _threads(self, stage: Stage) -> Stage:
        """``stage``, or a copy with ``cores // workers`` model threads when it leaves them to the executor."""
        if stage.threads is not None:
            return stage
        from commercial98k.engine.threads import threads_per_worker

        stage = copy.copy(stage)
        stage.threads = threads_per_worker(self.workers)
        return stage

    def run(self, stage: Stage, chunks: Iterator[list[dict]], parts: PartWriter | None) -> Iterator[Done]:
        stage = self._threads(stage)
        if self.workers == 1:
            worker = StageWorker(stage, parts)
            for chunk in chunks:
                yield Done(len(chunk), worker.run(chunk))
            return
        yield from self._run_threads(stage, chunks, parts)

    def _run_threads(self, stage: Stage, chunks: Iterator[list[dict]], parts: PartWriter | None) -> Iterator[Done]:
        # one single-thread pool per worker: its setup and its batches run in the same thread, so
        # what setup builds per thread (yt-dlp's YoutubeDL) is the one its batches use
        pools = [cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stage-{i}") for i in range(self.workers)]
        pending: dict[cf.Future, tuple[cf.ThreadPoolExecutor, StageWorker, int]] = {}
        try:
            # one after another: setups share process-wide caches (models, thread limits)
            workers = [p.submit(StageWorker, copy.copy(stage), parts).result() for p in pools]
            free = deque(zip(pools, workers, strict=True))
            for chunk in chunks:
                if not free:
                    done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    for f in done:
                        pool, worker, n = pending.pop(f)
                        free.append((pool, worker))
                        yield Done(n, f.result())
                pool, worker = free.popleft()
                pending[pool.submit(worker.run, chunk)] = (pool, worker, len(chunk))
            for f in cf.as_completed(list(pending)):
                _, _, n = pending.pop(f)
                yield Done(n, f.result())
        finally:  # a machine fault (or the consumer stopping): queued batches never start
            for p in pools:
                p.shutdown(wait=True, cancel_futures=True)


def executor_for(engine: str, *, workers: int | None = None, address: str | None = None,
                 data_root: str | os.PathLike | None = None) -> Executor:
    """``LocalExecutor(workers)`` or ``RayExecutor(workers, address, data_root)`` for ``--engine``."""
    if engine == "local":
        return LocalExecutor(workers)
    if engine == "ray":
        from commercial98k.engine.ray_executor import RayExecutor

        return RayExecutor(workers, address=address, data_root=data_root)
    raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")


def item_name(row: dict) -> str:
    for k in ("clip_id", "video_id", "url", "path"):
        if row.get(k):
            return str(row[k])
    return "?"


class Progress:
    """A tqdm bar over input items whose postfix counts rows by status; prints one line per failed row."""

    def __init__(self, total: int | None, desc: str, disable: bool | None = None):
        self.counts: Counter[str] = Counter()
        self.bar = tqdm(total=total, desc=desc, unit="item", dynamic_ncols=True, disable=disable, file=sys.stderr)

    def update(self, items: int, rows: list[dict]) -> None:
        for row in rows:
            status = row.get("status") or "ok"
            bucket = "done" if status == "ok" else "skipped" if status in ("skipped", "duplicate") else "failed"
            self.counts[bucket] += 1
            if bucket == "failed":
                self.bar.write(f"error: {item_name(row)}: {status}: {row.get('error') or 'no detail'}",
                               file=sys.stderr)
        self.bar.set_postfix(done=self.counts["done"], failed=self.counts["failed"], skipped=self.counts["skipped"])
        self.bar.update(items)

    def close(self) -> None:
        self.bar.close()
