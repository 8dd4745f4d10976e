"""The generated ads as a loopback web shop: category pages and their videos' page metadata."""

from __future__ import annotations

import csv
import io

from commercial98k.demo.corpus import STYLES
from commercial98k.testing.catalog_server import VideoMeta


def catalog_pages(doc: dict) -> tuple[dict[str, list[str]], dict[str, VideoMeta]]:
    """Pages (category -> file names) and per-file page metadata for the catalog server."""
    pages: dict[str, list[str]] = {}
    meta = {}
    for i, v in enumerate(doc["videos"]):
        pages.setdefault(v["category"], []).append(v["file"])
        meta[v["file"]] = VideoMeta(title=v["title"], description=v["description"], tags=list(v["tags"]),
                                    uploader=f"{STYLES[v['category']].nouns[0].split()[-1]} Store",
                                    view_count=1000 + 37 * i, like_count=20 + i)
    return pages, meta


def sources_csv(urls: dict[str, str]) -> bytes:
    """A ``url,category`` file (what ``c98k fetch --source`` reads) of category -> page URL."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["url", "category"])
    writer.writerows([url, category] for category, url in urls.items())
    return buf.getvalue().encode("utf-8")
