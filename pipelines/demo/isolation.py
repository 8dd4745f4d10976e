"""Run a demo step in this process as a new ``python -m`` process would see it.

The demo's steps used to be subprocesses of the CLIs, which kept each stage's global state to
itself. ``fresh_state`` keeps that: before the step the global RNGs are seeded (``random`` and
numpy with the demo's seed, torch with the seed a new process starts with); after it the
environment, the working folder, every thread limit (``threads.restored_thread_limits``),
torch's grad mode, the root logger and the RNG states are put back, a Ray the step started is
shut down and progress bars it left open are closed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
from collections.abc import Iterator

import numpy as np

from commercial98k.threads import restored_thread_limits

#: ``torch.initial_seed()`` of a process that never seeded torch.
TORCH_DEFAULT_SEED = 67280421310721


def _open_bars() -> set:
    from tqdm import tqdm

    return set(getattr(tqdm, "_instances", ()))


@contextlib.contextmanager
def _rng_state(seed: int) -> Iterator[None]:
    torch = sys.modules.get("torch")
    saved = (random.getstate(), np.random.get_state(),
             torch.get_rng_state() if torch is not None else None,
             torch.is_grad_enabled() if torch is not None else None)
    random.seed(seed)
    np.random.seed(seed)
    if torch is not None:
        torch.manual_seed(TORCH_DEFAULT_SEED)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch = sys.modules.get("torch")
        if torch is not None and saved[2] is not None:
            torch.set_rng_state(saved[2])
            torch.set_grad_enabled(saved[3])


@contextlib.contextmanager
def fresh_state(seed: int) -> Iterator[None]:
    """Seed the global RNGs for a step, then undo whatever global state the step changed."""
    env, cwd = dict(os.environ), os.getcwd()
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    bars = _open_bars()
    ray = sys.modules.get("ray")
    ray_before = ray is not None and ray.is_initialized()
    try:
        with restored_thread_limits(), _rng_state(seed):
            yield
    finally:
        for bar in _open_bars() - bars:
            bar.close()
        ray = sys.modules.get("ray")
        if ray is not None and not ray_before and ray.is_initialized():
            ray.shutdown()
        root.setLevel(level)
        root.handlers[:] = handlers
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
