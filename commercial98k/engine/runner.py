"""Run a ``Stage`` over items: locally (``StageWorker``s in threads) or as a pool of Ray actors.

Each Ray actor runs ``Stage.setup`` once (models load once per actor, never in the driver) and
processes batches; with a ``manifest`` the actor writes its rows as parts itself and the driver
only counts ``(key, status, error)``. Faults: a batch whose actor died is retried by Ray
(``max_retries``), then split into single items; a single item whose actor still dies becomes
that item's ``failed`` rows with the cause (``WorkerCrashedError``/``ActorDiedError``/
``OutOfMemoryError``), its actor is replaced, and the stage goes on. A machine fault raised in a
worker (``faults.EnvironmentFault``: disk full, no permission, tool missing) or a lost cluster
stops the stage in the driver: the batch is not recorded, nothing is marked failed for it.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from commercial98k.engine.local import Progress
from commercial98k.engine.stage import Stage, StageWorker, write_part
from commercial98k.errors import error_line

log = logging.getLogger(__name__)

#: with worker-written parts, the driver merges similar-size parts every this many rows
MERGE_EVERY = 256


def batches(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """Consecutive lists of ``size`` items, read lazily (planning can stream keys)."""
    it = iter(items)
    while chunk := list(itertools.islice(it, max(1, size))):
        yield chunk


def _summaries(stage: Stage, out: list, manifest: str | None) -> list[dict]:
    if manifest is None:
        return out
    return [{stage.key: k, "status": s, "error": e} for k, s, e in out]


def run_stage(stage: Stage, items: Iterable[dict], *, engine: str = "local", workers: int | None = None,
              address: str | None = None, manifest: str | os.PathLike | None = None,
              data_root: str | os.PathLike | None = None, desc: str = "", total: int | None = None,
              progress: bool | None = None, max_retries: int = 1, stats: dict | None = None) -> Iterator[dict]:
    """Yield one dict per output row: the row itself, or ``{key, status, error}`` when the workers
    write the rows into ``manifest``'s parts (compact the manifest afterwards).

    On Ray, each actor's torch/BLAS/onnxruntime threads are capped to the CPUs it reserves (a
    stage without its own ``threads``), so N actors never oversubscribe N cores. With ``stats``
    (benchmarks) the run first waits until every actor has run ``setup`` and records
    ``setup_s`` (actor start-up and model load) and ``run_s`` (from then to the last row)."""
    manifest = str(Path(manifest).resolve()) if manifest is not None else None
    bar = Progress(total, desc, disable=None if progress is None else not progress)
    try:
        if engine == "local":
            results = _run_local(stage, items, workers or 1, manifest)
        elif engine == "ray":
            results = _run_ray(stage, items, workers, address, manifest, data_root, max_retries, stats)
        else:
            from commercial98k.engine.local import ENGINES

            raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
        for n, row in enumerate(results, 1):
            bar.update(row)
            yield row
            if manifest is not None and n % MERGE_EVERY == 0:  # keep the workers' parts few (size-tiered)
                from commercial98k.manifest.compact import merge_parts

                merge_parts(manifest, stage.kind)
    finally:
        bar.close()


def _run_local(stage: Stage, items: Iterable[dict], workers: int, manifest: str | None) -> Iterator[dict]:
    if workers <= 1:
        worker = StageWorker(stage, manifest)
        for chunk in batches(items, stage.batch_size):
            yield from _summaries(stage, worker.run(chunk), manifest)
        return
    pool_workers = [StageWorker(stage, manifest) for _ in range(workers)]
    free = deque(pool_workers)
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        pending: dict[cf.Future, StageWorker] = {}
        for chunk in batches(items, stage.batch_size):
            if not free:
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    free.append(pending.pop(f))
                    yield from _summaries(stage, f.result(), manifest)
            w = free.popleft()
            pending[pool.submit(w.run, chunk)] = w
        for f in cf.as_completed(list(pending)):
            yield from _summaries(stage, f.result(), manifest)


def _run_ray(stage: Stage, items: Iterable[dict], workers: int | None, address: str | None,
             manifest: str | None, data_root: str | os.PathLike | None, max_retries: int,
             stats: dict | None = None) -> Iterator[dict]:
    import ray

    from commercial98k.engine import ray_executor as ray_engine

    started_here = ray_engine.connect(address, num_cpus=workers)
    try:
        if data_root is not None:
            ray_engine.probe_data_root(Path(data_root).resolve())
        res = stage.resources
        if res.num_gpus:
            ray_engine.check_gpus(res.num_gpus)
        n = workers or ray_engine.default_workers(res.num_gpus, res.num_cpus)
        if stage.threads is None:  # an actor's model threads = the CPUs Ray reserved for it
            stage = copy.copy(stage)
            stage.threads = max(1, int(res.num_cpus or 1))
        actor_cls = ray.remote(StageWorker).options(**res.ray_options(), max_restarts=max_retries,
                                                    max_task_retries=max_retries)
        stage_ref = ray.put(stage)
        t0 = time.perf_counter()
        actors = [actor_cls.remote(stage_ref, manifest) for _ in range(n)]
        if stats is not None:  # measure start-up apart from throughput
            ray.wait([a.info.remote() for a in actors], num_returns=len(actors))
            stats.update(actors=n, setup_s=time.perf_counter() - t0)
            t0 = time.perf_counter()
        yield from _drive(stage, actors, batches(items, stage.batch_size),
                          lambda: actor_cls.remote(stage_ref, manifest), manifest)
        if stats is not None:
            stats["run_s"] = time.perf_counter() - t0
    finally:
        if started_here:
            ray.shutdown()


def _drive(stage: Stage, actors: list, chunks: Iterator[list[dict]], new_actor, manifest: str | None) -> Iterator[dict]:
    """Keep two batches in flight per actor; on an actor's death retry its batch item by item, each
    retried item alone on its actor (so a retried item that kills its actor is the cause)."""
    import ray

    from commercial98k.engine import ray_executor as ray_engine

    retry: deque[list[dict]] = deque()
    inflight: dict[Any, tuple[Any, list[dict], bool]] = {}
    load = {id(a): 0 for a in actors}
    dead: list = []
    exhausted = False

    def submit(actor, rows: list[dict], single: bool) -> None:
        inflight[actor.run.remote(rows)] = (actor, rows, single)
        load[id(actor)] = load.get(id(actor), 0) + 1

    try:
        while True:
            for actor in list(actors):
                while load[id(actor)] < 2:
                    if retry:  # a retried item runs alone on its actor: if the actor dies, the item did it
                        if load[id(actor)] == 0:
                            submit(actor, retry.popleft(), True)
                        break
                    elif not exhausted and (chunk := next(chunks, None)) is not None:
                        submit(actor, chunk, False)
                    else:
                        exhausted = exhausted or not retry
                        break
            if not inflight:
                return
            for ref in ray_engine.wait(list(inflight)):
                actor, rows, single = inflight.pop(ref)
                load[id(actor)] = load.get(id(actor), 1) - 1
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as e:
                    ray_engine.raise_fault(e)  # a machine fault: stop, record nothing for the batch
                    log.debug("batch of %d failed on an actor: %s", len(rows), e)
                    if actor in actors:  # replace the dead actor once (its other batch fails too)
                        actors[actors.index(actor)] = fresh = new_actor()
                        load[id(fresh)] = 0
                        dead.append(actor)  # keep the handle: ids in ``load`` stay unique
                        ray.kill(actor, no_restart=True)
                    if not single:  # a batch, or a lone item that may have queued behind a crasher
                        retry.extend([r] for r in rows)
                        continue
                    failed = stage.failed_rows(rows[0], _cause(e))
                    if manifest is not None:
                        name = f"{time.strftime('%Y%m%dT%H%M%S')}-failed-{os.getpid()}-{id(ref):x}"
                        write_part(manifest, stage.kind, failed, name)
                        out = [(str(r.get(stage.key)), r["status"], r.get("error")) for r in failed]
                    else:
                        out = failed
                yield from _summaries(stage, out, manifest)
    finally:
        for a in actors + dead:
            ray.kill(a, no_restart=True)


def _cause(e: BaseException) -> str:
    """The manifest ``error`` of a batch whose actor died: the Ray error's type and first line."""
    cause = getattr(e, "cause", None)
    if type(e).__name__ == "RayTaskError" and isinstance(cause, BaseException):
        return error_line(cause)
    return error_line(e)
