"""Retrieval evaluation over unique tracks: video->music and music->video Recall@K, median/mean rank.

Clips are embedded; the music embeddings of the clips of one ``music_id`` are averaged (and
re-normalised) into one gallery item per track. A video's correct answer is its own track
(v2m); a track's correct answers are all the videos that use it, and its rank is the best rank
among them (m2v). Ranks are 1-based. A random ranker's expected scores are given alongside.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from commercial98k.storage.files import atomic_write_bytes, atomic_write_json

KS = (1, 5, 10, 25, 50)


def track_gallery(music: np.ndarray, music_ids: Sequence[str]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Average clip music embeddings per ``music_id``: (gallery [M,E] L2-normalised, track ids, clip->track [N]).

    A clip without a ``music_id`` is refused (it would pose as one shared track).
    """
    missing = sum(1 for m in music_ids if not m)
    if missing:
        raise ValueError(f"{missing} of {len(music_ids)} clips have no music_id; run `c98k split` (it gives every "
                         "ok clip one) and `c98k build-shards` again")
    tracks = sorted(set(music_ids))
    pos = {t: i for i, t in enumerate(tracks)}
    owner = np.array([pos[m] for m in music_ids], dtype=np.int64)
    gallery = np.zeros((len(tracks), music.shape[1]), dtype=np.float64)
    np.add.at(gallery, owner, music.astype(np.float64))
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True).clip(1e-12)
    return gallery.astype(np.float32), tracks, owner


