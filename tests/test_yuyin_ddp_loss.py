"""DDP with global negatives: two gloo ranks give the gradients of one process on the whole batch."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP
from yuyin_fixtures import FAKE_INDEX, fake_batch

from yuyin.losses import BatchGather, LossWeights, yuyin_loss
from yuyin.model import YuYin, YuYinConfig

WORLD = 2
# Tracks reused across the two ranks' halves: cross-rank positives must not become negatives.
MUSIC_IDS = ["m0", "m1", "m0", "m2", "m1", "m3", "m4", "m2"]
WEIGHTS = LossWeights(video_music=1.0, video_tag=0.5, music_tag=0.5, category=0.2)


def _batch() -> dict:
    """8 clips, every one with at least one tag (so each rank averages over equally many rows)."""
    batch = fake_batch(b=len(MUSIC_IDS), music_ids=MUSIC_IDS, seed=3)
    g = torch.Generator().manual_seed(4)
    batch["tags_mask"][:, 0] = True
    batch["tag_ids"][:, 0] = torch.where(batch["tag_ids"][:, 0] < 0, torch.tensor(7), batch["tag_ids"][:, 0])
    batch["tags"][:, 0] = torch.randn(len(MUSIC_IDS), batch["tags"].shape[-1], generator=g)
    return batch


def _model() -> YuYin:
    torch.manual_seed(0)
    return YuYin(YuYinConfig.from_index(FAKE_INDEX, hidden=16, embed_dim=8, heads=2, dropout=0.0)).eval()


def _half(batch: dict, rank: int) -> dict:
    n = len(batch["clip_id"]) // WORLD
    rows = slice(rank * n, (rank + 1) * n)
    return {k: v[rows] for k, v in batch.items()}


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _rank(rank: int, init_file: str, out_dir: str, global_negatives: bool) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        model = _model()
        ddp = DDP(model, find_unused_parameters=True)
        local = _half(_batch(), rank)
        loss, _ = yuyin_loss(ddp(local), local, WEIGHTS, gather=BatchGather(distributed=global_negatives))
        loss.backward()
        torch.save(_grads(model), Path(out_dir) / f"grads{rank}.pt")
    finally:
        dist.destroy_process_group()


def _ddp_grads(tmp_path: Path, global_negatives: bool) -> list[dict[str, torch.Tensor]]:
    mp.spawn(_rank, args=(str(tmp_path / "init"), str(tmp_path), global_negatives), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"grads{r}.pt", weights_only=True) for r in range(WORLD)]


def _whole_batch_grads() -> dict[str, torch.Tensor]:
    """Gradients of one process on the whole batch: the reference."""
    model = _model()
    batch = _batch()
    loss, _ = yuyin_loss(model(batch), batch, WEIGHTS)
    loss.backward()
    return _grads(model)


def test_global_negatives_give_the_whole_batch_gradient(tmp_path):
    full = _whole_batch_grads()
    ranks = _ddp_grads(tmp_path, global_negatives=True)
    assert ranks[0].keys() == full.keys()
    for name, g in full.items():
        assert torch.allclose(ranks[0][name], ranks[1][name]), name  # DDP synchronised
        assert torch.allclose(ranks[0][name], g, atol=1e-5, rtol=1e-4), name


def test_local_negatives_differ_from_the_whole_batch(tmp_path):
    """The check above can fail: per-rank negatives (the old behaviour) give other gradients."""
    full = _whole_batch_grads()
    local = _ddp_grads(tmp_path, global_negatives=False)[0]
    assert any(not torch.allclose(local[n], g, atol=1e-5, rtol=1e-4) for n, g in full.items())
