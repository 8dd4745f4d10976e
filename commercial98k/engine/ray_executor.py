"""The Ray executor: every Ray detail of running a stage lives here, and only here.

* ``connect(address)``: ``--address``, else ``RAY_ADDRESS``, else a local Ray started here. When
  connecting to an existing cluster no ``num_cpus``/``num_gpus`` is passed (Ray refuses them).
* ``default_workers``: the cluster's CPUs (or GPUs / ``gpus_per_worker`` for GPU stages).
* ``probe_data_root(root)``: one zero-CPU task per alive node reads a token file the driver wrote
  under ``root``; a node that cannot read it raises ``DataRootError`` (one line, names the node).
* ``RayExecutor``: a pool of actors, each a ``stage.StageWorker`` (``setup`` once; models load in
  the actors, never in the driver), with the stage's ``resources``, its model threads capped to
  the CPUs it reserves, and ``cuda:0`` as its device when Ray gave it a GPU. Two batches in
  flight per actor. A batch whose actor died is retried by Ray (``max_retries``), then item by
  item, each alone on its actor; an item whose actor still dies becomes the stage's
  ``failed_rows`` with the Ray error (``WorkerCrashedError``/``ActorDiedError``/
  ``OutOfMemoryError``: ``is_system_failure``), its actor is replaced, and the stage goes on.
* A machine fault raised in a worker (``faults.EnvironmentFault``, or an ``OSError`` such as
  ENOSPC) is raised in the driver, and so is a lost cluster (``wait``): the stage stops, no row.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from commercial98k.engine.stage import (
    Done,
    PartWriter,
    Resources,
    Stage,
    StageWorker,
    assign_worker_device,
    crash_rows,
)
from commercial98k.errors import C98kError

log = logging.getLogger(__name__)

#: ``error`` prefixes of rows that failed because of the cluster, not the input.
SYSTEM_ERRORS = ("WorkerCrashedError", "OutOfMemoryError", "ActorDiedError", "ActorUnavailableError",
                 "NodeDiedError", "ObjectLostError", "OwnerDiedError", "ObjectReconstructionFailedError",
                 "TaskUnschedulableError", "ActorUnschedulableError", "RaySystemError", "GetTimeoutError")
SHARED_STORAGE_HINT = "put it on a filesystem every node mounts at the same path"


class ClusterError(C98kError, RuntimeError):
    """The Ray cluster cannot run this stage as asked (its message says why and what to do)."""


class DataRootError(ClusterError):
    """A Ray worker node cannot see the driver's data root."""


def is_system_failure(row: dict) -> bool:
    """True for a failed row whose cause is a crashed/killed worker or a lost node (not bad input)."""
    return row.get("status") == "failed" and str(row.get("error") or "").startswith(SYSTEM_ERRORS)


def ray_address(address: str | None) -> str | None:
    """``address``, else the ``RAY_ADDRESS`` environment variable, else None (start a local Ray)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to (or start) Ray; True when this call initialised it (the caller shuts it down)."""
    try:
        import ray
    except ImportError as e:
        raise RuntimeError("--engine ray needs Ray: pip install 'commercial98k[ray]'") from e
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
    addr = ray_address(address)
    if addr:
        kwargs["address"] = addr  # an existing cluster: Ray refuses num_cpus/num_gpus here
    elif num_cpus:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)
    return True


def default_workers(gpus_per_worker: float = 0.0, cpus_per_worker: float = 1.0) -> int:
    """Tasks the connected cluster runs at once: its CPUs, or its GPUs for a GPU stage."""
    import ray

    res = ray.cluster_resources()
    if gpus_per_worker > 0:
        return max(1, int(res.get("GPU", 0) / gpus_per_worker))
    return max(1, int(res.get("CPU", 1) / max(cpus_per_worker, 1e-9)))


