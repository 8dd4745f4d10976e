"""Zero-shot category check: how well a clip's text matches its crawl category.

Every taxonomy category's ``Category.description()`` (English and Chinese names plus keywords)
is embedded once with the text model; a clip's title, description and tags are embedded too.
Cosine similarities go through a softmax with a temperature; ``category_confidence`` is the
probability of the crawl category and ``predicted_category`` the arg-max, so rows whose crawl
category disagrees with their own text (noisy search results) can be filtered out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.registry import TextEmbedder
from ..taxonomy import Taxonomy, load_taxonomy

#: Softmax temperature over cosine similarities (USE-m cosines of related texts differ by ~0.1-0.3).
DEFAULT_TEMPERATURE = 0.05
MAX_DESCRIPTION_CHARS = 300


def clip_text(title: str | None, description: str | None = None, tags: list[str] | None = None) -> str:
    """The text matched against the taxonomy: title, start of the description, tags."""
    parts = [title or "", (description or "")[:MAX_DESCRIPTION_CHARS], " ".join(tags or [])]
    return " ".join(" ".join(p.split()) for p in parts if p and p.strip())


@dataclass(frozen=True)
class CategoryMatch:
    predicted_category: str | None
    category_confidence: float | None
    probs: dict[str, float]


class CategoryMatcher:
    """Softmax over text similarities between clips and the taxonomy's category descriptions."""

    def __init__(self, text_model: TextEmbedder, taxonomy: Taxonomy | None = None,
                 temperature: float = DEFAULT_TEMPERATURE):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.text_model = text_model
        self.taxonomy = taxonomy or load_taxonomy()
        self.temperature = temperature
        self.ids = self.taxonomy.ids()
        self.category_embeddings = _unit(text_model.embed_texts([c.description() for c in self.taxonomy.categories]))

    def probabilities(self, texts: list[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """[N, n_categories] softmax probabilities; rows of empty texts are NaN.

        ``embeddings`` (the text model's embeddings of ``texts``) skips embedding them again.
        """
        if not texts:
            return np.zeros((0, len(self.ids)))
        emb = _unit(self.text_model.embed_texts(texts) if embeddings is None else embeddings)
        logits = emb @ self.category_embeddings.T / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        p[[not t.strip() for t in texts]] = np.nan
        return p

    def match(self, texts: list[str], crawl_categories: list[str | None],
              embeddings: np.ndarray | None = None) -> list[CategoryMatch]:
        """Predicted category and the confidence of each crawl category (None if unknown/no text)."""
        if len(texts) != len(crawl_categories):
            raise ValueError("texts and crawl_categories differ in length")
        probs = self.probabilities(texts, embeddings)
        out = []
        for row, crawl in zip(probs, crawl_categories, strict=True):
            if np.isnan(row).any():
                out.append(CategoryMatch(None, None, {}))
                continue
            conf = float(row[self.ids.index(crawl)]) if crawl in self.ids else None
            out.append(CategoryMatch(self.ids[int(row.argmax())], conf,
                                     {c: float(v) for c, v in zip(self.ids, row, strict=True)}))
        return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)
