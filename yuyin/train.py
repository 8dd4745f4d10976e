"""The YuYin trainer: shards in, checkpoints and a CSV metrics log out; CPU/CUDA, AMP, DDP, exact resume.

Run on one process (``yuyin train``) or several (``torchrun --nproc_per_node N -m yuyin.cli train``):
the process group comes from torchrun's environment (gloo on CPU, nccl on CUDA). Training is
counted in optimizer steps; epochs restart the loader with seed ``seed + epoch``, so a checkpoint's
(epoch, batch-in-epoch) position plus the RNG states make a resumed run match a straight one.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from commercial98k.storage.files import atomic_path, atomic_write_json

from .checkpoint import (
    find_checkpoint,
    isolated_rng,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import TrainConfig, load_config
from .ddp_guard import (
    NoDataError,
    abort_distributed,
    agreed_batches,
    check_readers,
    close_distributed,
    shard_count,
)
from .losses import BatchGather, yuyin_loss
from .model import YuYin, YuYinConfig, count_parameters

__all__ = ["LoaderFactory", "TrainConfig", "Trainer", "load_config", "train"]

log = logging.getLogger(__name__)

METRIC_FIELDS = ["step", "epoch", "lr", "loss", "video_music", "video_tag", "music_tag", "category",
                 "temperature", "wfm_audio_weight", "samples_per_s", "elapsed_s"]
VAL_FIELDS = ["step", "v2m_R@1", "v2m_R@5", "v2m_R@10", "v2m_MedR", "m2v_R@10", "m2v_MedR", "tracks"]
LoaderFactory = Callable[[int], Iterable[dict]]


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join torchrun's process group if ``WORLD_SIZE`` > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``cpu``/``cuda``/``cuda:N``; one clear error when CUDA is asked for and missing."""
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
        dev = torch.device(name if ":" in name else f"cuda:{local_rank}")
        torch.cuda.set_device(dev)
        return dev
    if name != "cpu":
        raise ValueError(f"unknown device {name!r}; use cpu, cuda or cuda:N")
    return torch.device("cpu")


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` on ``device`` (None: full precision)."""
    if mode == "off" or (mode == "auto" and device.type == "cpu"):
        return None
    if mode == "fp16" and device.type == "cpu":
        raise ValueError("fp16 autocast is CUDA-only; use --amp bf16 or off on CPU")
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def passthrough(batch: dict[str, Any]) -> dict[str, Any]:
    """DataLoader ``collate_fn`` for already-collated batches: skips torch's recursive ``default_convert``
    (about a sixth of the loader's time)."""
    return batch


def shard_loader_factory(cfg: TrainConfig) -> LoaderFactory:
    """Epoch -> training batches from ``cfg.shards`` (seed ``cfg.seed + epoch``).

    ``yuyin.data`` splits the shards by rank (``split_by_node``), so ranks read disjoint data;
    training counts steps, not epochs, so ranks with fewer batches just start their next epoch sooner.
    """
    from .data import make_loader

    def batches(epoch: int) -> Iterable[dict]:
        return make_loader(cfg.shards, "train", cfg.batch_size, num_workers=cfg.num_workers, shuffle=True,
                           seed=cfg.seed + epoch, max_frames=cfg.max_frames, max_audio=cfg.max_audio,
                           max_tags=cfg.max_tags, drop_last=True, collate_fn=passthrough)

    return batches


class Trainer:
    """Builds the model from the shards' index and trains it; ``fit()`` returns a summary dict."""

    def __init__(self, cfg: TrainConfig, index: dict[str, Any] | None = None,
                 loader_factory: LoaderFactory | None = None):
        self.cfg = cfg
        self.dist = init_distributed(cfg.device)
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        self.amp = amp_dtype(cfg.amp, self.device)
        if self.device.type == "cpu" and cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if index is None:
            from .data import load_index
            index = load_index(cfg.shards)
        self.index = index
        if loader_factory is None:  # the shard loader: refuse readers that would get no shard
            check_readers(index, "train", self.dist.world, cfg.num_workers)
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        self.model_cfg = YuYinConfig.from_index(index, **cfg.model)
        self.model = YuYin(self.model_cfg).to(self.device)
        w, mc = cfg.weights, self.model_cfg
        unused = (mc.use_tags and not (w.video_tag or w.music_tag)) or (mc.use_category and not w.category)
        self.ddp = DDP(self.model, find_unused_parameters=unused) if self.dist.world > 1 else None
        self.gather = BatchGather(distributed=cfg.global_negatives)
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.loader_factory = loader_factory or shard_loader_factory(cfg)
        self.step = self.epoch = self.batch_in_epoch = 0
        self.seen: list[str] = []
        self.ckpt_dir = Path(cfg.checkpoint_dir)
        torch.manual_seed(cfg.seed + 1000 * self.dist.rank)  # per-rank dropout streams

    def _lr_factor(self, step: int) -> float:
        warm = self.cfg.warmup_steps
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, self.cfg.steps - warm)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything to resume exactly; each rank's RNG states and data position are gathered (collective)."""
        mine = {"rng": rng_state(), "position": [self.epoch, self.batch_in_epoch]}
        ranks = [mine]
        if self.dist.world > 1:
            ranks = [None] * self.dist.world
            dist.all_gather_object(ranks, mine)
        rngs = [r["rng"] for r in ranks]
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "positions": [r["position"] for r in ranks],
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": rngs,
                "world": self.dist.world, "model_config": self.model_cfg.to_dict(),
                "train_config": _jsonable(self.cfg.to_dict()),
                "index": {k: self.index.get(k) for k in ("categories", "dims", "models", "emotion_classes")}}

    def save(self) -> Path | None:
        state = self.state()  # collective in DDP: every rank takes part
        if not self.dist.main:
            return None
        return save_checkpoint(state, self.ckpt_dir, self.step, self.cfg.keep_checkpoints)

    def resume(self, path: str | os.PathLike) -> None:
        """Restore everything from a checkpoint (file or folder); training continues from its step."""
        state = load_checkpoint(find_checkpoint(path), map_location=self.device)
        if state["model_config"] != self.model_cfg.to_dict():
            raise ValueError(f"{path}: checkpoint was trained with another model config; start a new --checkpoint-dir")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        rngs = state["rng"]
        if len(rngs) == self.dist.world:  # same world: every rank continues its own streams and shards
            set_rng_state(rngs[self.dist.rank])
            self.epoch, self.batch_in_epoch = state["positions"][self.dist.rank]
        else:
            log.warning("checkpoint made with %d processes, resuming with %d: RNG streams reseeded",
                        len(rngs), self.dist.world)
            torch.manual_seed(self.cfg.seed + self.step + 1000 * self.dist.rank)
        if self.dist.main:
            _truncate_metrics(self.ckpt_dir / "metrics.csv", self.step, METRIC_FIELDS)
            _truncate_metrics(self.ckpt_dir / "val_metrics.csv", self.step, VAL_FIELDS)

    # -- training ----------------------------------------------------------------------------
    def _batches(self) -> Iterator[dict]:
        """Endless batches from the current position, advancing epochs; never touches the global RNG."""
        while True:
            with isolated_rng():
                it = iter(self.loader_factory(self.epoch))
                got = 0
                for _ in range(self.batch_in_epoch):
                    next(it)
                    got += 1
            while True:
                with isolated_rng():
                    batch = next(it, None)
                if batch is None:
                    break
                got += 1
                yield batch
            if got == 0:
                raise NoDataError(f"rank {self.dist.rank}: the training split yields no full batch of "
                                  f"{self.cfg.batch_size}; lower --batch-size or add clips")
            self.epoch += 1
            self.batch_in_epoch = 0

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        self.model.train()
        batch = to_device(batch, self.device)
        net = self.ddp or self.model
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            out = net(batch)
            loss, parts = yuyin_loss(out, batch, self.cfg.weights, self.cfg.loss, self.cfg.margin, self.gather)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.model.clamp_logit_scale()  # in place, after the step (open_clip style)
        self.scheduler.step()
        parts["loss"] = float(loss.detach())
        if out["wfm_weights"] is not None:
            parts["wfm_audio_weight"] = float(out["wfm_weights"][:, 0].detach().float().mean())
        return parts

    def fit(self, resume: str | os.PathLike | None = None) -> dict[str, Any]:
        """Train to ``cfg.steps`` (from ``resume`` if given); checkpoint every N steps and at the end."""
        if resume:
            self.resume(resume)
        cfg, main = self.cfg, self.dist.main
        if main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.ckpt_dir / "config.json", {"train": _jsonable(cfg.to_dict()),
                                                               "model": self.model_cfg.to_dict()})
            log.info("YuYin: %d parameters, device %s, amp %s, world %d", count_parameters(self.model),
                     self.device, self.amp, self.dist.world)
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", disable=not (main and cfg.progress))
        start, start_step, samples = time.perf_counter(), self.step, 0
        last: dict[str, float] = {}
        batches = self._batches()
        if self.step < cfg.steps:  # ranks agree that each has data before any training collective
            batches = agreed_batches(batches, self.dist.rank, self.dist.world, "train",
                                     shard_count(self.index, "train"), cfg.batch_size, self.device)
        while self.step < cfg.steps:
            batch = next(batches)
            self.batch_in_epoch += 1
            if cfg.record_seen:
                self.seen.extend(batch["clip_id"])
            last = self.train_step(batch)
            self.step += 1
            samples += len(batch["clip_id"]) * self.dist.world
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                last = self._reduce(last)
                rate = samples / max(1e-9, time.perf_counter() - start)
                bar.set_postfix(loss=f"{last['loss']:.3f}", sps=f"{rate:.0f}")
                if main:
                    self._log(last, rate, time.perf_counter() - start)
            if cfg.eval_every and (self.step % cfg.eval_every == 0 or self.step == cfg.steps):
                val = self.validate()
                if val is not None:
                    bar.write(f"step {self.step}: {cfg.eval_split} v2m R@1 {val['v2m_R@1']:.3f} "
                              f"R@10 {val['v2m_R@10']:.3f} MedR {val['v2m_MedR']:.1f}")
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save()
        bar.close()
        elapsed = time.perf_counter() - start
        summary = {"steps": self.step, "epochs": self.epoch, "last": last, "elapsed_s": elapsed,
                   "samples_per_s": samples / max(1e-9, elapsed) if self.step > start_step else 0.0,
                   "checkpoint": str(self.ckpt_dir / "last.pt"), "world": self.dist.world}
        if cfg.record_seen:
            checksum = sum(float(p.detach().double().sum()) for p in self.model.parameters())
            atomic_write_json(self.ckpt_dir / f"seen-rank{self.dist.rank}.json",
                              {"clip_ids": self.seen, "param_checksum": checksum})
        return summary

    def validate(self) -> dict[str, float] | None:
        """Retrieval metrics on ``cfg.eval_split`` (each rank embeds its shards; rank 0 scores and logs).

        Runs without touching the RNG streams, so validation does not change the training run.
        """
        from .data import make_loader
        from .evaluate import embed_batches, retrieval_metrics

        cfg = self.cfg
        with isolated_rng(), torch.no_grad():
            loader = make_loader(cfg.shards, cfg.eval_split, 64, shuffle=False, max_frames=cfg.max_frames,
                                 max_audio=cfg.max_audio, max_tags=cfg.max_tags)
            try:
                emb = embed_batches(self.model, loader, self.device, progress=False)
            except ValueError:  # this rank's share of the split is empty
                emb = {"video": None, "music": None, "music_id": []}
            parts = [emb]
            if self.dist.world > 1:
                parts = [None] * self.dist.world
                dist.all_gather_object(parts, emb)
        if not self.dist.main:
            return None
        parts = [p for p in parts if p["video"] is not None]
        if not parts:
            log.warning("split %r has no clips to validate on", cfg.eval_split)
            return None
        rep = retrieval_metrics(np.concatenate([p["video"] for p in parts]),
                                np.concatenate([p["music"] for p in parts]), [m for p in parts for m in p["music_id"]])
        row = {"step": self.step, **{f"v2m_R@{k}": rep["v2m"][f"R@{k}"] for k in (1, 5, 10)},
               "v2m_MedR": rep["v2m"]["median_rank"], "m2v_R@10": rep["m2v"]["R@10"],
               "m2v_MedR": rep["m2v"]["median_rank"], "tracks": rep["tracks"]}
        _append_csv(self.ckpt_dir / "val_metrics.csv", row, VAL_FIELDS)
        return row

    def _reduce(self, parts: dict[str, float]) -> dict[str, float]:
        """Average logged values over ranks (all ranks call this at the same steps)."""
        if self.dist.world == 1:
            return parts
        keys = sorted(parts)
        t = torch.tensor([parts[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return {k: float(v) / self.dist.world for k, v in zip(keys, t.tolist(), strict=True)}

    def _log(self, parts: dict[str, float], rate: float, elapsed: float) -> None:
        row = {**parts, "step": self.step, "epoch": self.epoch, "lr": self.scheduler.get_last_lr()[0],
               "temperature": float(1.0 / self.model.scale().detach()), "samples_per_s": rate, "elapsed_s": elapsed}
        _append_csv(self.ckpt_dir / "metrics.csv", row, METRIC_FIELDS)

    def close(self) -> None:
        """Normal end: barrier and leave the process group (after an error use ``abort_distributed``)."""
        if self.dist.world > 1:
            close_distributed()


def _append_csv(path: Path, row: dict[str, Any], fields: list[str]) -> None:
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _truncate_metrics(path: Path, step: int, fields: list[str]) -> None:
    """Drop metric rows written after ``step`` (a run killed after its last checkpoint)."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def train(cfg: TrainConfig, resume: str | os.PathLike | None = None, index: dict[str, Any] | None = None,
          loader_factory: LoaderFactory | None = None) -> dict[str, Any]:
    """Train one model to ``cfg.steps`` and return the summary (``Trainer.fit``)."""
    try:
        trainer = Trainer(cfg, index=index, loader_factory=loader_factory)
        summary = trainer.fit(resume)
    except BaseException:
        abort_distributed()  # no collective after an error: this rank exits, torchrun stops the others
        raise
    trainer.close()
    return summary
