"""Local folders: import video files already on disk as if they had been fetched.

A file becomes platform ``local`` with ``platform_id = <safe stem>-<quick hash>``; the quick
hash (size, first and last 64 KiB) keeps ids of same-named files apart without reading
whole files. Files are hard-linked into ``<data_root>/videos`` when the file system allows
it, else copied (atomically).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from commercial98k.storage.files import DataRoot, atomic_path, safe_id

from .. import __version__
from ..faults import raise_if_environment
from .common import VIDEO_EXTENSIONS, finish_row, merge_tags, utc_now

_QUICK = 64 * 1024


def quick_hash(path: Path) -> str:
    """sha1 of the size, the first and the last 64 KiB of a file (10 hex digits)."""
    size = path.stat().st_size
    h = hashlib.sha1(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(_QUICK))
        if size > _QUICK:
            f.seek(max(_QUICK, size - _QUICK))
            h.update(f.read(_QUICK))
    return h.hexdigest()[:10]


def scan_folder(folder: str | Path, category: str | None, limit: int | None = None,
                categories: Collection[str] = (), stats: Counter | None = None) -> list[dict]:
    """Engine items for the video files under ``folder`` (recursive, sorted by path).

    A file's category is ``category`` (``-c``) if given, else the name of its nearest folder
    under ``folder`` that is one of ``categories`` (``ads/cosmetics/x.mp4``), else None.
    Hidden files and folders (``.name``) and files without a video extension are skipped and
    counted in ``stats`` (``hidden``, ``not_media``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    stats = stats if stats is not None else Counter()
    known = set(categories)
    items = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            stats["hidden"] += 1
            continue
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            stats["not_media"] += 1
            continue
        if limit and len(items) >= limit:
            break
        cat = category or next((part for part in reversed(rel.parts[:-1]) if part in known), None)
        platform_id = safe_id(path.stem, quick_hash(path))
        items.append({
            "source": "local", "path": str(path.resolve()), "url": None, "category": cat,
            "query": str(folder), "platform": "local", "platform_id": platform_id,
            "video_id": safe_id("local", platform_id), "hint": {"title": path.stem},
        })
    return items


@dataclass(frozen=True)
class LocalImporter:
    """The per-video step for a local file: link or copy it into the data root, probe and hash it."""

    data_root: str

    def __call__(self, item: dict) -> dict:
        src = Path(item["path"])
        title = (item.get("hint") or {}).get("title") or src.stem  # the name in the folder, not a link's target
        row = {
            "video_id": item["video_id"], "platform": "local", "platform_id": item["platform_id"],
            "url": None, "category": item.get("category"), "query": item.get("query"),
            "title": title, "platform_tags": merge_tags([], title), "crawled_at": utc_now(),
            "fetcher": f"commercial98k-local {__version__}", "status": "pending", "error": None,
        }
        root = DataRoot(self.data_root)
        dest = root.resolve(f"videos/{item['video_id']}{src.suffix.lower()}")
        if dest.parent != root.resolve("videos"):
            row.update(status="failed", error=f"ValueError: {dest} is not in the videos folder")
            return row
        if not dest.exists():
            try:
                _link_or_copy(src, dest)
            except OSError as e:
                raise_if_environment(e, self.data_root)  # the data root full or not writable: not this file's fault
                row.update(status="failed", error=f"{type(e).__name__}: {src}: {e.strerror or e}")
                return row
        return finish_row(row, dest, self.data_root)


def _link_or_copy(src: Path, dest: Path) -> None:
    with atomic_path(dest, suffix=dest.suffix) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            shutil.copyfile(src, tmp)
