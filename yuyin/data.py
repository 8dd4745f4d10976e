"""Read Commercial-98K WebDataset shards (``c98k build-shards``) into padded training batches.

Sharding across processes: the shard list of a split is cut first by node (``wds.split_by_node``:
``torch.distributed`` rank, or the ``RANK``/``WORLD_SIZE`` environment variables), then by
DataLoader worker (``wds.split_by_worker``). Every (rank, worker) therefore reads a disjoint
set of whole shards, and their union is the split. For every process to get data, a split
needs at least ``world_size * num_workers`` shards (``make_loader`` warns otherwise); build
shards with a smaller ``--samples-per-shard`` if needed.

Each shard is checked against index.json (size, sha256) when a dataset is made, then read by
``shard_reader`` (memory-mapped, members decoded as views); samples are decoded only when their
batch is kept, and padded into one array per field (one copy per sample, cast by torch).

Batches (``collate``) are dicts::

    frames  float32 [B, Tv, Dv]   frames_mask bool [B, Tv]  (True = valid step)
    audio   float32 [B, Ta, Da]   audio_mask  bool [B, Ta]
    emotion float32 [B, E]        (valence, arousal, emotion-class probabilities)
    tags    float32 [B, N, Dt]    tags_mask   bool [B, N]   tag_ids int64 [B, N] (-1: pad or out of vocabulary)
    category int64 [B]            music_id, clip_id: list[str]    meta: list[dict] (the sample's json)
    category_source list[str]     where ``category`` came from: crawl, corrected or predicted

``category`` is whatever category the shard carries (``build-shards --category-source``); shards
built before the source was recorded hold crawl categories.

Sequences are padded to the longest in the batch (at least 1 step, so a batch never has an
empty axis); longer than ``max_*`` they are subsampled at evenly spaced steps.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader

from .shard_reader import ShardError, npy, shard_samples

log = logging.getLogger(__name__)

ARRAY_MEMBERS = ("frames", "audio", "emotion", "tags", "tag_ids")


def load_index(shards_dir: str | os.PathLike) -> dict[str, Any]:
    """Read ``<shards_dir>/index.json`` (written by ``c98k build-shards``)."""
    path = Path(shards_dir) / "index.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no shard index (run `c98k build-shards --out {shards_dir}` first)")
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise ShardError(f"{path}: not a readable shard index ({e}); run `c98k build-shards --out {shards_dir}` "
                         "again") from e
    if not isinstance(index, dict) or not isinstance(index.get("splits"), dict):
        raise ShardError(f"{path}: not a shard index (no 'splits'); run `c98k build-shards --out {shards_dir}` again")
    return index


def shard_urls(shards_dir: str | os.PathLike, split: str, index: dict | None = None, verify: bool = True) -> list[str]:
    """Absolute paths of a split's shards, in index order; each checked against index.json (``verify_shard``)."""
    index = index or load_index(shards_dir)
    if split not in index["splits"]:
        raise KeyError(f"unknown split {split!r}; the index has {', '.join(index['splits'])}")
    entries = index["splits"][split]["shards"]
    if verify:
        for entry in entries:
            verify_shard(Path(shards_dir), entry)
    return [str(Path(shards_dir) / s["path"]) for s in entries]


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 checked in this process


def verify_shard(shards_dir: Path, entry: dict[str, Any]) -> None:
    """Raise ``ShardError`` naming the shard when its size or sha256 differs from index.json.

    A file is hashed once per process (re-checked when its size or mtime changes).
    """
    from commercial98k.storage.files import sha256_file

    path = shards_dir / entry["path"]
    redo = f"run `c98k build-shards --out {shards_dir}` again"
    if not path.is_file():
        raise ShardError(f"{path}: shard missing; {redo}")
    st = path.stat()
    if entry.get("bytes") is not None and st.st_size != entry["bytes"]:
        raise ShardError(f"{path}: shard is {st.st_size} bytes, index.json says {entry['bytes']} "
                         f"(truncated or changed); {redo}")
    key = (str(path), st.st_size, st.st_mtime_ns)
    if entry.get("sha256") and _VERIFIED.get(key) != entry["sha256"]:
        if sha256_file(path) != entry["sha256"]:
            raise ShardError(f"{path}: shard sha256 differs from index.json (corrupt or changed); {redo}")
        _VERIFIED[key] = entry["sha256"]


