"""Zero-shot category check: how well a clip's text matches its crawl category.

Every taxonomy category's ``Category.description()`` (English and Chinese names plus keywords)
is embedded once with the text model; a clip's title, description and tags are embedded too.
Cosine similarities go through a softmax with a temperature; ``category_confidence`` is the
probability of the crawl category and ``predicted_category`` the arg-max, so rows whose crawl
category disagrees with their own text (noisy search results) can be filtered out.

``BrandMatcher`` finds the brands of ``commercial98k/data/brands.json`` in a clip's texts (on-screen text,
page text, tags) and turns them into the ``brand`` evidence: a cosmetics brand's name alone says
"cosmetics" where the text match finds no product word.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from commercial98k.models.registry import TextEmbedder
from commercial98k.taxonomy import Brand, Taxonomy, load_brands, load_taxonomy

#: Softmax temperature over cosine similarities (USE-m cosines of related texts differ by ~0.1-0.3).
DEFAULT_TEMPERATURE = 0.05
MAX_DESCRIPTION_CHARS = 300
#: Brand evidence: mass of a found brand's own category, of each category in its ``also``, and of every
#: category (the prior): one brand alone gives its category 0.77 of 12 categories before calibration,
#: since a name can be a sponsor, a retailer or a false reading.
BRAND_WEIGHT, ALSO_WEIGHT, BRAND_PRIOR = 1.0, 0.5, 1.0 / 36
_APOSTROPHE = re.compile(r"['’‘`´]")
_PUNCT = re.compile(r"[^\w&+]|_")
_JOINER = re.compile(r"\s*([&+])\s*")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


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


def brand_key(text: str) -> str:
    """Text as brand names are compared: NFKC (full-width -> half-width), case-folded, accents and
    apostrophes dropped, other punctuation a space, no space around ``&``/``+``."""
    t = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    t = unicodedata.normalize("NFC", "".join(c for c in t if not unicodedata.combining(c)))
    t = _JOINER.sub(r"\1", _PUNCT.sub(" ", _APOSTROPHE.sub("", t)))
    return " ".join(t.split())


class BrandMatcher:
    """Brands found in texts, and the category distribution they give.

    Latin-script names match whole words only ("dior" is not in "dioramas"), also written without
    their inner spaces or hyphens ("cocacola"); Chinese names match anywhere (Chinese has no spaces).
    At one position the longest name wins ("芭比波朗" over "芭比")."""

    def __init__(self, brands: Iterable[Brand], category_ids: list[str]):
        self.ids = list(category_ids)
        self.brands = [b for b in brands if b.category in self.ids]
        latin: dict[str, int] = {}
        cjk: dict[str, int] = {}
        for i, b in enumerate(self.brands):
            for name in b.names:
                key = brand_key(name)
                variants = {key} | ({key.replace(" ", "")} if " " in key and len(key.replace(" ", "")) >= 6 else set())
                for v in variants:
                    table = cjk if _CJK.search(v) else latin
                    if table.setdefault(v, i) != i:
                        raise ValueError(f"brand name {name!r} belongs to {self.brands[table[v]].names[0]!r} "
                                         f"and {b.names[0]!r}")
        self._names = {**latin, **cjk}
        self._latin = _alternation(latin, r"(?<![0-9a-z])(?:{})(?![0-9a-z])")
        self._cjk = _alternation(cjk, "{}")

    def find(self, text: str | None) -> list[Brand]:
        """Brands named in ``text``, in order of first mention."""
        if not text:
            return []
        key = brand_key(text)
        hits = sorted((m.start(), self._names[m.group(0)]) for rx in (self._latin, self._cjk) if rx
                      for m in rx.finditer(key))
        seen: dict[int, None] = {}
        for _, i in hits:
            seen.setdefault(i)
        return [self.brands[i] for i in seen]

    def evidence(self, texts: Iterable[str | None]) -> tuple[np.ndarray | None, list[str]]:
        """(category distribution of the brands found in any of ``texts``, or None; their canonical names)."""
        found: dict[str, Brand] = {}
        for t in texts:
            for b in self.find(t):
                found.setdefault(b.names[0], b)
        if not found:
            return None, []
        mass = np.full(len(self.ids), BRAND_PRIOR)
        for b in found.values():
            mass[self.ids.index(b.category)] += BRAND_WEIGHT
            for c in b.also:
                if c in self.ids:
                    mass[self.ids.index(c)] += ALSO_WEIGHT
        return mass / mass.sum(), list(found)


@lru_cache(maxsize=4)
def brand_matcher(taxonomy: Taxonomy | None = None) -> BrandMatcher:
    """The bundled brand table over ``taxonomy`` (brands of categories it lacks are left out)."""
    return BrandMatcher(load_brands(), (taxonomy or load_taxonomy()).ids())


def _alternation(names: dict[str, int], pattern: str) -> re.Pattern | None:
    if not names:
        return None
    return re.compile(pattern.format("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))))
