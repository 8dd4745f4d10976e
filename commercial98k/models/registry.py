"""Small registries for the swappable models: ``audio``, ``frames``, ``emotion``, ``text``.

A model module registers a factory under a short name::

    @AUDIO.register("musicnn")
    def _musicnn(**options) -> AudioEmbedder: ...

and the CLI picks it with one flag (``--audio-model openl3``). Every model exposes a
``ModelInfo`` so the manifest records which model, version and weights made each column.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    """Provenance of a model: recorded in the manifest next to the columns it made."""

    name: str
    version: str
    weights_sha256: str

    def tag(self) -> str:
        """Compact provenance string, e.g. ``musicnn-MSD 0.1.0 3f2a9c0d1e2b``."""
        return f"{self.name} {self.version} {self.weights_sha256[:12]}"

    def key(self) -> str:
        """File-system-safe key for the feature store (embeddings of different models never mix)."""
        return f"{self.name}-{self.version}-{self.weights_sha256[:12]}".replace(" ", "_").replace("/", "_")


@runtime_checkable
class AudioEmbedder(Protocol):
    """Audio model: mono float32 audio at ``sample_rate`` -> frame-level embedding sequence."""

    info: ModelInfo
    sample_rate: int
    dim: int
    hop_s: float

    def embed(self, audio: np.ndarray) -> np.ndarray:  # [T, dim] float32
        ...


@runtime_checkable
class FrameEmbedder(Protocol):
    """Image model: uint8 RGB frames [N, H, W, 3] -> embeddings [N, dim]."""

    info: ModelInfo
    dim: int

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        ...


@runtime_checkable
class TextEmbedder(Protocol):
    """Text model: list of strings (any language it supports) -> embeddings [N, dim]."""

    info: ModelInfo
    dim: int

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        ...


class Registry:
    """Name -> factory map with lazy registration from model modules."""

    def __init__(self, kind: str, modules: tuple[str, ...] = ()):
        self.kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}
        self._modules = modules
        self._loaded = False

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
            self._factories[name] = factory
            return factory

        return deco

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for m in self._modules:
                importlib.import_module(m)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._factories)

    def create(self, name: str, **options: Any) -> Any:
        """Build the model registered as ``name``; a clear error lists the known names."""
        self._load()
        if name not in self._factories:
            raise KeyError(f"unknown {self.kind} model {name!r}; choose one of: {', '.join(self.names())}")
        return self._factories[name](**options)


_P = "commercial98k.models."
AUDIO = Registry("audio", (_P + "musicnn", _P + "openl3"))
FRAMES = Registry("frames", (_P + "efficientnet", _P + "clip"))
TEXT = Registry("text", (_P + "text",))
EMOTION = Registry("emotion", (_P + "emotion_head",))


def check_device(device: str) -> str:
    """Return ``device`` if torch can run models on it on this machine; else raise ``ValueError`` saying why.

    Accepts ``cpu``, ``cuda``/``cuda:N``, ``mps`` and ``xpu``; torch is imported only when called.
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{device!r} is not a torch device; use cpu, cuda, cuda:N, mps or xpu") from None
    if dev.type == "cpu":
        return device
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "no GPU found" if torch.version.cuda else "this torch is built without CUDA"
            raise ValueError(f"{device!r}: CUDA is not available here ({why}, torch {torch.__version__}); use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{device!r}: there are only {torch.cuda.device_count()} CUDA device(s)")
        return device
    available = {"mps": lambda: torch.backends.mps.is_available(),
                 "xpu": lambda: hasattr(torch, "xpu") and torch.xpu.is_available()}
    if dev.type not in available:
        raise ValueError(f"{device!r}: device type {dev.type!r} is not supported; use cpu, cuda, cuda:N, mps or xpu")
    if not available[dev.type]():
        raise ValueError(f"{device!r}: {dev.type} is not available here; use cpu")
    return device