def subsample(arr: np.ndarray, max_len: int | None) -> np.ndarray:
    """Keep at most ``max_len`` rows, evenly spaced over the sequence (all rows if shorter)."""
    if max_len is None or len(arr) <= max_len:
        return arr
    idx = np.linspace(0, len(arr) - 1, max_len).round().astype(np.int64)
    return arr[idx]


class DecodeSample:
    """Raw tar members -> numpy arrays + meta, sequences cut to the ``max_*`` lengths (picklable)."""

    def __init__(self, max_frames: int | None = None, max_audio: int | None = None,
                 max_tags: int | None = None, with_media: bool = False):
        self.max_frames, self.max_audio, self.max_tags = max_frames, max_audio, max_tags
        self.with_media = with_media

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        meta = json.loads(bytes(raw["json"]))
        if not meta.get("music_id"):
            raise ShardError(f"{raw.get('__url__', 'a shard')}: clip {raw['__key__']} has no music_id (every track "
                             "needs one); run `c98k split` then `c98k build-shards` again")
        out: dict[str, Any] = {"clip_id": raw["__key__"], "meta": meta}
        for name in ARRAY_MEMBERS:
            out[name] = npy(raw[f"{name}.npy"])
        out["frames"] = subsample(out["frames"], self.max_frames)
        out["audio"] = subsample(out["audio"], self.max_audio)
        if self.max_tags is not None:
            out["tags"], out["tag_ids"] = out["tags"][: self.max_tags], out["tag_ids"][: self.max_tags]
        if self.with_media:
            out["mp4"], out["wav"] = (None if raw.get(k) is None else bytes(raw[k]) for k in ("mp4", "wav"))
        return out


