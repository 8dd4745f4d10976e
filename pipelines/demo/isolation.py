"""Run a demo step in this process as a new ``python -m`` process would see it.

The demo's steps used to be subprocesses of the CLIs, which kept each stage's global state to
itself. ``fresh_state`` keeps that: before the step the global RNGs (``random``, numpy, torch)
are seeded with the demo's seed (a new process would have drawn fresh ones; the stages seed what
they use themselves, as ``yuyin train --seed`` does); after it the
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

from commercial98k.engine.threads import restored_thread_limits


def _open_bars() -> set:
    from tqdm import tqdm

    return set(getattr(tqdm, "_instances", ()))


@contextlib.contextmanager
def _rng_state(seed: int) -> Iterator[None]:
    import torch  # seeded now, not at whatever first import a step makes

    from yuyin.checkpoint import isolated_rng

    grad = torch.is_grad_enabled()
    with isolated_rng():
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            torch.set_grad_enabled(grad)


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
        with _rng_state(seed), restored_thread_limits():
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
