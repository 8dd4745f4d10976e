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

from commercial98k.storage.files import DataRoot, atomic_write_bytes

KINDS = ("audio", "frames", "tags")


class FeatureStore:
    """Read and write per-clip feature arrays under ``<data_root>/features`` (paths through ``DataRoot``)."""

    def __init__(self, data_root: str | os.PathLike | DataRoot):
        self.data_root = DataRoot(data_root)
        self.root: Path = self.data_root.root

    def relpath(self, kind: str, model_key: str, clip_id: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown feature kind {kind!r}; use one of {KINDS}")
        return f"features/{kind}/{model_key}/{clip_id}.npy"

    def put(self, kind: str, model_key: str, clip_id: str, array: np.ndarray, dtype: str = "float16") -> str:
        """Store ``array`` atomically (as ``dtype``); return its path relative to the data root."""
        rel = self.relpath(kind, model_key, clip_id)
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array, dtype=dtype), allow_pickle=False)
        atomic_write_bytes(self.data_root.resolve(rel), buf.getvalue())
        return rel

    def has(self, rel: str | None) -> bool:
        """True when the manifest reference ``rel`` names an existing file."""
        return bool(rel) and self.data_root.resolve(rel).is_file()

    def get(self, rel: str, dtype: str | None = "float32", mmap: bool = False) -> np.ndarray:
        """Load a stored array by its manifest reference (cast to ``dtype`` unless None; ``mmap``:
        memory-mapped, read-only)."""
        arr = np.load(self.data_root.resolve(rel), allow_pickle=False, mmap_mode="r" if mmap else None)
        return arr.astype(dtype, copy=False) if dtype else arr