def _rank_summary(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    out = {f"R@{k}": float((ranks <= k).mean()) for k in ks}
    out.update(median_rank=float(np.median(ranks)), mean_rank=float(ranks.mean()), queries=int(len(ranks)))
    return out


def v2m_ranks(video: np.ndarray, gallery: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """1-based rank of each video's own track among all tracks (ties count against the query)."""
    sims = video @ gallery.T
    true = sims[np.arange(len(video)), owner]
    return (sims > true[:, None]).sum(1) + (sims == true[:, None]).sum(1)


def m2v_ranks(video: np.ndarray, gallery: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """1-based rank of the best-ranked video using each track, among all videos."""
    sims = gallery @ video.T  # [M, N]
    ranks = np.empty(len(gallery), dtype=np.int64)
    for t in range(len(gallery)):
        best = sims[t, owner == t].max()
        ranks[t] = int((sims[t] > best).sum() + (sims[t][owner != t] == best).sum() + 1)
    return ranks


def random_v2m(n_tracks: int, ks: Sequence[int] = KS) -> dict[str, float]:
    """Expected v2m scores of a random ranking over ``n_tracks`` (rank uniform on 1..M)."""
    out = {f"R@{k}": min(1.0, k / n_tracks) for k in ks}
    out.update(median_rank=(n_tracks + 1) / 2, mean_rank=(n_tracks + 1) / 2)
    return out


def random_m2v(n_videos: int, positives: Sequence[int], ks: Sequence[int] = KS) -> dict[str, float]:
    """Expected m2v scores of a random ranking: the best of p positives among n videos."""
    def p_within(k: int, p: int) -> float:  # P(some positive in the top k) = 1 - C(n-p, k) / C(n, k)
        return 1.0 if k >= n_videos - p + 1 else 1.0 - math.comb(n_videos - p, k) / math.comb(n_videos, k)

    out = {f"R@{k}": float(np.mean([p_within(k, p) for p in positives])) for k in ks}
    cdf = (float(np.mean([p_within(k, p) for p in positives])) for k in range(1, n_videos + 1))
    out["median_rank"] = float(next(k for k, f in enumerate(cdf, 1) if f >= 0.5))
    out["mean_rank"] = float(np.mean([(n_videos + 1) / (p + 1) for p in positives]))
    return out


def retrieval_metrics(video: np.ndarray, music: np.ndarray, music_ids: Sequence[str],
                      categories: Sequence[Any] | None = None, ks: Sequence[int] = KS,
                      category_sources: Sequence[str] | None = None) -> dict[str, Any]:
    """All metrics from clip embeddings ``video`` [N,E], ``music`` [N,E] (L2-normalised) and labels;
    per category and per category source (crawl, corrected, predicted) when given."""
    video = np.asarray(video, dtype=np.float32)
    gallery, tracks, owner = track_gallery(np.asarray(music, dtype=np.float32), music_ids)
    vr, mr = v2m_ranks(video, gallery, owner), m2v_ranks(video, gallery, owner)
    report: dict[str, Any] = {
        "clips": int(len(video)), "tracks": len(tracks),
        "v2m": _rank_summary(vr, ks), "m2v": _rank_summary(mr, ks),
        "queries": {"v2m_rank": vr.tolist(), "music_id": [str(m) for m in music_ids]},  # for yuyin.stats
        "random": {"v2m": random_v2m(len(tracks), ks),
                   "m2v": random_m2v(len(video), np.bincount(owner, minlength=len(tracks)).tolist(), ks)},
    }
    if categories is not None:
        cats = np.asarray([str(c) for c in categories])
        report["per_category"] = {c: _rank_summary(vr[cats == c], ks) for c in sorted(set(cats.tolist()))}
    if category_sources is not None:
        src = np.asarray([str(c) for c in category_sources])
        report["per_category_source"] = {c: _rank_summary(vr[src == c], ks) for c in sorted(set(src.tolist()))}
    return report


@torch.no_grad()
def embed_batches(model: torch.nn.Module, batches: Iterable[dict], device: str | torch.device = "cpu",
                  progress: bool = True) -> dict[str, Any]:
    """Video and music embeddings of every clip in ``batches`` plus their ids and categories."""
    model.eval()
    video, music, music_ids, clip_ids, cats, sources = [], [], [], [], [], []
    for b in tqdm(batches, desc="embed", unit="batch", disable=not progress):
        video.append(model.embed_video(b["frames"].to(device), b["frames_mask"].to(device)).float().cpu())
        emo = b["emotion"].to(device) if "emotion" in b else None
        music.append(model.embed_music(b["audio"].to(device), b["audio_mask"].to(device), emo).float().cpu())
        music_ids += list(b["music_id"])
        clip_ids += list(b["clip_id"])
        cats += [int(c) for c in b["category"]]
        sources += list(b.get("category_source") or ["crawl"] * len(b["category"]))
    if not video:
        raise ValueError("no clips to evaluate (empty split?)")
    return {"video": torch.cat(video).numpy(), "music": torch.cat(music).numpy(), "music_id": music_ids,
            "clip_id": clip_ids, "category": cats, "category_source": sources}


def evaluate_model(model: torch.nn.Module, shards: str | os.PathLike, split: str = "test", batch_size: int = 64,
                   device: str | torch.device = "cpu", categories: Sequence[str] | None = None,
                   progress: bool = True, **loader_kw: Any) -> dict[str, Any]:
    """Embed a shard split with ``model`` and compute ``retrieval_metrics`` (per-category by name).

    Category names default to the shards' own ``index.json`` class order (what ``category`` ids index).
    """
    from .data import load_index, make_loader

    if categories is None:
        categories = load_index(shards).get("categories")
    loader = make_loader(shards, split, batch_size, shuffle=False, drop_last=False, **loader_kw)
    emb = embed_batches(model, loader, device, progress)
    names = [categories[c] if categories and 0 <= c < len(categories) else str(c) for c in emb["category"]]
    report = retrieval_metrics(emb["video"], emb["music"], emb["music_id"], names,
                               category_sources=emb["category_source"])
    report["split"] = split
    return report


def evaluate_checkpoint(checkpoint: str | os.PathLike, shards: str | os.PathLike, split: str = "test",
                        batch_size: int = 64, device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Load a checkpoint (``weights_only=True``) and evaluate it on a shard split."""
    from .checkpoint import load_model

    model, state = load_model(checkpoint, device)
    tc = state.get("train_config", {})
    report = evaluate_model(model, shards, split, batch_size, device, None, progress,
                            max_frames=tc.get("max_frames", 64), max_audio=tc.get("max_audio", 64))
    report["checkpoint"], report["step"] = str(checkpoint), int(state["step"])
    return report


def report_markdown(report: dict[str, Any], ks: Sequence[int] = KS) -> str:
    """A Markdown summary: v2m/m2v rows, the random baseline, and the per-category v2m table."""
    head = "| | " + " | ".join(f"R@{k}" for k in ks) + " | MedR | MeanR |"
    sep = "|---" * (len(ks) + 3) + "|"

    def row(name: str, m: dict[str, float]) -> str:
        cells = [f"{m[f'R@{k}']:.3f}" for k in ks] + [f"{m.get('median_rank', float('nan')):.1f}",
                                                      f"{m['mean_rank']:.1f}"]
        return f"| {name} | " + " | ".join(cells) + " |"

    lines = [f"Split `{report.get('split', '?')}`: {report['clips']} clips, {report['tracks']} unique tracks.", "",
             head, sep, row("video→music", report["v2m"]), row("music→video", report["m2v"]),
             row("random v2m", report["random"]["v2m"]), row("random m2v", report["random"]["m2v"])]
    if report.get("per_category"):
        lines += ["", "Per category (video→music):", "", head.replace("| |", "| category |", 1), sep]
        lines += [row(f"{c} ({m['queries']})", m) for c, m in report["per_category"].items()]
    if report.get("per_category_source"):
        lines += ["", "Per category source (video→music; where the clip's training category came from):", "",
                  head.replace("| |", "| source |", 1), sep]
        lines += [row(f"{c} ({m['queries']})", m) for c, m in report["per_category_source"].items()]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<out>.json`` and ``<out>.md`` atomically."""
    out = Path(out)
    js, md = out.with_suffix(".json"), out.with_suffix(".md")
    atomic_write_json(js, report)
    atomic_write_bytes(md, report_markdown(report).encode("utf-8"))
    return js, md
