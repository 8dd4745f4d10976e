"""CLIP image embeddings through ``open_clip`` (optional: ``pip install open_clip_torch``).

open_clip downloads its pretrained checkpoints from the Hugging Face hub on first use;
``weights=PATH`` loads a local checkpoint instead. Both the package and the weights are
optional: when either is missing, building the model raises ``WeightsUnavailable`` with
one line saying what to install or pass. Embeddings are the L2-normalised image features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from commercial98k.errors import error_line
from commercial98k.storage.files import sha256_file

from .registry import FRAMES, ModelInfo, check_device
from .weights import WeightsUnavailable

DEFAULT_ARCH = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _import_open_clip():
    try:
        import open_clip
    except ImportError as e:
        raise WeightsUnavailable("frame model clip needs open_clip: pip install open_clip_torch "
                                 "(or use --frame-model efficientnet-lite0)") from e
    return open_clip


def _checkpoint(open_clip, arch: str, pretrained: str, weights: str | Path | None) -> Path:
    """Local checkpoint path: ``weights`` if given, else open_clip's hub download (cached)."""
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise WeightsUnavailable(f"{path}: CLIP checkpoint not found")
        return path
    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not cfg:
        raise WeightsUnavailable(f"open_clip has no pretrained weights {pretrained!r} for {arch!r}; "
                                 f"see open_clip.list_pretrained()")
    try:
        return Path(open_clip.download_pretrained(cfg))
    except Exception as e:  # hub unreachable, gated, disk full ...
        raise WeightsUnavailable(f"CLIP {arch}/{pretrained}: cannot download weights "
                                 f"({error_line(e)}); "
                                 "pass a local checkpoint with --weights") from e


class ClipEmbedder:
    """Frame embedder over an open_clip image tower: uint8 [N,H,W,3] -> unit-length [N, dim]."""

    def __init__(self, arch: str = DEFAULT_ARCH, pretrained: str = DEFAULT_PRETRAINED,
                 weights: str | Path | None = None, device: str = "cpu", batch_size: int = 32):
        import torch

        device = check_device(device)  # before any weights are read or downloaded
        open_clip = _import_open_clip()
        path = _checkpoint(open_clip, arch, pretrained, weights)
        try:
            model = open_clip.create_model(arch, pretrained=str(path), device=device)
        except Exception as e:
            raise WeightsUnavailable(f"{path}: cannot load as CLIP {arch} ({error_line(e)})") from e
        self.torch = torch
        self.device = torch.device(device)
        self.model = model.eval()
        visual = model.visual
        size = getattr(visual, "image_size", 224)
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.mean = torch.tensor(getattr(visual, "image_mean", None) or OPENAI_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(getattr(visual, "image_std", None) or OPENAI_STD, device=self.device).view(1, 3, 1, 1)
        self.dim = int(getattr(visual, "output_dim", 0) or model.text_projection.shape[1])
        self.batch_size = max(1, int(batch_size))
        version = getattr(open_clip, "__version__", "unknown")
        self.info = ModelInfo(f"clip-{arch}-{pretrained}", version, sha256_file(path))
        self.tokenizer = open_clip.get_tokenizer(arch)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Texts -> float32 [N, dim] L2-normalised CLIP text embeddings (zero-shot prompts)."""
        torch = self.torch
        with torch.inference_mode():
            feats = self.model.encode_text(self.tokenizer(list(texts)).to(self.device))
            return torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB [N,H,W,3] -> float32 [N, dim] L2-normalised CLIP image embeddings."""
        torch = self.torch
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames [N,H,W,3], got shape {frames.shape}")
        out = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(frames[i:i + self.batch_size])).to(self.device)
                x = x.permute(0, 3, 1, 2).float() / 255.0
                x = torch.nn.functional.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False,
                                                    antialias=True).clamp(0, 1)
                feats = self.model.encode_image((x - self.mean) / self.std)
                out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


@FRAMES.register("clip")
def _clip(arch: str = DEFAULT_ARCH, pretrained: str = DEFAULT_PRETRAINED, weights: str | Path | None = None,
          device: str = "cpu", batch_size: int = 32, **_: object) -> ClipEmbedder:
    return ClipEmbedder(arch=arch, pretrained=pretrained, weights=weights, device=device, batch_size=batch_size)
