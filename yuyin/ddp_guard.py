"""Guards that keep a ``torchrun`` training run from hanging when some rank has no data.

Three rules:

* at start, every rank checks ``world_size * loader_workers <= shards`` of the training split
  from ``index.json`` and ``WORLD_SIZE`` alone (``refuse_at_start``: no communication, and before
  torch is imported or the process group is joined, so every rank exits with the same line in
  about a second instead of waiting for imports and the rendezvous);
* before the first step, ranks all-reduce "I have a batch": if any has none, every rank raises
  the same one-line ``NoDataError`` naming the split, its shard count and the world size;
* after an error no collective runs (``abort_distributed`` only tears the group down), so the
  failing rank exits and ``torchrun`` stops the others.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from commercial98k.errors import C98kError

if TYPE_CHECKING:  # torch loads only when a collective is needed: the start check stays fast
    import torch

log = logging.getLogger(__name__)


class NoDataError(C98kError, ValueError):
    """Some rank (or loader worker) of a distributed run would get no training data."""


def shard_count(index: dict[str, Any], split: str) -> int:
    """Number of shards of ``split`` in a shard index (0 if the split is missing)."""
    return len(index.get("splits", {}).get(split, {}).get("shards", []))


def _advice(n_shards: int, readers: int) -> str:
    return (f"rebuild with `c98k build-shards --min-shards {max(readers, 8)}` (or a smaller --samples-per-shard), "
            "or use fewer processes / --num-workers")


def check_readers(index: dict[str, Any], split: str, world: int, num_workers: int) -> None:
    """Refuse ``world * max(1, num_workers)`` readers over fewer shards: some would read nothing.

    Every rank computes this from the same index, so every rank raises the same message.
    """
    n = shard_count(index, split)
    readers = world * max(1, num_workers)
    if n < readers:
        raise NoDataError(f"split {split!r} has {n} shard(s) for world size {world} x {max(1, num_workers)} "
                          f"loader worker(s) = {readers} readers; every reader needs a shard: {_advice(n, readers)}")


def env_world_size() -> int:
    """torchrun's ``WORLD_SIZE`` (1 when unset or empty), read without torch."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def refuse_at_start(shards: str | os.PathLike, num_workers: int, split: str = "train") -> None:
    """``check_readers`` from ``<shards>/index.json`` and torchrun's ``WORLD_SIZE``, without torch or
    any communication: call it first thing, so a rank that would get no shard exits at once.
    A missing or unreadable index is left to the later checks (which name it)."""
    world = env_world_size()
    try:
        index = json.loads((Path(shards) / "index.json").read_text())
    except (OSError, ValueError):
        return
    check_readers(index, split, world, num_workers)


OK, EMPTY, BROKEN = 0, 1, 2


def agree_on_data(state: int, rank: int, world: int, split: str, n_shards: int, batch_size: int,
                  device: torch.device | str = "cpu") -> None:
    """All-reduce each rank's first-batch state (``OK``/``EMPTY``/``BROKEN``); if any rank is not OK,
    raise the same one-line error on every rank. Every rank must call it (a collective with world > 1).
    """
    states = [state]
    if world > 1:
        import torch
        import torch.distributed as dist

        t = torch.zeros(world, dtype=torch.int64, device=device)
        t[rank] = state
        dist.all_reduce(t)
        states = t.tolist()
    empty = [r for r, v in enumerate(states) if v == EMPTY]
    broken = [r for r, v in enumerate(states) if v == BROKEN]
    if empty:
        raise NoDataError(f"split {split!r} has {n_shards} shard(s) for world size {world}: rank(s) "
                          f"{', '.join(map(str, empty))} get no full batch of {batch_size}; "
                          f"{_advice(n_shards, world)}")
    if broken:
        raise NoDataError(f"split {split!r}: rank(s) {', '.join(map(str, broken))} failed to read their "
                          "first batch (see that rank's error)")


def agreed_batches(batches: Iterator[dict], rank: int, world: int, split: str, n_shards: int, batch_size: int,
                   device: torch.device | str = "cpu") -> Iterator[dict]:
    """``batches``, after every rank has fetched its first batch and all agreed that each has one.

    A rank whose first read raised takes part in the agreement, then re-raises its own error.
    """
    first, error, state = None, None, OK
    try:
        first = next(batches)
    except NoDataError:
        state = EMPTY
    except StopIteration:
        state = EMPTY
    except Exception as e:  # noqa: BLE001 - reported after the agreement, so no rank waits forever
        error, state = e, BROKEN
    try:
        agree_on_data(state, rank, world, split, n_shards, batch_size, device)
    except NoDataError:
        if error is not None:
            raise error from None
        raise
    yield first
    yield from batches


def abort_distributed() -> None:
    """Leave the process group after an error without any collective (no barrier)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception as e:  # noqa: BLE001 - best effort on the error path
            log.debug("destroy_process_group after an error: %s", e)


def close_distributed() -> None:
    """Normal end of a run: wait for every rank, then leave the group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
