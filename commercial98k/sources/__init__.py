"""Where ``c98k fetch`` finds videos, and the per-video step that fetches one.

A *source* is one of:

* a yt-dlp search: ``ytsearch20:lipstick commercial``, ``bilisearch10:口红 广告``
  (the default sources of a category are its taxonomy queries, see ``default_sources``);
* an http(s) page yt-dlp can extract: a video, a channel, a playlist, a shop's catalog page;
* a URL file (``.txt``, ``.csv``, ``.tsv``, ``.parquet``) with an optional ``category`` column;
* a local folder of video files.

``expand_source`` turns a source into engine items (dicts with ``video_id``, ``platform``,
``platform_id``, ``url`` or ``path``, ``category``, ``query``), lazily and page by page;
entries that are not ads (``AdFilter``: length, lives) come out as ``skipped`` rows.
``FetchStage`` is the stage that turns an item into a ``videos`` manifest row:
``ok``, ``no_audio``, ``skipped``, ``blocked`` (bot wall, rate limit, login; see
``filters.Breaker``), ``unsupported`` or ``failed`` (``truncated (...)`` and ``empty file``
included, see ``inspect``).
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from commercial98k.engine.stage import Stage
from commercial98k.storage.files import safe_id

from ..taxonomy import Category
from .common import VIDEO_EXTENSIONS, is_retryable, utc_now, videos_dir
from .download import YtdlpDownloader, base_row
from .expand import expand_url, iter_url
from .filters import AdFilter, Breaker, platform_key
from .listing import URL_FILE_SUFFIXES, UrlFileError, read_url_file
from .local import LocalImporter, scan_folder
from .ytdlp import (
    DEFAULT_SEARCH_COUNT,
    UnsafeSourceError,
    YtdlpOptions,
    check_crawl_url,
    classify_error,
    fetcher_tag,
    is_search,
    js_runtime_info,
    offline_key,
    search_url,
    shared_ydl,
    url_video_id,
)

log = logging.getLogger(__name__)
_UNREACHABLE = re.compile(r"connection refused|timed? ?out|name resolution|name or service not known|"
                          r"network is unreachable|no route to host|getaddrinfo|nodename nor servname", re.I)

__all__ = [
    "DEFAULT_SEARCH_COUNT", "VIDEO_EXTENSIONS", "AdFilter", "Breaker", "ExpandStats", "FetchStage", "LocalImporter",
    "SourceSpec", "UnsafeSourceError", "UrlFileError", "YtdlpDownloader", "YtdlpOptions", "check_crawl_url",
    "classify_error", "default_sources", "expand_source", "expand_url", "fetcher_tag", "is_retryable", "is_search",
    "iter_url", "js_runtime_info", "offline_key", "parse_source", "platform_key", "read_url_file", "scan_folder",
    "search_url", "url_video_id", "videos_dir",
]


@dataclass
class ExpandStats:
    """What expanding the sources met besides items: for the run's summary."""

    sources: int = 0  # sources (or URL-file lines) tried
    read: int = 0  # of those, read without an error
    failures: list[tuple[str, str]] = field(default_factory=list)  # (where, one-line cause)
    duplicate_lines: int = 0  # URL lines repeated (first category kept)
    skipped_files: Counter = field(default_factory=Counter)  # hidden, not_media
    breaker_skipped: Counter = field(default_factory=Counter)  # platform -> sources not asked


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


def expand_source(spec: SourceSpec, options: YtdlpOptions, limit: int | None = None, *,
                  categories: Collection[str] = (), stats: ExpandStats | None = None,
                  breaker: Breaker | None = None, seen_urls: set[str] | None = None) -> Iterator[dict]:
    """Engine items behind one source, lazily (stop iterating and no more pages are requested).

    A URL that cannot be expanded (dead, unsupported, not http(s), blocked) becomes an item
    that already carries its final ``status`` and ``error``: a row to record, not work for the
    step. A failed search is noted in ``stats`` and yields nothing (it is not a video).
    Transient errors are retried with backoff. ``limit`` is the page size of searches.
    """
    stats = stats if stats is not None else ExpandStats()
    seen_urls = seen_urls if seen_urls is not None else set()
    if spec.kind == "folder":
        stats.sources += 1
        yield from scan_folder(spec.value, spec.category, None, categories, stats.skipped_files)
        stats.read += 1
        return
    if spec.kind in ("search", "url"):
        lines = [(spec.value, spec.category, spec.value)]
    elif spec.kind == "url_file":
        lines = [(u.url, u.category or spec.category, u.where) for u in read_url_file(spec.value)]
    else:
        raise ValueError(f"unknown source kind {spec.kind!r}")
    for url, category, where in lines:
        if url in seen_urls:
            stats.duplicate_lines += 1
            continue
        seen_urls.add(url)
        stats.sources += 1
        key = platform_key({"url": url})
        if breaker is not None and breaker.is_open(key):
            stats.breaker_skipped[key] += 1
            continue
        yield from _expand_line(url, category, where, spec.value, options, limit, stats, breaker, key)


