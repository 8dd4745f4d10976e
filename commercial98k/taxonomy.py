"""The e-commerce category taxonomy (``categories.json``) and its brand table (``brands.json``).

Both ship inside the package (``commercial98k/data/``), so a wheel install finds them; pass
``path`` to ``load_taxonomy``/``load_brands`` (or ``ExtractorConfig.taxonomy_path``) to use others."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from commercial98k.errors import C98kError

#: the package's data folder (``[tool.setuptools.package-data]``), not the repository's
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_TAXONOMY = DATA_DIR / "categories.json"
DEFAULT_BRANDS = DEFAULT_TAXONOMY.with_name("brands.json")


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


class UnknownCategory(C98kError, KeyError):
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
    """Load and check a taxonomy file; defaults to the bundled ``data/categories.json``."""
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


@dataclass(frozen=True)
class Brand:
    """A brand: its names (the first is canonical; English and Chinese), its category and others it also sells."""

    names: tuple[str, ...]
    category: str
    also: tuple[str, ...] = ()


def load_brands(path: str | Path | None = None, taxonomy: Taxonomy | None = None) -> tuple[Brand, ...]:
    """The brand table; defaults to the bundled ``data/brands.json`` (beside ``categories.json``).
    Every category it names must be in ``taxonomy`` (the default taxonomy when None)."""
    return _load_brands(str(Path(path) if path else DEFAULT_BRANDS), tuple((taxonomy or load_taxonomy()).ids()))


@lru_cache(maxsize=8)
def _load_brands(path: str, ids: tuple[str, ...]) -> tuple[Brand, ...]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    out = []
    for category, entries in (doc.get("brands") or {}).items():
        for i, b in enumerate(entries):
            names = tuple(n.strip() for n in b.get("names", ()) if n and n.strip())
            where = f"{path}: brand #{i} of {category!r}"
            if not names:
                raise ValueError(f"{where} has no names")
            bad = [c for c in (category, *b.get("also", ())) if c not in ids]
            if bad:
                raise ValueError(f"{where} ({names[0]}): unknown category {bad[0]!r}; known: {', '.join(ids)}")
            out.append(Brand(names, category, tuple(c for c in b.get("also", ()) if c != category)))
    if not out:
        raise ValueError(f"{path}: no brands")
    return tuple(out)
