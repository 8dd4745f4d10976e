"""URL files: a text file (one URL a line), a CSV/TSV or a Parquet table with a ``url`` column.

An optional ``category`` column gives each URL its crawl category (a taxonomy id); rows
without one take the category given on the command line.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from commercial98k.errors import C98kError

URL_FILE_SUFFIXES = (".txt", ".lst", ".urls", ".csv", ".tsv", ".parquet")


class UrlFileError(C98kError, ValueError):
    """A URL file that cannot be read (missing column, unknown format)."""


@dataclass(frozen=True)
class UrlLine:
    url: str
    category: str | None
    where: str  # "file:line" for error messages


def is_url_file(path: str | Path) -> bool:
    p = Path(path)
    return p.is_file() and p.suffix.lower() in URL_FILE_SUFFIXES


def read_url_file(path: str | Path) -> list[UrlLine]:
    """The URLs (and categories) listed in a URL file, in file order, blanks and ``#`` comments dropped."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        rows = table.to_pylist()
        columns = table.column_names
        return _from_rows(path, rows, columns, first_line=0)
    if suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            rows = list(reader)
            columns = reader.fieldnames or []
        return _from_rows(path, rows, columns, first_line=2)
    if suffix in (".txt", ".lst", ".urls"):
        out = []
        for i, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(UrlLine(line, None, f"{path}:{i}"))
        return out
    raise UrlFileError(f"{path}: unknown URL file type {suffix!r}; use one of {', '.join(URL_FILE_SUFFIXES)}")


def _from_rows(path: Path, rows: list[dict], columns: list[str], first_line: int) -> list[UrlLine]:
    lower = {c.lower().strip(): c for c in columns}
    url_col = lower.get("url") or lower.get("webpage_url")
    if url_col is None:
        raise UrlFileError(f"{path}: no 'url' column (columns: {', '.join(columns) or 'none'})")
    cat_col = lower.get("category")
    out = []
    for i, r in enumerate(rows):
        url = str(r.get(url_col) or "").strip()
        if not url or url.startswith("#"):
            continue
        cat = r.get(cat_col) if cat_col else None
        cat = str(cat).strip() if cat not in (None, "") else None
        out.append(UrlLine(url, cat, f"{path}:{i + first_line}" if first_line else f"{path}[row {i}]"))
    return out