def _pad(seqs: list[np.ndarray], dim: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``[T_i, dim]`` arrays into ``[B, max T, dim]`` plus a validity mask.

    The batch array is allocated once, in the samples' own dtype (float16 in shards), and each
    sequence is copied straight into its rows; torch then casts the whole batch at once
    (numpy's float16 -> float32 cast is many times slower than torch's).
    """
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    length = max(1, int(lengths.max(initial=0)))
    mask = torch.from_numpy(np.arange(length)[None, :] < lengths[:, None])
    out = np.zeros((len(seqs), length, dim), dtype=np.result_type(*seqs))
    for i, (s, n) in enumerate(zip(seqs, lengths.tolist(), strict=True)):
        if n:
            out[i, :n] = s.reshape(n, dim)
    return torch.from_numpy(out).to(dtype), mask


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad decoded samples into one batch dict (see the module docstring)."""
    if not samples:
        raise ValueError("collate: empty batch")
    frames, frames_mask = _pad([s["frames"] for s in samples], samples[0]["frames"].shape[1], torch.float32)
    audio, audio_mask = _pad([s["audio"] for s in samples], samples[0]["audio"].shape[1], torch.float32)
    tags, tags_mask = _pad([s["tags"] for s in samples], samples[0]["tags"].shape[1], torch.float32)
    tag_ids = np.full(tuple(tags_mask.shape), -1, dtype=np.int64)
    for i, s in enumerate(samples):
        tag_ids[i, : len(s["tag_ids"])] = s["tag_ids"]
    batch: dict[str, Any] = {
        "frames": frames, "frames_mask": frames_mask,
        "audio": audio, "audio_mask": audio_mask,
        "emotion": torch.from_numpy(np.stack([s["emotion"] for s in samples]).astype(np.float32)),
        "tags": tags, "tags_mask": tags_mask, "tag_ids": torch.from_numpy(tag_ids),
        "category": torch.tensor([int(s["meta"]["category_id"]) for s in samples], dtype=torch.int64),
        "music_id": [s["meta"].get("music_id") for s in samples],
        "clip_id": [s["clip_id"] for s in samples],
        "meta": [s["meta"] for s in samples],
        "category_source": [s["meta"].get("category_source") or "crawl" for s in samples],
    }
    if "mp4" in samples[0]:
        batch["mp4"] = [s.get("mp4") for s in samples]
        batch["wav"] = [s.get("wav") for s in samples]
    return batch


def _sample_pipeline(shards_dir: str | os.PathLike, split: str, shuffle: bool, seed: int, shuffle_buffer: int,
                     handler: Any, index: dict | None = None) -> wds.DataPipeline:
    """Raw samples of ``split`` (``shard_reader.shard_samples``), split by node and by worker.

    Stages as ``wds.WebDataset`` orders them: shard list, node split, worker split, shard shuffle;
    then each shard's tar is read directly, then the sample shuffle buffer.
    """
    urls = shard_urls(shards_dir, split, index)
    if not urls:
        raise ShardError(f"{shards_dir}: split {split!r} has no shards (no clips were assigned to it); "
                         "rebuild with `c98k build-shards --split-fractions` giving it a share, or choose another split")
    stages: list[Any] = [wds.SimpleShardList(urls), wds.split_by_node, wds.split_by_worker]
    if shuffle:
        stages.append(wds.detshuffle(len(urls), seed=seed))
    stages.append(wds.pipelinefilter(shard_samples)(handler))
    if shuffle:
        stages.append(wds.detshuffle(shuffle_buffer, initial=min(100, shuffle_buffer), seed=seed + 1))
    return wds.DataPipeline(*stages)


def make_dataset(shards_dir: str | os.PathLike, split: str, shuffle: bool = False, seed: int = 0,
                 shuffle_buffer: int = 1000, max_frames: int | None = 64, max_audio: int | None = 64,
                 max_tags: int | None = 16, with_media: bool = False,
                 handler: Any = wds.reraise_exception) -> wds.DataPipeline:
    """A pipeline of decoded samples (``DecodeSample``) of ``split``, split by node and by worker.

    ``shuffle``: shard order and a ``shuffle_buffer``-sample buffer are shuffled, reproducibly
    for ``seed`` and the epoch (see ``set_epoch``).
    """
    ds = _sample_pipeline(shards_dir, split, shuffle, seed, shuffle_buffer, handler)
    ds.append(wds.map(DecodeSample(max_frames, max_audio, max_tags, with_media), handler=handler))
    return ds


class DecodeCollate:
    """Raw samples -> one ``collate`` batch: samples are decoded only once their batch is kept
    (``drop_last`` drops a partial batch before any decoding). Picklable, for loader workers."""

    def __init__(self, decode: DecodeSample):
        self.decode = decode

    def __call__(self, raws: list[dict[str, Any]]) -> dict[str, Any]:
        return collate([self.decode(r) for r in raws])


def set_epoch(dataset: wds.DataPipeline, epoch: int) -> None:
    """Make the next pass over ``dataset`` use the shuffle order of ``epoch``."""
    for stage in dataset.pipeline:
        if isinstance(stage, wds.detshuffle):
            stage.epoch = epoch - 1  # detshuffle increments before use


def world_size() -> int:
    """Number of distributed processes (torch.distributed, else ``WORLD_SIZE``, else 1)."""
    return wds.utils.pytorch_worker_info()[1]


class ShardLoader(DataLoader):
    """A DataLoader over a batched shard pipeline; each ``iter()`` starts the next epoch.

    Call ``set_epoch(n)`` to choose the epoch explicitly (e.g. when resuming).
    """

    def __init__(self, dataset: wds.DataPipeline, num_workers: int = 0, **kwargs: Any):
        super().__init__(dataset, batch_size=None, num_workers=num_workers, **kwargs)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        set_epoch(self.dataset, self.epoch)
        self.epoch += 1
        return super().__iter__()


def make_loader(shards_dir: str | os.PathLike, split: str, batch_size: int, num_workers: int = 0,
                shuffle: bool = True, seed: int = 0, max_frames: int | None = 64, max_audio: int | None = 64,
                max_tags: int | None = 16, drop_last: bool = False, shuffle_buffer: int = 1000,
                with_media: bool = False, **loader_kwargs: Any) -> ShardLoader:
    """A DataLoader yielding ``collate`` batches of ``split``; see the module docstring for DDP."""
    index = load_index(shards_dir)
    n_shards = len(index["splits"].get(split, {}).get("shards", []))
    readers = world_size() * max(1, num_workers)
    if 0 < n_shards < readers:
        warnings.warn(f"split {split!r} has {n_shards} shard(s) for {readers} readers (ranks x workers); "
                      "some readers get no data. Rebuild with a smaller --samples-per-shard.", stacklevel=2)
    ds = _sample_pipeline(shards_dir, split, shuffle, seed, shuffle_buffer, wds.reraise_exception, index)
    decode = DecodeSample(max_frames, max_audio, max_tags, with_media)
    ds.append(wds.batched(batch_size, collation_fn=DecodeCollate(decode), partial=not drop_last))
    return ShardLoader(ds, num_workers=num_workers, **loader_kwargs)
