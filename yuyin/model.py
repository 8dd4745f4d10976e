"""The YuYin model: video, music (audio + emotion, fused by the WFM) and tag encoders in one joint space.

Ma et al., "YuYin: a multi-task learning model of multi-modal e-commerce background music
recommendation" (EURASIP JASMP 2023). The music branch fuses an audio representation and an
emotion representation with a weighted fusion module (WFM) that computes per-sample weights
from both; video, music and tags are projected into one L2-normalised space and a category head
predicts the product category from the video (and optionally the music) representation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ENCODERS = ("transformer", "gru", "mean")
POOLINGS = ("cls", "mean")
FUSIONS = ("concat", "average")
CATEGORY_FROM = ("video", "both")


@dataclass
class YuYinConfig:
    """Sizes and switches of the model. Input dims come from the shards' ``index.json``."""

    frames_dim: int = 1280
    audio_dim: int = 200
    emotion_dim: int = 11
    tags_dim: int = 512
    num_categories: int = 8
    hidden: int = 128
    embed_dim: int = 64
    video_encoder: str = "transformer"
    music_encoder: str = "transformer"
    layers: int = 1
    heads: int = 4
    pooling: str = "cls"
    dropout: float = 0.1
    max_len: int = 512
    use_emotion: bool = True
    use_wfm: bool = True
    fusion: str = "concat"  # how audio and emotion are combined when use_wfm is off
    use_tags: bool = True
    use_category: bool = True
    category_from: str = "video"
    temperature: float = 0.07
    learn_temperature: bool = True

    def __post_init__(self) -> None:
        for name, value, allowed in (("video_encoder", self.video_encoder, ENCODERS),
                                     ("music_encoder", self.music_encoder, ENCODERS),
                                     ("pooling", self.pooling, POOLINGS), ("fusion", self.fusion, FUSIONS),
                                     ("category_from", self.category_from, CATEGORY_FROM)):
            if value not in allowed:
                raise ValueError(f"YuYinConfig.{name}={value!r}; choose one of {', '.join(allowed)}")
        if self.hidden % self.heads:
            raise ValueError(f"YuYinConfig.hidden={self.hidden} must be a multiple of heads={self.heads}")
        if not 0 < self.temperature < 10:
            raise ValueError(f"YuYinConfig.temperature={self.temperature} must be in (0, 10)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> YuYinConfig:
        """Build from a dict; unknown keys are an error naming the key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**d)

    @classmethod
    def from_index(cls, index: dict[str, Any], **overrides: Any) -> YuYinConfig:
        """Input dims and class count from a shards ``index.json``, then ``overrides``."""
        dims = index["dims"]
        base = dict(frames_dim=int(dims["frames"]), audio_dim=int(dims["audio"]), emotion_dim=int(dims["emotion"]),
                    tags_dim=int(dims["tags"]), num_categories=max(1, len(index.get("categories", []))))
        return cls.from_dict({**base, **overrides})


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over dim 1 of ``x`` [B,T,H] where ``mask`` [B,T] is True; all-masked rows give zeros."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


class SequenceEncoder(nn.Module):
    """Embedding sequence [B,T,D] (+ validity mask) -> one vector [B,H].

    ``transformer``: a small pre-norm Transformer with learned positions, pooled by a CLS token or
    a masked mean; ``gru``: a bidirectional GRU over the valid steps, masked mean; ``mean``: a
    per-step MLP and a masked mean (the light, CBVMR-style encoder).
    """

    def __init__(self, in_dim: int, cfg: YuYinConfig, kind: str):
        super().__init__()
        self.kind, self.pooling, h = kind, cfg.pooling, cfg.hidden
        self.inp = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, h), nn.GELU(), nn.Dropout(cfg.dropout))
        if kind == "transformer":
            self.max_len = cfg.max_len
            self.pos = nn.Parameter(torch.zeros(1, cfg.max_len + 1, h))
            nn.init.trunc_normal_(self.pos, std=0.02)
            self.cls = nn.Parameter(torch.zeros(1, 1, h))
            layer = nn.TransformerEncoderLayer(h, cfg.heads, 2 * h, cfg.dropout, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.body = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(h)
        elif kind == "gru":
            self.body = nn.GRU(h, h // 2, num_layers=cfg.layers, batch_first=True, bidirectional=True)
            self.norm = nn.LayerNorm(h)
        else:
            self.body = nn.Sequential(nn.Linear(h, h), nn.GELU())
            self.norm = nn.LayerNorm(h)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.inp(x)
        if self.kind == "transformer":
            x, mask = x[:, : self.max_len], mask[:, : self.max_len]
            b, t, _ = x.shape
            x = torch.cat([self.cls.expand(b, -1, -1), x], 1) + self.pos[:, : t + 1]
            full = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=mask.device), mask], 1)
            x = self.body(x, src_key_padding_mask=~full)
            pooled = x[:, 0] if self.pooling == "cls" else masked_mean(x[:, 1:], mask)
        elif self.kind == "gru":
            lengths = mask.sum(1).clamp_min(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.body(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            pooled = masked_mean(out, mask)
        else:
            pooled = masked_mean(self.body(x), mask)
        return self.norm(pooled)


class WeightedFusion(nn.Module):
    """WFM: per-sample softmax weights over [audio_repr, emotion_repr], computed from both.

    ``forward`` returns the fused vector and the weights [B,2] (column 0 audio, 1 emotion).
    """

    def __init__(self, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, 2))

    def forward(self, audio: Tensor, emotion: Tensor) -> tuple[Tensor, Tensor]:
        weights = torch.softmax(self.score(torch.cat([audio, emotion], -1)), dim=-1)
        fused = weights[:, :1] * audio + weights[:, 1:] * emotion
        return fused, weights


class TagEncoder(nn.Module):
    """Attention pooling over a clip's tag embeddings [B,N,Dt] with a mask; clips without tags -> zeros."""

    def __init__(self, in_dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.attn = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, tags: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Pooled tags [B,H] and a bool [B] telling which clips had at least one tag."""
        b = tags.shape[0]
        has = mask.any(1) if mask.shape[1] else torch.zeros(b, dtype=torch.bool, device=tags.device)
        if tags.shape[1] == 0:
            return torch.zeros(b, self.norm.normalized_shape[0], device=tags.device, dtype=tags.dtype), has
        x = self.inp(tags)
        scores = self.attn(x).squeeze(-1).masked_fill(~mask, float("-inf"))
        w = torch.softmax(scores.masked_fill(~has.unsqueeze(1), 0.0), dim=1) * mask
        pooled = self.norm((w.unsqueeze(-1) * x).sum(1))
        return pooled * has.unsqueeze(1).to(pooled.dtype), has


def _head(hidden: int, out: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out))


MAX_LOGIT_SCALE = math.log(100.0)  # exp(logit_scale) <= 100, as in CLIP


class YuYin(nn.Module):
    """The full model. ``forward(batch)`` takes the batch dict of ``yuyin.data`` (tensors on one device)."""

    def __init__(self, cfg: YuYinConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.video_encoder = SequenceEncoder(cfg.frames_dim, cfg, cfg.video_encoder)
        self.audio_encoder = SequenceEncoder(cfg.audio_dim, cfg, cfg.music_encoder)
        if cfg.use_emotion:
            self.emotion_encoder = nn.Sequential(nn.Linear(cfg.emotion_dim, h), nn.GELU(), nn.Linear(h, h), nn.LayerNorm(h))
            if cfg.use_wfm:
                self.fusion = WeightedFusion(h, cfg.dropout)
            elif cfg.fusion == "concat":
                self.fusion = nn.Sequential(nn.Linear(2 * h, h), nn.GELU(), nn.LayerNorm(h))
        self.video_head = _head(h, cfg.embed_dim, cfg.dropout)
        self.music_head = _head(h, cfg.embed_dim, cfg.dropout)
        if cfg.use_tags:
            self.tag_encoder = TagEncoder(cfg.tags_dim, h, cfg.dropout)
            self.tag_head = _head(h, cfg.embed_dim, cfg.dropout)
        if cfg.use_category:
            self.category_head = nn.Linear(h, cfg.num_categories)
            if cfg.category_from == "both":
                self.music_category_head = nn.Linear(h, cfg.num_categories)
        init = torch.tensor(math.log(1.0 / cfg.temperature))
        if cfg.learn_temperature:
            self.logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale", init)

    def scale(self) -> Tensor:
        """exp(logit_scale); ``clamp_logit_scale`` keeps it within [1, 100] after each optimiser step."""
        return self.logit_scale.exp()

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """Clamp ``logit_scale`` to [0, ln 100] in place, after the optimiser step (as open_clip does).

        Clamping inside ``forward`` would zero its gradient past the bound, so it could get stuck there.
        """
        self.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)

    def video_repr(self, frames: Tensor, mask: Tensor) -> Tensor:
        return self.video_encoder(frames, mask)

    def music_repr(self, audio: Tensor, mask: Tensor, emotion: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Music representation [B,H] and the WFM weights [B,2] (None without the WFM)."""
        a = self.audio_encoder(audio, mask)
        if not self.cfg.use_emotion:
            return a, None
        if emotion is None:
            raise ValueError("this model uses emotion features; pass the batch's 'emotion'")
        e = self.emotion_encoder(emotion)
        if self.cfg.use_wfm:
            return self.fusion(a, e)
        if self.cfg.fusion == "concat":
            return self.fusion(torch.cat([a, e], -1)), None
        return (a + e) / 2, None

    def embed_video(self, frames: Tensor, mask: Tensor) -> Tensor:
        """L2-normalised video embeddings [B,E]."""
        return F.normalize(self.video_head(self.video_repr(frames, mask)), dim=-1)

    def embed_music(self, audio: Tensor, mask: Tensor, emotion: Tensor | None = None) -> Tensor:
        """L2-normalised music embeddings [B,E]."""
        return F.normalize(self.music_head(self.music_repr(audio, mask, emotion)[0]), dim=-1)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor | None]:
        v = self.video_repr(batch["frames"], batch["frames_mask"])
        m, weights = self.music_repr(batch["audio"], batch["audio_mask"], batch.get("emotion"))
        out: dict[str, Tensor | None] = {
            "video": F.normalize(self.video_head(v), dim=-1),
            "music": F.normalize(self.music_head(m), dim=-1),
            "wfm_weights": weights, "tags": None, "tags_valid": None, "category_logits": None,
            "music_category_logits": None, "scale": self.scale(),
        }
        if self.cfg.use_tags:
            t, has = self.tag_encoder(batch["tags"], batch["tags_mask"])
            out["tags"], out["tags_valid"] = F.normalize(self.tag_head(t), dim=-1), has
        if self.cfg.use_category:
            out["category_logits"] = self.category_head(v)
            if self.cfg.category_from == "both":
                out["music_category_logits"] = self.music_category_head(m)
        return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
