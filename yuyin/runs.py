"""The benchmark's building blocks: splits held in memory, the trainer it runs, cached runs and their keys.

``TrackedTrainer`` is the ``Trainer`` with three changes the tuning search and the benchmark
need: no checkpoints (a run's result is its cached JSON), a learning-rate schedule whose length
may differ from the steps run (a final run stops at the step the search chose, on the search's
schedule), and validation on in-memory batches that records a curve and the best step, stopping
after ``patience`` evaluations without improvement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from commercial98k.storage.files import atomic_write_json

from .baselines import NEURAL, method_config
from .checkpoint import isolated_rng
from .config import TrainConfig
from .emotion_input import EMOTION_INPUTS
from .evaluate import embed_batches, track_gallery, v2m_ranks
from .train import Trainer


def load_split(cfg: TrainConfig, split: str) -> list[dict[str, Any]]:
    """Every decoded sample of ``split`` in shard order (held in memory: read once, used by every run)."""
    from .data import make_dataset

    return list(make_dataset(cfg.shards, split, shuffle=False, max_frames=cfg.max_frames,
                             max_audio=cfg.max_audio, max_tags=cfg.max_tags))


def batches_of(samples: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """``samples`` collated into batches of ``size`` in order (the last one partial)."""
    from .data import collate

    return [collate(samples[i:i + size]) for i in range(0, len(samples), size)]


def memory_loader(samples: list[dict[str, Any]], batch_size: int, seed: int):
    """A ``Trainer`` loader factory over in-memory samples: epoch -> shuffled full batches."""
    from .data import collate

    if len(samples) < batch_size:
        raise ValueError(f"{len(samples)} training clip(s) for batch size {batch_size}; lower --batch-size")

    def factory(epoch: int) -> Iterator[dict[str, Any]]:
        order = list(range(len(samples)))
        random.Random(seed * 100_003 + epoch).shuffle(order)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield collate([samples[j] for j in order[i:i + batch_size]])

    return factory


def cached_run(path: Path, key: dict[str, Any], compute) -> dict[str, Any]:
    """``compute()`` once per key: a finished run's JSON is reused while its key matches."""
    doc = cached_doc(path, key)
    if doc is not None:
        return doc
    start = time.perf_counter()
    doc = {"key": key, **compute(), "seconds": round(time.perf_counter() - start, 1)}
    atomic_write_json(path, doc)
    return doc


def cached_doc(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The finished run at ``path`` if its key matches ``key`` (else None)."""
    if path.is_file():
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("key") == _plain(key):
            return doc
    return None


def _plain(x: Any) -> Any:
    return json.loads(json.dumps(x))  # tuples -> lists, as the key reads back from JSON


def data_key(base: TrainConfig, moods: dict[str, str] | None = None) -> dict[str, Any]:
    """What a run's result depends on besides its method, settings and seed: the shards and the fixed options."""
    index = json.loads((Path(base.shards) / "index.json").read_text(encoding="utf-8"))
    key = {"manifest_sha256": index.get("manifest", {}).get("sha256"),
           "splits": {k: v.get("samples") for k, v in index.get("splits", {}).items()},
           "batch_size": base.batch_size, "model": base.model, "warmup_steps": base.warmup_steps,
           "weights": dataclasses.asdict(base.weights), "max": [base.max_frames, base.max_audio, base.max_tags]}
    if moods:
        key["moods_sha256"] = hashlib.sha256(json.dumps(moods, sort_keys=True).encode()).hexdigest()[:16]
    return key


def model_method(method: str) -> str:
    """The ``baselines.NEURAL`` model a method trains (the emotion runs train full YuYin)."""
    return "yuyin" if method in EMOTION_INPUTS else method


def recipe_config(method: str, base: TrainConfig, settings: dict[str, Any], steps: int, model_dir: Path) -> TrainConfig:
    """``base`` with ``method``'s model and loss and the tuned ``settings`` (lr, weight decay, temperature, margin)."""
    cfg = method_config(model_method(method), base, model_dir)
    model = dict(cfg.model)
    if "temperature" in settings:
        model["temperature"] = settings["temperature"]
    return dataclasses.replace(cfg, lr=settings.get("lr", cfg.lr), margin=settings.get("margin", cfg.margin),
                               weight_decay=settings.get("weight_decay", cfg.weight_decay), model=model,
                               steps=steps, progress=False, checkpoint_every=max(1, steps), log_every=10)


def is_neural(method: str) -> bool:
    return model_method(method) in NEURAL


def val_scores(video: np.ndarray, music: np.ndarray, music_ids: list[str]) -> dict[str, float]:
    """Validation v2m R@1, R@10, median and mean rank over the split's tracks."""
    gallery, _, owner = track_gallery(np.asarray(music, np.float32), music_ids)
    r = v2m_ranks(np.asarray(video, np.float32), gallery, owner)
    return {"R@1": float((r <= 1).mean()), "R@10": float((r <= 10).mean()), "MedR": float(np.median(r)),
            "MeanR": float(r.mean())}


def selection_score(s: dict[str, float]) -> tuple[float, float]:
    """Validation R@10, ties broken by the lower mean rank (a small validation gallery saturates R@10)."""
    return (s["R@10"], -s["MeanR"])


class _Converged(Exception):
    """``patience`` validations in a row without a better score: the run stops."""


class TrackedTrainer(Trainer):
    """``Trainer`` without checkpoints, on a schedule of ``schedule_steps``, validating on in-memory ``val``."""

    def __init__(self, cfg: TrainConfig, loader_factory, schedule_steps: int, val: list[dict] | None = None,
                 patience: int = 0):
        self.schedule_steps = schedule_steps  # read by _lr_factor inside Trainer.__init__
        self.val_batches = batches_of(val, 64) if val else []
        self.val_ids = [s["meta"].get("music_id") for s in val or []]
        self.patience = patience
        self.curve: list[dict[str, float]] = []
        self.losses: list[list[float]] = []
        self.best: dict[str, float] | None = None
        super().__init__(cfg, loader_factory=loader_factory)

    def _lr_factor(self, step: int) -> float:  # Trainer's warm-up and cosine, over schedule_steps
        warm = self.cfg.warmup_steps
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, self.schedule_steps - warm)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def save(self) -> None:
        return None

    def _log(self, parts: dict[str, float], rate: float, elapsed: float) -> None:
        self.losses.append([self.step, round(float(parts["loss"]), 5)])

    def validate(self) -> None:
        """Score the validation split into ``curve`` and ``best`` (returns None: ``fit`` prints nothing)."""
        if not self.val_batches:
            return
        with isolated_rng():
            emb = embed_batches(self.model, self.val_batches, self.device, progress=False)
        row = {"step": self.step, **val_scores(emb["video"], emb["music"], self.val_ids)}
        self.curve.append(row)
        if self.best is None or selection_score(row) > selection_score(self.best):
            self.best = row
        elif self.patience and len(self.curve) - self.curve.index(self.best) > self.patience:
            raise _Converged

    def run(self) -> None:
        """Train to ``cfg.steps``, or until validation stops improving."""
        with contextlib.suppress(_Converged):
            self.fit()
        self.close()
