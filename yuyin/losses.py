"""YuYin losses: symmetric multi-positive InfoNCE for video-music, video-tag and music-tag, plus category CE.

In a batch several clips may share a ``music_id`` (music is reused across ads). Such pairs are
*positives*, not negatives: the InfoNCE term of a query averages the log-probabilities of all its
positives (the "L_out" multi-positive form of SupCon), so at the optimum the softmax spreads
evenly over the positives and nothing pushes two clips of the same track apart.

Under DDP, ``BatchGather`` lets every rank score its own queries against the embeddings of all
ranks (a differentiable all-gather, as in CLIP), so negatives come from the global batch; with
equal local batch sizes the gradients equal those of one process on the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import LossWeights  # noqa: F401 - defined torch-free in config (yuyin train refuses before torch loads)


def same_key_mask(keys: Sequence, device: torch.device | str | None = None,
                  col_keys: Sequence | None = None) -> Tensor:
    """Bool [B,B'] : True where ``keys[i] == col_keys[j]`` (``col_keys`` defaults to ``keys``)."""
    codes: dict = {}
    rows = torch.tensor([codes.setdefault(k, len(codes)) for k in keys], device=device)
    cols = rows if col_keys is None else torch.tensor([codes.setdefault(k, len(codes)) for k in col_keys],
                                                      device=device)
    return rows.unsqueeze(1) == cols.unsqueeze(0)


class BatchGather:
    """The global batch seen from one rank: identity in a single process.

    ``tensor`` all-gathers with gradients (``torch.distributed.nn``), ``objects`` gathers Python
    lists; ``offset`` is where this rank's rows start in the global batch. All ranks must pass
    equally sized batches (the trainer drops the last partial batch).
    """

    def __init__(self, group: object | None = None, distributed: bool = True):
        import torch.distributed as dist

        self._dist = dist
        self.group = group
        self.active = (distributed and dist.is_available() and dist.is_initialized()
                       and dist.get_world_size(group) > 1)
        self.rank = dist.get_rank(group) if self.active else 0
        self.world = dist.get_world_size(group) if self.active else 1

    def tensor(self, x: Tensor) -> Tensor:
        if not self.active:
            return x
        from torch.distributed.nn.functional import all_gather

        if x.dtype == torch.bool:  # not every backend reduces bool; masks need no gradient
            return torch.cat(all_gather(x.to(torch.uint8), group=self.group), 0).bool()
        return torch.cat(all_gather(x, group=self.group), 0)

    def objects(self, items: Sequence) -> list:
        if not self.active:
            return list(items)
        parts: list = [None] * self.world
        self._dist.all_gather_object(parts, list(items), group=self.group)
        return [x for part in parts for x in part]

    def offset(self, local_rows: int) -> int:
        return self.rank * local_rows


LOCAL = BatchGather(distributed=False)


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
                  valid_b: Tensor | None = None, gather: BatchGather | None = None) -> Tensor:
    """Symmetric InfoNCE between L2-normalised ``a`` [b,E] and ``b`` [b,E].

    ``pos`` [b,B] marks positives of local row i among the B global columns (a symmetric relation,
    so it serves both directions); ``gather`` supplies the other ranks' rows (default: none).
    """
    g = gather or LOCAL
    a_all, b_all = g.tensor(a), g.tensor(b)
    va_all = None if valid_a is None else g.tensor(valid_a)
    vb_all = None if valid_b is None else g.tensor(valid_b)
    a2b = multi_positive_nce(scale * a @ b_all.t(), pos, valid_a, vb_all)
    b2a = multi_positive_nce(scale * b @ a_all.t(), pos, valid_b, va_all)
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


def yuyin_loss(out: dict, batch: dict, weights: LossWeights, kind: str = "infonce",
               margin: float = 0.2, gather: BatchGather | None = None) -> tuple[Tensor, dict[str, float]]:
    """Total multi-task loss and its parts (as floats, for logging).

    Positives: video-music share a ``music_id``; video-tag are the same clip or clips with the
    same tag set; music-tag share a ``music_id`` or a tag set. Clips without tags take no part in
    the tag terms; category labels < 0 are ignored. With ``gather`` (DDP), the contrastive terms
    use the whole global batch as candidates; the triplet baseline stays per rank.
    """
    g = gather if gather is not None and kind != "triplet" else LOCAL
    video, music = out["video"], out["music"]
    device, n = video.device, len(video)
    same_music = same_key_mask(batch["music_id"], device, g.objects(batch["music_id"]))
    parts: dict[str, Tensor] = {}
    if kind == "triplet":
        parts["video_music"] = triplet_loss(video, music, same_music, margin)
    else:
        parts["video_music"] = symmetric_nce(video, music, out["scale"], same_music, gather=g)
    tags = out.get("tags")
    if tags is not None and (weights.video_tag or weights.music_tag):
        valid = out["tags_valid"]
        tag_keys = tagset_keys(batch["tag_ids"])
        same_tags = (same_key_mask(tag_keys, device, g.objects(tag_keys))
                     & valid.unsqueeze(1) & g.tensor(valid).unsqueeze(0))
        self_pair = torch.zeros_like(same_tags)
        self_pair[torch.arange(n, device=device), g.offset(n) + torch.arange(n, device=device)] = True
        if weights.video_tag:
            parts["video_tag"] = symmetric_nce(video, tags, out["scale"], self_pair | same_tags, None, valid, g)
        if weights.music_tag:
            parts["music_tag"] = symmetric_nce(music, tags, out["scale"], same_music | same_tags, None, valid, g)
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
