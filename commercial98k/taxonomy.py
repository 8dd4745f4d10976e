"""The e-commerce category taxonomy (``manifests/categories.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DEFAULT_TAXONOMY = Path(__file__).resolve().parent.parent / "manifests" / "categories.json"


@dataclass(frozen=True)
class Category:
    """One product category with its names, crawl queries and matching keywords."""

    id: str
    name_en: str
    name_zh: str
    queries: tuple[str, ...] = field(default_factory=tuple)
    keywords: tuple[str, ...] = field(default_factory=tuple)

    def description(self) -> str:
        """Text used to match a video's title/tags against this category (zero-shot)."""
        return f"{self.name_en} {self.name_zh}: " + ", ".join(self.keywords)


class UnknownCategory(KeyError):
    pass


@dataclass(frozen=True)
class Taxonomy:
    categories: tuple[Category, ...]

    def ids(self) -> list[str]:
        return [c.id for c in self.categories]

    def index(self, category_id: str) -> int:
        """Position of a category (its class id for the classifier head)."""
        for i, c in enumerate(self.categories):
            if c.id == category_id:
                return i
        raise UnknownCategory(f"unknown category {category_id!r}; known: {', '.join(self.ids())}")

    def get(self, category_id: str) -> Category:
        return self.categories[self.index(category_id)]

    def __len__(self) -> int:
        return len(self.categories)


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load and check a taxonomy file; defaults to the bundled ``manifests/categories.json``."""
    return _load(str(Path(path) if path else DEFAULT_TAXONOMY))


@lru_cache(maxsize=8)
def _load(path: str) -> Taxonomy:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    cats = []
    seen: set[str] = set()
    for i, c in enumerate(doc.get("categories", [])):
        for key in ("id", "name_en", "name_zh", "queries"):
            if not c.get(key):
                raise ValueError(f"{path}: category #{i} lacks {key!r}")
        if c["id"] in seen:
            raise ValueError(f"{path}: duplicate category id {c['id']!r}")
        seen.add(c["id"])
        cats.append(Category(c["id"], c["name_en"], c["name_zh"], tuple(c["queries"]), tuple(c.get("keywords", ()))))
    if not cats:
        raise ValueError(f"{path}: no categories")
    return Taxonomy(tuple(cats))
