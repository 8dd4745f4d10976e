"""Training options: ``TrainConfig`` and ``load_config`` (a JSON/TOML file, then overrides such as CLI flags)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AMP_MODES = ("off", "auto", "bf16", "fp16")


@dataclass
class LossWeights:
    """Weight of each task; 0 switches a task off."""

    video_music: float = 1.0
    video_tag: float = 0.5
    music_tag: float = 0.5
    category: float = 0.2


@dataclass
class TrainConfig:
    """Everything a run needs; a JSON/TOML config file and CLI flags fill it (``load_config``)."""

    shards: str = "shards"
    steps: int = 400
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    amp: str = "auto"
    num_workers: int = 0
    threads: int = 1  # torch intra-op threads on CPU; 0 = torch's default (1 is fastest for small models)
    max_frames: int = 64
    max_audio: int = 64
    max_tags: int = 16
    checkpoint_dir: str = "runs/yuyin"
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    log_every: int = 10
    eval_every: int = 0  # validation Recall@K every N steps into val_metrics.csv (0: never)
    eval_split: str = "val"
    loss: str = "infonce"
    margin: float = 0.2
    global_negatives: bool = True  # DDP: contrast against every rank's batch (all-gather), not only this rank's
    weights: LossWeights = field(default_factory=LossWeights)
    model: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    record_seen: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.weights, dict):
            self.weights = LossWeights(**self.weights)
        checks = [(self.steps >= 1, "steps must be >= 1"), (self.batch_size >= 2, "batch_size must be >= 2"),
                  (self.lr > 0, "lr must be > 0"), (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
                  (self.threads >= 0, "threads must be >= 0"), (self.eval_every >= 0, "eval_every must be >= 0"),
                  (self.amp in AMP_MODES, f"amp must be one of {', '.join(AMP_MODES)}"),
                  (self.loss in ("infonce", "triplet"), "loss must be infonce or triplet"),
                  (min(dataclasses.astuple(self.weights)) >= 0, "loss weights must be >= 0")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"bad training option: {message}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | os.PathLike | None = None, **overrides: Any) -> TrainConfig:
    """A ``TrainConfig`` from a JSON or TOML file, then ``overrides`` (None values are ignored).

    Nested tables ``weights`` and ``model`` are merged key by key, so ``--w-category 0`` keeps
    the file's other weights.
    """
    doc: dict[str, Any] = {}
    if path:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
            doc = _parse_toml(text) if p.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as e:
            raise ValueError(f"{p}: cannot read config ({e})") from e
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("weights", "model") and isinstance(value, dict):
            doc[key] = {**doc.get(key, {}), **{k: v for k, v in value.items() if v is not None}}
        else:
            doc[key] = value
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ValueError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    weight_keys = {f.name for f in dataclasses.fields(LossWeights)}
    bad = sorted(set(doc.get("weights", {})) - weight_keys)
    if bad:
        raise ValueError(f"unknown loss weight(s) {', '.join(bad)}; known: {', '.join(sorted(weight_keys))}")
    return TrainConfig(**doc)


def _parse_toml(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise ValueError("TOML configs need Python 3.11+; use a JSON config") from None
    return tomllib.loads(text)
