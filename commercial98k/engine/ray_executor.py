"""Ray side of ``engine.run_steps``: connecting, sizing, the shared-storage probe and fault rows.

* ``connect(address)``: ``--address``, else ``RAY_ADDRESS``, else a local Ray started here. When
  connecting to an existing cluster no ``num_cpus``/``num_gpus`` is passed (Ray refuses them).
* ``default_workers``: the cluster's CPUs (or GPUs / ``gpus_per_worker`` for GPU stages).
* ``probe_data_root(root)``: one zero-CPU task per alive node reads a token file the driver wrote
  under ``root``; a node that cannot read it raises ``DataRootError`` (one line, names the node).
* A task that dies with its worker (crash, OOM kill, lost node) after Ray's retries becomes that
  item's ``failed`` row with the cause (``WorkerCrashedError: ...``); ``is_system_failure`` tells
  such rows from bad input, so stages can exit non-zero.
* A task that raised a machine fault (``faults.EnvironmentFault``, or an ``OSError`` such as
  ENOSPC) is raised in the driver, and so is a lost cluster (``wait``): the stage stops, no row.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

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


def assigned_device(requested: str) -> str:
    """The torch device for a step: ``cuda:0`` inside a Ray worker that Ray gave a GPU (Ray narrows
    ``CUDA_VISIBLE_DEVICES`` to it), else ``requested``."""
    try:
        import ray

        if ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE and ray.get_gpu_ids():
            return "cuda:0"
    except Exception:  # noqa: BLE001 - not in a Ray worker
        pass
    return requested


def system_failure_row(item: dict, e: BaseException) -> dict:
    """The ``failed`` row of an item whose task died with its worker (the cause is the Ray error)."""
    from commercial98k.errors import error_line

    cause = getattr(e, "cause", None)
    row = dict(item)
    row["status"] = "failed"
    row["error"] = error_line(cause if isinstance(cause, BaseException) and type(e).__name__ == "RayTaskError"
                              else e)
    return row


def run_ray(call: Callable[[Any, dict], dict], step: Any, items: Iterable[dict], workers: int,
            num_cpus: float = 1.0, num_gpus: float = 0.0, max_retries: int = 2) -> Iterator[dict]:
    """Submit ``call(step, item)`` as Ray tasks, at most ``2 * workers`` in flight; yield rows as they finish.

    A task whose worker died even after ``max_retries`` retries yields the item's failed row.
    """
    import ray

    remote = ray.remote(call).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries)
    step_ref = ray.put(step)
    pending: dict[Any, dict] = {}
    limit = max(1, workers) * 2

    def finished(ref) -> dict:
        item = pending.pop(ref)
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as e:
            raise_fault(e)
            log.debug("task of %s died: %s", item, e)
            return system_failure_row(item, e)

    try:
        for item in items:
            pending[remote.remote(step_ref, item)] = item
            if len(pending) >= limit:
                yield from (finished(r) for r in wait(list(pending)))
        while pending:
            yield from (finished(r) for r in wait(list(pending)))
    finally:  # a machine fault stops the stage: nothing more runs for it
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref)


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
