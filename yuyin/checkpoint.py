"""Checkpoints that load with ``torch.load(weights_only=True)``: tensors and primitive containers only.

A checkpoint holds the model, optimizer, scheduler and AMP-scaler states, the step and data
position, every rank's RNG states, the model and training configs and the shards' class list,
so training resumes exactly and ``evaluate``/``recommend`` rebuild the model from the file alone.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from commercial98k.errors import C98kError
from commercial98k.storage.files import atomic_path

from .model import YuYin, YuYinConfig

FORMAT = "yuyin-checkpoint"
VERSION = 1
LAST = "last.pt"
_STEP_FILE = re.compile(r"step-(\d{8})\.pt$")


class CheckpointError(C98kError, ValueError):
    """A checkpoint that is missing, corrupt or not a YuYin checkpoint."""


def rng_state() -> dict[str, Any]:
    """This process's torch / numpy / python RNG states as tensors and primitives."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def isolated_rng() -> Iterator[None]:
    """Run a block (e.g. data loading) without touching the global torch/numpy/python RNG streams."""
    saved = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, tuple | list) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def save_checkpoint(state: dict[str, Any], directory: str | os.PathLike, step: int, keep: int = 3) -> Path:
    """Write ``step-XXXXXXXX.pt`` and ``last.pt`` atomically; keep the newest ``keep`` step files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, **state}
    path = directory / f"step-{step:08d}.pt"
    for target in (path, directory / LAST):
        with atomic_path(target, suffix=".pt.tmp") as tmp:
            torch.save(state, tmp)
    old = sorted(p for p in directory.glob("step-*.pt") if _STEP_FILE.search(p.name))
    for p in old[: max(0, len(old) - keep)]:
        p.unlink(missing_ok=True)
    return path


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or ``last.pt`` inside a checkpoint folder."""
    p = Path(path)
    if p.is_dir():
        p = p / LAST
    if not p.is_file():
        raise CheckpointError(f"{p}: no checkpoint there (train first, or pass a .pt file)")
    return p


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and check its format."""
    p = find_checkpoint(path)
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{p}: not a loadable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a YuYin checkpoint")
    return state


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[YuYin, dict[str, Any]]:
    """Rebuild the model of a checkpoint in eval mode; returns ``(model, checkpoint_dict)``."""
    state = load_checkpoint(path, map_location=device)
    model = YuYin(YuYinConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return model, state
