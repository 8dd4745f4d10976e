"""The feature store: one ``.npy`` per clip, per feature kind, per model.

Layout under the data root::

    features/<kind>/<model_key>/<clip_id>.npy      kind: audio | frames | tags

``model_key`` comes from ``ModelInfo.key()`` (name, version, weights checksum), so features
of different models never mix. The manifest stores the path relative to the data root in
``audio_embedding`` / ``frame_embedding`` / ``tag_embedding``; shards read them from here
without recomputing.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .fsutil import atomic_write_bytes, within

KINDS = ("audio", "frames", "tags")


class FeatureStore:
    """Read and write per-clip feature arrays under ``<data_root>/features``."""

    def __init__(self, data_root: str | os.PathLike):
        self.root = Path(data_root)

    def relpath(self, kind: str, model_key: str, clip_id: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown feature kind {kind!r}; use one of {KINDS}")
        return f"features/{kind}/{model_key}/{clip_id}.npy"

    def put(self, kind: str, model_key: str, clip_id: str, array: np.ndarray, dtype: str = "float16") -> str:
        """Store ``array`` atomically (as ``dtype``); return its path relative to the data root."""
        rel = self.relpath(kind, model_key, clip_id)
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array, dtype=dtype), allow_pickle=False)
        atomic_write_bytes(within(self.root, rel), buf.getvalue())
        return rel

    def has(self, rel: str | None) -> bool:
        return bool(rel) and within(self.root, rel).is_file()

    def get(self, rel: str, dtype: str | None = "float32") -> np.ndarray:
        """Load a stored array by its manifest reference."""
        arr = np.load(within(self.root, rel), allow_pickle=False)
        return arr.astype(dtype) if dtype else arr
