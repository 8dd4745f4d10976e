"""Run a per-item step over many items: in-process, in a local pool, or as Ray tasks.

A *step* is a picklable callable ``step(item: dict) -> dict`` that returns the item's result
row with a ``status`` (see ``schema.STATUSES``) and an ``error``. It never raises for bad
input: it catches, records the cause, and returns a failed row (video2dataset's convention).
A fault of the machine (``faults.EnvironmentFault``: disk full, no permission, tool missing,
out of memory) is not the item's: it is raised, and ``run_steps`` stops with it (the items in
flight are dropped, queued ones never start, and no row is yielded for them).
``run_steps`` yields rows as they finish, with a progress bar counting done / failed / skipped.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from commercial98k.errors import error_line
from commercial98k.faults import raise_if_environment

log = logging.getLogger(__name__)

Step = Callable[[dict], dict]
ENGINES = ("local", "ray")


def safe_call(step: Step, item: dict) -> dict:
    """Call ``step``; turn an unexpected exception into a failed row naming the cause (a machine
    fault is raised as ``faults.EnvironmentFault`` instead)."""
    try:
        row = step(item)
    except Exception as e:  # a bug or an unforeseen input must not stop the run
        raise_if_environment(e)
        row = dict(item)
        row["status"] = "failed"
        row["error"] = error_line(e)
        log.debug("step failed on %s\n%s", item, traceback.format_exc())
    return row


def item_name(row: dict) -> str:
    for k in ("clip_id", "video_id", "url", "path"):
        if row.get(k):
            return str(row[k])
    return "?"


class Progress:
    """A tqdm bar whose postfix counts rows by status; prints one line per failure."""

    def __init__(self, total: int | None, desc: str, disable: bool | None = None):
        self.counts: Counter[str] = Counter()
        self.bar = tqdm(total=total, desc=desc, unit="item", dynamic_ncols=True, disable=disable, file=sys.stderr)

    def update(self, row: dict) -> None:
        status = row.get("status") or "ok"
        bucket = "done" if status == "ok" else "skipped" if status in ("skipped", "duplicate") else "failed"
        self.counts[bucket] += 1
        if bucket == "failed":
            self.bar.write(f"error: {item_name(row)}: {status}: {row.get('error') or 'no detail'}", file=sys.stderr)
        self.bar.set_postfix(done=self.counts["done"], failed=self.counts["failed"], skipped=self.counts["skipped"])
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_steps(step: Step, items: Iterable[dict], *, workers: int | None = 1, engine: str = "local",
              address: str | None = None, desc: str = "", total: int | None = None,
              processes: bool = False, progress: bool | None = None,
              on_row: Callable[[dict], dict] | None = None, data_root: str | os.PathLike | None = None,
              gpus_per_worker: float = 0.0, cpus_per_worker: float = 1.0, max_retries: int = 2) -> Iterator[dict]:
    """Apply ``step`` to every item and yield result rows as they complete.

    ``engine="local"`` uses threads (``processes=True``: a process pool) with ``workers``
    in flight; ``workers=1`` (or None) runs in this process. ``engine="ray"`` submits Ray tasks to
    the cluster at ``address`` (else ``RAY_ADDRESS``, else a local Ray) with at most ``2 * workers``
    in flight (None: the cluster's CPUs, or GPUs / ``gpus_per_worker``). With ``data_root``, Ray
    runs first check that every node sees it (``ray_engine.probe_data_root``); a task whose worker
    crashed or was OOM-killed after ``max_retries`` yields the item's failed row with the cause.
    ``on_row`` (optional) runs in this process on every row before it is counted and yielded,
    for checks that need all rows (e.g. content-hash duplicates).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if total is None:
        items = list(items)
        total = len(items)
    started_here = False
    if engine == "ray":
        from commercial98k.engine import ray_executor as ray_engine

        started_here = ray_engine.connect(address, num_cpus=workers)
    bar = Progress(total, desc, disable=None if progress is None else not progress)
    try:
        if engine == "ray":
            if data_root is not None:
                ray_engine.probe_data_root(Path(data_root).resolve())
            if workers is None:
                workers = ray_engine.default_workers(gpus_per_worker, cpus_per_worker)
            results = ray_engine.run_ray(safe_call, step, items, workers, cpus_per_worker, gpus_per_worker,
                                         max_retries)
        else:
            results = _run_local(step, items, workers or 1, processes)
        for row in results:
            if on_row is not None:
                row = on_row(row)
            bar.update(row)
            yield row
    finally:
        bar.close()
        if started_here:
            import ray

            ray.shutdown()


def _run_local(step: Step, items: Iterable[dict], workers: int, processes: bool) -> Iterator[dict]:
    if workers <= 1:
        for it in items:
            yield safe_call(step, it)
        return
    pool_cls = cf.ProcessPoolExecutor if processes else cf.ThreadPoolExecutor
    with pool_cls(max_workers=workers) as pool:
        pending: set[cf.Future] = set()
        try:
            for item in items:  # keep at most 2*workers in flight so huge item lists stay cheap
                pending.add(pool.submit(safe_call, step, item))
                if len(pending) >= 2 * workers:
                    done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    for f in done:
                        yield f.result()
            for f in cf.as_completed(pending):
                pending.discard(f)
                yield f.result()
        finally:  # a machine fault (or the consumer stopping): queued items never start
            for f in pending:
                f.cancel()
