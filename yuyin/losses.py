"""YuYin losses: symmetric multi-positive InfoNCE for video-music, video-tag and music-tag, plus category CE.

In a batch several clips may share a ``music_id`` (music is reused across ads). Such pairs are
*positives*, not negatives: the InfoNCE term of a query averages the log-probabilities of all its
positives (the "L_out" multi-positive form of SupCon), so at the optimum the softmax spreads
evenly over the positives and nothing pushes two clips of the same track apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def same_key_mask(keys: Sequence, device: torch.device | str | None = None) -> Tensor:
    """Bool [B,B]: True where ``keys[i] == keys[j]`` (the diagonal is always True)."""
    codes: dict = {}
    ids = torch.tensor([codes.setdefault(k, len(codes)) for k in keys], device=device)
    return ids.unsqueeze(0) == ids.unsqueeze(1)


def tagset_keys(tag_ids: Tensor) -> list[tuple[int, ...]]:
    """One hashable key per row of ``tag_ids`` [B,N] (-1 padded): the sorted set of its tag ids."""
    return [tuple(sorted({int(t) for t in row if int(t) >= 0})) for row in tag_ids.cpu()]


def multi_positive_nce(logits: Tensor, pos: Tensor, valid_rows: Tensor | None = None,
                       valid_cols: Tensor | None = None) -> Tensor:
    """Row-wise multi-positive InfoNCE: mean over valid rows of -mean_{j in P_i} log softmax(logits_i)_j.

    ``pos`` [B,B'] marks positives; ``valid_cols`` drops columns from every softmax (e.g. clips
    without tags), ``valid_rows`` drops queries. Rows without any valid positive are ignored.
    """
    logits = logits.float()
    zero = logits.sum() * 0.0  # keeps the graph connected when nothing counts
    if valid_cols is not None:
        logits = logits.masked_fill(~valid_cols.unsqueeze(0), float("-inf"))
        pos = pos & valid_cols.unsqueeze(0)
    rows = pos.any(1)
    if valid_rows is not None:
        rows = rows & valid_rows
    if not rows.any():
        return zero
    logp = F.log_softmax(logits[rows], dim=1)
    p = pos[rows].to(logp.dtype)
    per_row = -(logp.masked_fill(~pos[rows], 0.0) * p).sum(1) / p.sum(1)
    return per_row.mean()


def symmetric_nce(a: Tensor, b: Tensor, scale: Tensor | float, pos: Tensor, valid_a: Tensor | None = None,
                  valid_b: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE between L2-normalised ``a`` [B,E] and ``b`` [B,E] with positive mask ``pos`` [B,B]."""
    logits = scale * a @ b.t()
    a2b = multi_positive_nce(logits, pos, valid_a, valid_b)
    b2a = multi_positive_nce(logits.t(), pos.t(), valid_b, valid_a)
    return (a2b + b2a) / 2


def triplet_loss(a: Tensor, b: Tensor, pos: Tensor, margin: float = 0.2, hardest: bool = True) -> Tensor:
    """Bidirectional max-margin ranking loss (CBVMR/VSE++ style) on cosine similarity.

    Negatives are the pairs with ``pos`` False; ``hardest`` uses the hardest negative per anchor,
    otherwise the mean hinge over all negatives.
    """
    sim = a.float() @ b.float().t()
    diag = sim.diag()
    neg = ~pos

    def one_way(s: Tensor, d: Tensor, n: Tensor) -> Tensor:
        hinge = (margin + s - d.unsqueeze(1)).clamp_min(0.0) * n
        if hardest:
            return hinge.max(1).values.mean()
        return hinge.sum(1).div(n.sum(1).clamp_min(1)).mean()

    return (one_way(sim, diag, neg) + one_way(sim.t(), diag, neg.t())) / 2


@dataclass
class LossWeights:
    """Weight of each task; 0 switches a task off."""

    video_music: float = 1.0
    video_tag: float = 0.5
    music_tag: float = 0.5
    category: float = 0.2


def yuyin_loss(out: dict, batch: dict, weights: LossWeights, kind: str = "infonce",
               margin: float = 0.2) -> tuple[Tensor, dict[str, float]]:
    """Total multi-task loss and its parts (as floats, for logging).

    Positives: video-music share a ``music_id``; video-tag are the same clip or clips with the
    same tag set; music-tag share a ``music_id`` or a tag set. Clips without tags take no part in
    the tag terms; category labels < 0 are ignored.
    """
    video, music = out["video"], out["music"]
    device = video.device
    same_music = same_key_mask(batch["music_id"], device)
    parts: dict[str, Tensor] = {}
    if kind == "triplet":
        parts["video_music"] = triplet_loss(video, music, same_music, margin)
    else:
        parts["video_music"] = symmetric_nce(video, music, out["scale"], same_music)
    tags = out.get("tags")
    if tags is not None and (weights.video_tag or weights.music_tag):
        valid = out["tags_valid"]
        same_tags = same_key_mask(tagset_keys(batch["tag_ids"]), device) & valid.unsqueeze(0) & valid.unsqueeze(1)
        eye = torch.eye(len(video), dtype=torch.bool, device=device)
        if weights.video_tag:
            parts["video_tag"] = symmetric_nce(video, tags, out["scale"], eye | same_tags, None, valid)
        if weights.music_tag:
            parts["music_tag"] = symmetric_nce(music, tags, out["scale"], same_music | same_tags, None, valid)
    if weights.category and out.get("category_logits") is not None:
        target = batch["category"].to(device)
        ce = F.cross_entropy(out["category_logits"].float(), target, ignore_index=-1) if (target >= 0).any() \
            else out["category_logits"].sum() * 0.0
        if out.get("music_category_logits") is not None and (target >= 0).any():
            ce = (ce + F.cross_entropy(out["music_category_logits"].float(), target, ignore_index=-1)) / 2
        parts["category"] = ce
    total = sum(getattr(weights, k) * v for k, v in parts.items())
    assert isinstance(total, Tensor)
    return total, {k: float(v.detach()) for k, v in parts.items()}