def check_gpus(gpus_per_worker: float) -> None:
    """Refuse a GPU stage on a cluster without that many GPUs (its tasks would wait forever)."""
    import ray

    have = ray.cluster_resources().get("GPU", 0)
    if gpus_per_worker > have:
        raise ClusterError(f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has {have:g} GPU(s)")


def _look(path: str, token: str) -> tuple[str, bool]:
    try:
        with open(path, encoding="utf-8") as f:
            ok = f.read() == token
    except OSError:
        ok = False
    return socket.gethostname(), ok


def probe_data_root(root: str | os.PathLike, timeout_s: float = 120.0) -> int:
    """Check that every alive node sees ``root`` (the same files); return the number of nodes checked.

    Raises ``DataRootError`` naming the root and the first node that cannot read the token.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from commercial98k.storage.files import DataRoot

    data_root = DataRoot(root)
    root = data_root.root
    token = uuid.uuid4().hex
    token_path = data_root.resolve(f".c98k-probe/{token}.txt")
    token_path.parent.mkdir(parents=True, exist_ok=True)
    token_path.write_text(token, encoding="utf-8")
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        look = ray.remote(num_cpus=0, max_retries=0)(_look)
        refs = [look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(token_path), token) for n in nodes]
        seen = ray.get(refs, timeout=timeout_s)
    finally:
        token_path.unlink(missing_ok=True)
    for node, (host, ok) in zip(nodes, seen, strict=True):
        if not ok:
            name = f"{node.get('NodeManagerAddress', '?')} ({host}, {node['NodeID'][:8]})"
            raise DataRootError(f"the data root {root} is not visible from worker node {name}: {SHARED_STORAGE_HINT}")
    return len(nodes)


def ray_options(res: Resources) -> dict[str, Any]:
    """The Ray actor/task options of a stage's ``Resources``."""
    opts: dict[str, Any] = {"num_cpus": res.num_cpus, "num_gpus": res.num_gpus}
    if res.memory_mb:
        opts["memory"] = int(res.memory_mb) * 1024 * 1024
    return opts


def _assign_gpu() -> None:
    """In a Ray worker: Ray narrowed ``CUDA_VISIBLE_DEVICES`` to the GPU it gave, so that one is ``cuda:0``."""
    import ray

    if ray.get_gpu_ids():
        assign_worker_device("cuda:0")


class _ActorWorker(StageWorker):
    """A ``StageWorker`` as a Ray actor: the GPU Ray assigned becomes the stage's device before ``setup``."""

    def __init__(self, stage: Stage, parts: PartWriter | None = None):
        _assign_gpu()
        super().__init__(stage, parts)


def _call_on_worker(fn: Callable[..., Any], *args: Any) -> Any:
    _assign_gpu()
    return fn(*args)


def ray_cause(e: BaseException) -> BaseException:
    """The exception a Ray error stands for: a task's own exception, else the Ray error itself."""
    cause = getattr(e, "cause", None)
    if type(e).__name__ == "RayTaskError" and isinstance(cause, BaseException):
        return cause
    return e


class RayExecutor:
    """Run stages as a pool of Ray actors on the cluster at ``address`` (else ``RAY_ADDRESS``, else a
    local Ray); ``workers`` actors (None: the cluster's CPUs, or GPUs / the stage's GPUs per worker).

    A context manager: entering connects (and with ``data_root`` checks every node sees it);
    leaving shuts down a Ray this executor started. Nested entries share one connection.
    ``measure=True`` (benchmarks): ``stats`` gets ``actors``, ``setup_s`` (actor start-up and
    model load, waited for before the first batch) and ``run_s`` (from then to the last row).
    """

    def __init__(self, workers: int | None = None, *, address: str | None = None,
                 data_root: str | os.PathLike | None = None, max_retries: int = 1, measure: bool = False):
        self.workers, self.address, self.max_retries, self.measure = workers, address, max_retries, measure
        self.data_root = Path(data_root).resolve() if data_root is not None else None
        self.stats: dict = {}
        self._depth = 0
        self._started = False

    def __enter__(self) -> RayExecutor:
        if self._depth == 0:
            self._started = connect(self.address, num_cpus=self.workers)
            try:
                if self.data_root is not None:
                    probe_data_root(self.data_root)
            except BaseException:
                self._shutdown()
                raise
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def call(self, fn: Callable[..., Any], *args: Any, stage: Stage | None = None) -> Any:
        """``fn(*args)`` as one task with ``stage``'s resources; the task's own exception is raised here."""
        import ray

        res = stage.resources if stage is not None else Resources()
        if res.num_gpus:
            check_gpus(res.num_gpus)
        with self:
            task = ray.remote(_call_on_worker).options(**ray_options(res), max_retries=self.max_retries)
            try:
                return ray.get(task.remote(fn, *args))
            except ray.exceptions.RayTaskError as e:
                raise ray_cause(e) from None

    def run(self, stage: Stage, chunks: Iterator[list[dict]], parts: PartWriter | None) -> Iterator[Done]:
        import ray

        res = stage.resources
        if res.num_gpus:
            check_gpus(res.num_gpus)
        n = self.workers or default_workers(res.num_gpus, res.num_cpus)
        if stage.threads is None:  # an actor's model threads = the CPUs Ray reserved for it
            stage = copy.copy(stage)
            stage.threads = max(1, int(res.num_cpus or 1))
        actor_cls = ray.remote(_ActorWorker).options(**ray_options(res), max_restarts=self.max_retries,
                                                     max_task_retries=self.max_retries)
        stage_ref = ray.put(stage)
        t0 = time.perf_counter()
        actors = [actor_cls.remote(stage_ref, parts) for _ in range(n)]
        if self.measure:  # measure start-up apart from throughput
            ray.wait([a.info.remote() for a in actors], num_returns=len(actors))
            self.stats.update(actors=n, setup_s=time.perf_counter() - t0)
            t0 = time.perf_counter()
        yield from _drive(stage, actors, chunks, lambda: actor_cls.remote(stage_ref, parts))
        if self.measure:
            self.stats["run_s"] = time.perf_counter() - t0


def _drive(stage: Stage, actors: list, chunks: Iterator[list[dict]], new_actor: Callable[[], Any]) -> Iterator[Done]:
    """Keep two batches in flight per actor; on an actor's death retry its batch item by item, each
    retried item alone on its actor (so a retried item that kills its actor is the cause)."""
    import ray

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
            for ref in wait(list(inflight)):
                actor, rows, single = inflight.pop(ref)
                load[id(actor)] = load.get(id(actor), 1) - 1
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as e:
                    raise_fault(e)  # a machine fault: stop, record nothing for the batch
                    log.debug("batch of %d failed on an actor: %s", len(rows), e)
                    cause = ray_cause(e)
                else:
                    yield Done(len(rows), out)
                    continue
                if actor in actors:  # replace the dead actor once (its other batch fails too)
                    actors[actors.index(actor)] = fresh = new_actor()
                    load[id(fresh)] = 0
                    dead.append(actor)  # keep the handle: ids in ``load`` stay unique
                    ray.kill(actor, no_restart=True)
                if single:
                    yield Done(1, crash_rows(stage, rows[0], cause), crashed=True)
                else:  # a batch, or a lone item that may have queued behind a crasher
                    retry.extend([r] for r in rows)
    finally:
        for a in actors + dead:
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)


def wait(refs: list) -> list:
    """``ray.wait`` for one ref; the cluster gone (head down, network lost) is a machine fault."""
    import ray

    from commercial98k.faults import lost_cluster

    try:
        done, _ = ray.wait(refs, num_returns=1)
    except Exception as e:  # ray.wait raises only when the driver cannot reach the cluster
        raise lost_cluster(f"{type(e).__name__}: {' '.join(str(e).split())}") from e
    return done


def raise_fault(e: BaseException) -> None:
    """Raise the machine fault a Ray task error carries (ENOSPC in a worker, ...); else return."""
    from commercial98k.faults import classify

    fault = classify(e)
    if fault is not None:
        raise fault from None