def _expand_line(url: str, category: str | None, where: str, query: str, options: YtdlpOptions,
                 limit: int | None, stats: ExpandStats, breaker: Breaker | None, key: str) -> Iterator[dict]:
    for attempt in range(options.retries + 1):
        try:
            first = True
            for item in iter_url(url, options, category, query=query, page_size=limit if is_search(url) else None):
                if first:
                    stats.read += 1
                    first = False
                    if breaker is not None:
                        breaker.record(key, False)
                yield item
            if first:
                stats.read += 1
            return
        except UnsafeSourceError as e:
            yield _dead_item(url, category, query, "unsupported", str(e))
            return
        except Exception as e:  # a dead or unsupported URL: record it, go on with the others
            status, message, transient = classify_error(e, getattr(e, "_c98k_line", None))
            if transient and attempt < options.retries:
                time.sleep(options.backoff(attempt))
                continue
            stats.failures.append((where, message))
            if is_search(url) or status == "blocked":  # no row: not a video, or tried again next run
                if breaker is not None and breaker.record(key, status == "blocked"):
                    log.warning("%s", breaker.message(key))
                return
            # a dead page: its row goes through the breaker with the others
            yield {**_dead_item(url, category, query, status, message), "_unreachable": unreachable(message)}
            return


def unreachable(message: str) -> bool:
    """Whether an error means the network or host could not be reached at all (no answer to record)."""
    return bool(_UNREACHABLE.search(message))


def _dead_item(url: str, category: str | None, query: str, status: str, error: str) -> dict:
    key = offline_key(url) if "://" in url else None
    return {
        "source": "dead", "url": url, "category": category, "query": query,
        "platform": key[0] if key else None, "platform_id": key[1] if key else None,
        "video_id": safe_id(*key) if key else url_video_id(url),
        "status": status, "error": error, "crawled_at": utc_now(), "fetcher": fetcher_tag(),
    }


class FetchStage(Stage):
    """``c98k fetch`` as a stage: yt-dlp download or local import per item, chosen by ``item["source"]``.

    ``setup`` builds the worker's ``YoutubeDL`` once (its downloads reuse it); a platform whose
    ``breaker`` is open is not asked (the local engine's workers share the driver's breaker).
    A download holds no models: the executor leaves the process's thread limits alone.
    """

    key, kind = "video_id", "videos"
    batch_size = 1
    threads = 0

    def __init__(self, data_root: str, options: YtdlpOptions | None = None, breaker: Breaker | None = None):
        self.data_root, self.options, self.breaker = data_root, options or YtdlpOptions(), breaker

    def setup(self) -> None:
        super().setup()
        shared_ydl(self.options)  # this worker thread's YoutubeDL, reused by every download

    def process_batch(self, rows: list[dict]) -> list[dict]:
        return [self.fetch_one(item) for item in rows]

    def fetch_one(self, item: dict) -> dict:
        """The ``videos`` row of one item."""
        source = item.get("source")
        if source == "local":
            return LocalImporter(self.data_root)(item)
        if source == "ytdlp":
            return YtdlpDownloader(self.data_root, self.options, self.breaker)(item)
        if source == "dead":
            return {k: v for k, v in item.items() if k not in ("source", "hint") and not k.startswith("_")}
        raise ValueError(f"unknown item source {source!r}")

    def failed_rows(self, item: dict, error: str) -> list[dict]:
        return [dict(base_row(item), status="failed", error=error)]
