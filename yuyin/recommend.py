"""Recommend background music for a new ad: a saved music index over a shard library, queried by video.

``build_music_index`` embeds the music of every clip of a shard library with a trained
checkpoint and averages it per ``music_id`` (one entry per unique track, with metadata). The
index is saved as ``music_index.npz`` + ``music_index.json`` (the JSON written last, holding the
fingerprint of the checkpoint and the shards); it is rebuilt only when either changed.
``recommend_video`` runs the labelling feature pipeline on a new video (frames only) and ranks
the index.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from commercial98k.storage.files import atomic_path, atomic_write_json, sha256_file

from .checkpoint import find_checkpoint, load_model
from .evaluate import embed_batches, track_gallery

INDEX_NPZ, INDEX_JSON = "music_index.npz", "music_index.json"
INDEX_VERSION = 1


@dataclass
class MusicIndex:
    """One L2-normalised embedding per unique track, with metadata."""

    music_ids: list[str]
    embeddings: np.ndarray  # [M, E] float32
    meta: list[dict[str, Any]]
    fingerprint: dict[str, Any]

    def query(self, video_embedding: np.ndarray, k: int = 10) -> list[dict[str, Any]]:
        """Top-``k`` tracks for one video embedding [E]: rank, music_id, cosine score, metadata."""
        scores = self.embeddings @ np.asarray(video_embedding, np.float32).reshape(-1)
        top = np.argsort(-scores, kind="stable")[: max(0, k)]
        return [{"rank": r + 1, "music_id": self.music_ids[i], "score": float(scores[i]), **self.meta[i]}
                for r, i in enumerate(top)]


def library_fingerprint(checkpoint: str | os.PathLike, library: str | os.PathLike) -> dict[str, Any]:
    """What the index depends on: the checkpoint file and the shards' ``index.json``."""
    return {"version": INDEX_VERSION, "checkpoint_sha256": sha256_file(find_checkpoint(checkpoint)),
            "shards_index_sha256": sha256_file(Path(library) / "index.json")}


def default_index_dir(library: str | os.PathLike) -> Path:
    return Path(library) / ".yuyin-index"


def load_music_index(index_dir: str | os.PathLike) -> MusicIndex:
    """Read a saved index (``music_index.json`` + ``.npz``)."""
    import json

    index_dir = Path(index_dir)
    with open(index_dir / INDEX_JSON, encoding="utf-8") as f:
        doc = json.load(f)
    with np.load(index_dir / INDEX_NPZ, allow_pickle=False) as z:
        emb = z["embeddings"].astype(np.float32)
    if len(emb) != len(doc["music_ids"]):
        raise ValueError(f"{index_dir}: index files disagree ({len(emb)} embeddings, {len(doc['music_ids'])} ids)")
    return MusicIndex(doc["music_ids"], emb, doc["meta"], doc["fingerprint"])


def _track_meta(metas: list[dict[str, Any]]) -> dict[str, Any]:
    cats = Counter(str(m.get("category")) for m in metas)
    emos = Counter(str(m.get("emotion")) for m in metas if m.get("emotion"))
    vals = [float(m["valence"]) for m in metas if m.get("valence") is not None]
    ars = [float(m["arousal"]) for m in metas if m.get("arousal") is not None]
    return {"clips": len(metas), "category": cats.most_common(1)[0][0], "categories": dict(cats),
            "emotion": emos.most_common(1)[0][0] if emos else None,
            "valence": float(np.mean(vals)) if vals else None, "arousal": float(np.mean(ars)) if ars else None,
            "examples": [m.get("clip_id") for m in metas[:3]], "titles": [m.get("title") for m in metas[:3]]}


def build_music_index(checkpoint: str | os.PathLike, library: str | os.PathLike,
                      index_dir: str | os.PathLike | None = None, splits: list[str] | None = None,
                      device: str = "cpu", batch_size: int = 64, force: bool = False,
                      progress: bool = True) -> MusicIndex:
    """Embed the library's music per unique track and save the index (reused while still current)."""
    from .data import load_index, make_loader

    index_dir = Path(index_dir) if index_dir else default_index_dir(library)
    fingerprint = library_fingerprint(checkpoint, library)
    if not force and (index_dir / INDEX_JSON).is_file():
        try:
            saved = load_music_index(index_dir)
            if saved.fingerprint == fingerprint:
                return saved
        except (OSError, ValueError, KeyError):
            pass  # unreadable or stale: rebuild
    shard_index = load_index(library)
    splits = splits or [s for s, v in shard_index["splits"].items() if v.get("shards")]
    model, state = load_model(checkpoint, device)
    tc = state.get("train_config", {})
    music, mids, metas = [], [], []
    for split in splits:
        loader = make_loader(library, split, batch_size, shuffle=False, drop_last=False,
                             max_frames=tc.get("max_frames", 64), max_audio=tc.get("max_audio", 64))
        captured: list[dict] = []
        emb = embed_batches(model, _capture_meta(loader, captured), device, progress)
        music.append(emb["music"])
        mids += emb["music_id"]
        metas += captured
    if not mids:
        raise ValueError(f"{library}: the library has no clips")
    gallery, tracks, owner = track_gallery(np.concatenate(music), mids)
    meta = [_track_meta([metas[i] for i in np.flatnonzero(owner == t)]) for t in range(len(tracks))]
    index = MusicIndex(tracks, gallery, meta, fingerprint)
    save_music_index(index, index_dir)
    return index


