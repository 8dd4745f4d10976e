"""Helpers for the YuYin tests: synthetic shards and hand-made batches in the ``yuyin.data`` format."""

from __future__ import annotations

from pathlib import Path

import torch
from synthetic import make_labelled_corpus

from commercial98k.export.shards import build_shards


def synthetic_shards(root: Path, n_clips: int = 240, samples_per_shard: int = 60, seed: int = 0) -> Path:
    """Build a labelled synthetic corpus under ``root`` and its shards; returns the shards folder."""
    manifest, data_root = make_labelled_corpus(root, n_clips=n_clips, seed=seed)
    out = root / "shards"
    build_shards(manifest, out, data_root, samples_per_shard=samples_per_shard, progress=False)
    return out


def fake_batch(b: int = 6, dims: tuple[int, int, int, int] = (12, 10, 5, 8), n_cat: int = 3, seed: int = 0,
               music_ids: list[str] | None = None, max_t: int = 7, max_tags: int = 3) -> dict:
    """A random batch with ragged masks, some clips without tags and the given ``music_ids``."""
    g = torch.Generator().manual_seed(seed)
    dv, da, de, dt = dims
    tv = torch.randint(1, max_t + 1, (b,), generator=g)
    ta = torch.randint(1, max_t + 1, (b,), generator=g)
    nt = torch.randint(0, max_tags + 1, (b,), generator=g)
    nt[0] = 0
    steps = torch.arange(max_t)
    tag_ids = torch.full((b, max_tags), -1, dtype=torch.int64)
    tags_mask = torch.arange(max_tags) < nt.unsqueeze(1)
    tag_ids[tags_mask] = torch.randint(0, 20, (int(tags_mask.sum()),), generator=g)
    return {
        "frames": torch.randn(b, max_t, dv, generator=g), "frames_mask": steps < tv.unsqueeze(1),
        "audio": torch.randn(b, max_t, da, generator=g), "audio_mask": steps < ta.unsqueeze(1),
        "emotion": torch.rand(b, de, generator=g),
        "tags": torch.randn(b, max_tags, dt, generator=g) * tags_mask.unsqueeze(-1), "tags_mask": tags_mask,
        "tag_ids": tag_ids, "category": torch.randint(0, n_cat, (b,), generator=g),
        "music_id": music_ids or [f"m{i}" for i in range(b)], "clip_id": [f"c{i}" for i in range(b)],
        "meta": [{} for _ in range(b)],
    }


FAKE_INDEX = {"dims": {"frames": 12, "audio": 10, "emotion": 5, "tags": 8}, "categories": ["a", "b", "c"]}
