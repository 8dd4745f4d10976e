"""The demo's in-process steps: one-line failures, and global state put back after each step."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from commercial98k.engine import threads
from pipelines.demo.config import DemoConfig
from pipelines.demo.isolation import fresh_state
from pipelines.demo.runner import Step, StepFailed, read_marker, run_steps


def test_a_failing_step_raises_stepfailed_with_one_line_and_leaves_no_marker(tmp_path: Path) -> None:
    def boom(cfg: DemoConfig) -> None:
        raise ValueError("the training split has 1 clip\nsecond line")

    cfg = DemoConfig(work_dir=tmp_path)
    with pytest.raises(StepFailed) as err:
        run_steps([Step("train", "yuyin train", boom, lambda c: [c.path("x")], lambda c: {})], cfg)
    assert str(err.value) == "step 'train' failed: ValueError: the training split has 1 clip"
    assert read_marker(cfg, "train") is None


def test_fresh_state_seeds_each_step_and_restores_threads_env_and_cwd(tmp_path: Path) -> None:
    before = (torch.get_num_threads(), os.getcwd(), os.environ.get("OMP_NUM_THREADS"), threads.worker_threads())
    draws = []
    for _ in range(2):
        with fresh_state(seed=3):
            threads.set_worker_threads(1)  # what the split stage does in its process
            os.chdir(tmp_path)
            os.environ["C98K_STEP_VAR"] = "1"
            draws.append((random.random(), float(np.random.rand()), float(torch.rand(1))))
            assert torch.get_num_threads() == 1
    assert draws[0] == draws[1]  # the same seed before every step
    after = (torch.get_num_threads(), os.getcwd(), os.environ.get("OMP_NUM_THREADS"), threads.worker_threads())
    assert after == before and "C98K_STEP_VAR" not in os.environ