def _capture_meta(loader: Any, sink: list[dict]) -> Any:
    for batch in loader:
        sink.extend(batch["meta"])
        yield batch


def save_music_index(index: MusicIndex, index_dir: str | os.PathLike) -> None:
    """Write the ``.npz`` then the ``.json`` (the done marker), each atomically."""
    index_dir = Path(index_dir)
    with atomic_path(index_dir / INDEX_NPZ, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, embeddings=index.embeddings.astype(np.float32))
    atomic_write_json(index_dir / INDEX_JSON, {"music_ids": index.music_ids, "meta": index.meta,
                                               "fingerprint": index.fingerprint})


@torch.no_grad()
def embed_frames(model: torch.nn.Module, frames: np.ndarray, max_frames: int = 64,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """The video embedding [E] of one frame-embedding sequence [T, D]."""
    from .data import subsample

    frames = subsample(np.asarray(frames, np.float32), max_frames)
    if frames.ndim != 2 or len(frames) == 0:
        raise ValueError(f"expected a non-empty [T, D] frame-embedding sequence, got shape {frames.shape}")
    x = torch.from_numpy(np.ascontiguousarray(frames)).unsqueeze(0).to(device)
    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=device)
    model.eval()
    return model.embed_video(x, mask)[0].float().cpu().numpy()


def _frame_model_name(state: dict[str, Any], override: str | None) -> str:
    from commercial98k.models.registry import FRAMES

    if override:
        return override
    tag = ((state.get("index") or {}).get("models") or {}).get("frame_model") or ""
    name = re.sub(r"-fps[0-9.]+$", "", tag.split(" ")[0])  # frame_info's sampling-rate suffix
    if name in FRAMES.names():
        return name
    raise ValueError(f"cannot tell which frame model made the training features ({tag!r}); pass --frame-model "
                     f"(one of {', '.join(FRAMES.names())})")


def clip_windows(video_path: str | os.PathLike) -> list[tuple[float, float]]:
    """The clip windows of a new ad, from the split stage's planner (shot-aligned, whole video)."""
    from commercial98k.split import plan_video

    plan = plan_video(video_path, require_music=False)
    if plan.status != "ok" or not plan.clips:
        raise ValueError(f"{video_path}: no clip windows ({plan.error or plan.status})")
    return [(float(c.start_s), float(c.end_s)) for c in plan.clips]


def windows_embedding(model: torch.nn.Module, frames: np.ndarray, start_s: float, frame_fps: float,
                      windows: list[tuple[float, float]], max_frames: int = 64,
                      device: str | torch.device = "cpu") -> np.ndarray:
    """Mean (re-normalised) of the video embeddings of each window's frames; frame i is at start_s + i / fps."""
    times = start_s + np.arange(len(frames)) / frame_fps
    vecs = [embed_frames(model, frames[(times >= a) & (times < b)], max_frames, device)
            for a, b in windows if ((times >= a) & (times < b)).any()]
    if not vecs:
        vecs = [embed_frames(model, frames, max_frames, device)]
    mean = np.mean(vecs, axis=0)
    return (mean / max(1e-12, float(np.linalg.norm(mean)))).astype(np.float32)


def recommend_video(video_path: str | os.PathLike, checkpoint: str | os.PathLike, library: str | os.PathLike,
                    k: int = 10, device: str = "cpu", index_dir: str | os.PathLike | None = None,
                    frame_model: str | None = None, start_s: float | None = None, end_s: float | None = None,
                    whole: bool = False, frame_fps: float = 1.0, progress: bool = True) -> dict[str, Any]:
    """Top-``k`` tracks of ``library`` for a new video: index (built once), features, ranking.

    The span is ``start_s``..``end_s`` if given, the whole file with ``whole``; by default the
    split stage's planner cuts the ad into shot-aligned clip windows, each is embedded and the
    mean embedding is matched (music that fits the whole ad).
    """
    from commercial98k.label.extractors import LabelConfig, LabelModels, extract_clip_features

    if not Path(video_path).is_file():
        raise FileNotFoundError(f"{video_path}: no such video")
    index = build_music_index(checkpoint, library, index_dir, device=device, progress=progress)
    model, state = load_model(checkpoint, device)
    windows = None
    if start_s is None and end_s is None and not whole:
        windows = clip_windows(video_path)
        start_s, end_s = windows[0][0], windows[-1][1]
    models = LabelModels(LabelConfig(frame_model=_frame_model_name(state, frame_model), device=device))
    feats = extract_clip_features(video_path, start_s, end_s, models, frame_fps=frame_fps, with_audio=False)
    expected = (state.get("index") or {}).get("dims", {}).get("frames")
    if expected and feats["frames"].shape[1] != expected:
        raise ValueError(f"frame model gives {feats['frames'].shape[1]}-d features, the checkpoint expects {expected}")
    max_frames = state.get("train_config", {}).get("max_frames", 64)
    if windows:
        vec = windows_embedding(model, feats["frames"], start_s, frame_fps, windows, max_frames, device)
    else:
        vec = embed_frames(model, feats["frames"], max_frames, device)
    return {"video": str(video_path), "start_s": start_s, "end_s": end_s, "frame_model": models.frames.info.tag(),
            "windows": windows, "results": index.query(vec, k)}
