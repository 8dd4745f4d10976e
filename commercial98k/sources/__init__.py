"""Where ``c98k fetch`` finds videos, and the per-video step that fetches one.

A *source* is one of:

* a yt-dlp search: ``ytsearch20:lipstick commercial``, ``bilisearch10:口红 广告``
  (the default sources of a category are its taxonomy queries, see ``default_sources``);
* an http(s) page yt-dlp can extract: a video, a channel, a playlist, a shop's catalog page;
* a URL file (``.txt``, ``.csv``, ``.tsv``, ``.parquet``) with an optional ``category`` column;
* a local folder of video files.

``expand_source`` turns a source into engine items (dicts with ``video_id``, ``platform``,
``platform_id``, ``url`` or ``path``, ``category``, ``query``); ``FetchStep`` is the picklable
step that turns an item into a ``videos`` manifest row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..fsutil import safe_id
from ..taxonomy import Category
from .common import VIDEO_EXTENSIONS, utc_now, videos_dir
from .listing import URL_FILE_SUFFIXES, UrlFileError, read_url_file
from .local import LocalImporter, scan_folder
from .ytdlp import (
    DEFAULT_SEARCH_COUNT,
    UnsafeSourceError,
    YtdlpDownloader,
    YtdlpOptions,
    check_crawl_url,
    classify_error,
    expand_url,
    fetcher_tag,
    is_search,
    offline_key,
    search_url,
    url_video_id,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SEARCH_COUNT", "VIDEO_EXTENSIONS", "FetchStep", "LocalImporter", "SourceSpec",
    "UnsafeSourceError", "UrlFileError", "YtdlpDownloader", "YtdlpOptions", "check_crawl_url", "classify_error",
    "default_sources", "expand_source", "fetcher_tag", "is_search", "offline_key", "parse_source",
    "read_url_file", "scan_folder", "search_url", "url_video_id", "videos_dir",
]


@dataclass(frozen=True)
class SourceSpec:
    """One parsed ``--source``: ``kind`` is ``search``, ``url``, ``url_file`` or ``folder``."""

    kind: str
    value: str
    category: str | None = None


def parse_source(text: str, category: str | None = None) -> SourceSpec:
    """Classify a ``--source`` value; raise ``UnsafeSourceError`` for anything fetch will not crawl."""
    text = text.strip()
    if is_search(text):
        return SourceSpec("search", text, category)
    path = Path(text)
    if "://" not in text and path.exists():
        if path.is_dir():
            return SourceSpec("folder", str(path), category)
        if path.suffix.lower() in URL_FILE_SUFFIXES:
            return SourceSpec("url_file", str(path), category)
        raise UnsafeSourceError(f"{text!r}: a single local file is not a source; put videos in a folder "
                                f"or URLs in a {'/'.join(URL_FILE_SUFFIXES)} file")
    if "://" not in text and (path.suffix.lower() in URL_FILE_SUFFIXES or "/" in text or text.startswith(".")):
        raise UnsafeSourceError(f"{text!r}: no such file or folder")
    return SourceSpec("url", check_crawl_url(text), category)


def default_sources(category: Category, count: int | None = None) -> list[SourceSpec]:
    """The taxonomy queries of a category as yt-dlp searches (``ytsearchN:`` / ``bilisearchN:``)."""
    return [SourceSpec("search", search_url(q, count), category.id) for q in category.queries]


def expand_source(spec: SourceSpec, options: YtdlpOptions, limit: int | None = None) -> Iterator[dict]:
    """Engine items behind one source.

    A URL that cannot be expanded (dead, unsupported, not http(s)) becomes an item that already
    carries its final ``status`` and ``error``: a row to record, not work for the step. A failed
    search is logged and yields nothing (it is not a video). Transient errors are retried.
    """
    if spec.kind == "folder":
        yield from scan_folder(spec.value, spec.category, limit)
        return
    if spec.kind in ("search", "url"):
        lines = [(spec.value, spec.category, spec.value)]
    elif spec.kind == "url_file":
        lines = [(u.url, u.category or spec.category, u.where) for u in read_url_file(spec.value)]
    else:
        raise ValueError(f"unknown source kind {spec.kind!r}")
    query = spec.value
    for url, category, where in lines:
        for attempt in range(options.retries + 1):
            try:
                items = expand_url(url, options, category, limit, query=query)
            except UnsafeSourceError as e:
                items = [_dead_item(url, category, query, "unsupported", str(e))]
            except Exception as e:  # a dead or unsupported URL: record it, go on with the others
                status, message, transient = classify_error(e)
                if transient and attempt < options.retries:
                    time.sleep(options.backoff(attempt))
                    continue
                if is_search(url):  # not a video: say so, record nothing
                    log.error("%s: search failed: %s", where, message)
                    items = []
                else:
                    items = [_dead_item(url, category, query, status, message)]
            yield from items
            break


def _dead_item(url: str, category: str | None, query: str, status: str, error: str) -> dict:
    key = offline_key(url) if "://" in url else None
    return {
        "source": "dead", "url": url, "category": category, "query": query,
        "platform": key[0] if key else None, "platform_id": key[1] if key else None,
        "video_id": safe_id(*key) if key else url_video_id(url),
        "status": status, "error": error, "crawled_at": utc_now(), "fetcher": fetcher_tag(),
    }


@dataclass(frozen=True)
class FetchStep:
    """The fetch step for any item: yt-dlp download or local import, chosen by ``item["source"]``."""

    data_root: str
    options: YtdlpOptions = YtdlpOptions()

    def __call__(self, item: dict) -> dict:
        source = item.get("source")
        if source == "local":
            return LocalImporter(self.data_root)(item)
        if source == "ytdlp":
            return YtdlpDownloader(self.data_root, self.options)(item)
        if source == "dead":
            return {k: v for k, v in item.items() if k != "source"}
        raise ValueError(f"unknown item source {source!r}")
