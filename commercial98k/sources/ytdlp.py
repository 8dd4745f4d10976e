"""yt-dlp sources: expand a search or a page into video entries (flat), and download one video.

Only yt-dlp's Python API is used (``yt_dlp.YoutubeDL``), never a shell. Only ``http(s)`` URLs
and search prefixes such as ``ytsearch20:`` or ``bilisearch5:`` are crawled.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
import urllib.parse
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..fsutil import safe_id
from .common import finish_row, iso_date, merge_tags, one_line, utc_now, videos_dir

log = logging.getLogger(__name__)

_SEARCH = re.compile(r"^(?P<key>[a-z][a-z0-9]*search[a-z]*)(?P<n>[1-9][0-9]*|all)?:(?P<query>.+)$", re.S)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_TRANSIENT = re.compile(r"timed? ?out|temporar|connection (?:reset|refused|aborted)|remote end closed|"
                        r"incompleteread|http error (?:429|5\d\d)|too many requests|network is unreachable",
                        re.I)
DEFAULT_SEARCH_COUNT = 20
# extractors yt-dlp marks "any" whose flat entries are listings (a channel page lists its tabs)
_LISTING_EXTRACTORS = frozenset({"YoutubeTab"})
_PAGE_EXTS = ("html", "htm", "xhtml", "php", "asp", "aspx", "jsp")


class UnsafeSourceError(ValueError):
    """A source that fetch refuses to crawl (not http(s), not a search prefix)."""


def is_search(text: str) -> bool:
    """``ytsearch20:query``-style text that one of yt-dlp's search extractors accepts."""
    m = _SEARCH.match(text)
    return bool(m) and _first_extractor(text) not in (None, "Generic")


def check_crawl_url(text: str) -> str:
    """Return ``text`` if it is an http(s) URL with a host or a yt-dlp search; raise otherwise."""
    text = text.strip()
    if is_search(text):
        return text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return text
    raise UnsafeSourceError(f"{text!r}: not crawled: only http(s) URLs and yt-dlp searches "
                            "(ytsearchN:..., bilisearchN:...) are; local files only through a folder --source")


def search_url(query: str, count: int | None = None, key: str | None = None) -> str:
    """yt-dlp search text for ``query``: Bilibili for Chinese/Japanese/Korean queries, else YouTube."""
    key = key or ("bilisearch" if _CJK.search(query) else "ytsearch")
    return f"{key}{count or DEFAULT_SEARCH_COUNT}:{query}"


@lru_cache(maxsize=4096)
def _first_extractor(url: str) -> str | None:
    from yt_dlp.extractor import gen_extractor_classes

    for ie in gen_extractor_classes():
        if ie.suitable(url):
            return ie.ie_key()
    return None


def offline_key(url: str) -> tuple[str, str] | None:
    """(extractor, id) of a single-video URL known without a request (e.g. YouTube watch URLs)."""
    from yt_dlp.extractor import get_info_extractor

    key = _first_extractor(url)
    if key in (None, "Generic"):
        return None
    ie = get_info_extractor(key)
    if ie.is_single_video(url) is not True:
        return None
    temp_id = ie.get_temp_id(url)
    return (key.lower(), str(temp_id)) if temp_id else None


def url_video_id(url: str) -> str:
    """Stand-in id for a URL whose platform id is unknown (e.g. it failed before extraction)."""
    return safe_id("url", hashlib.sha1(url.encode("utf-8")).hexdigest()[:16])


@dataclass(frozen=True)
class YtdlpOptions:
    """How yt-dlp downloads: format, rate limit, retries, cookies. Picklable (Ray ships it)."""

    max_height: int = 480
    format: str | None = None  # a yt-dlp format selector; default: small video + best audio
    sleep_s: float = 0.0
    retries: int = 3
    retry_backoff_s: float = 2.0
    cookies: str | None = None
    socket_timeout_s: float = 30.0

    def format_selector(self) -> str:
        if self.format:
            return self.format
        h = int(self.max_height)
        # up to h lines with the best audio (merged), else the best single file up to h,
        # else the smallest available rendition with audio
        return f"bv*[height<=?{h}]+ba/b[height<=?{h}]/wv*+ba/w"

    def backoff(self, n: int) -> float:
        """Seconds to wait before retry ``n + 1`` (yt-dlp calls it as ``backoff(n=...)``)."""
        return min(60.0, self.retry_backoff_s * (2 ** n))


class _CaptureLogger:
    """yt-dlp logger: keeps the last error line; everything goes to Python logging at debug level."""

    def __init__(self) -> None:
        self.last_error: str | None = None

    def debug(self, msg: str) -> None:
        log.debug("%s", msg)

    info = debug

    def warning(self, msg: str) -> None:
        log.debug("yt-dlp warning: %s", msg)

    def error(self, msg: str) -> None:
        self.last_error = one_line(msg)
        log.debug("yt-dlp error: %s", msg)


def ytdlp_params(options: YtdlpOptions, logger: _CaptureLogger, **extra: Any) -> dict[str, Any]:
    """YoutubeDL parameters shared by expansion and download."""
    params: dict[str, Any] = {
        "quiet": True,
        "noprogress": True,
        "no_warnings": False,
        "logger": logger,
        "retries": options.retries,
        "fragment_retries": options.retries,
        "extractor_retries": options.retries,
        "retry_sleep_functions": {k: options.backoff for k in ("http", "fragment", "extractor")},
        "socket_timeout": options.socket_timeout_s,
        "enable_file_urls": False,
        "color": {"stderr": "no_color", "stdout": "no_color"},
    }
    if options.sleep_s > 0:
        params.update(sleep_interval=options.sleep_s, sleep_interval_requests=options.sleep_s)
    if options.cookies:
        params["cookiefile"] = str(options.cookies)
    params.update(extra)
    return params


def fetcher_tag() -> str:
    """Provenance of the fetcher: ``yt-dlp <version>``."""
    from yt_dlp.version import __version__

    return f"yt-dlp {__version__}"


# --- expansion -------------------------------------------------------------------------------

def entry_item(entry: dict, category: str | None, query: str, in_playlist: bool = False) -> dict:
    """An engine item from a (flat) yt-dlp entry: key, URL, and the metadata the entry already has.

    A playlist entry is re-extracted from its own ``url`` (a video page or a direct link; its
    ``webpage_url`` is the playlist's page); a single video from its ``webpage_url``.
    """
    if entry.get("_type") in ("url", "url_transparent") or in_playlist or entry.get("ext") in _PAGE_EXTS:
        # a page-typed "format" is a link to the video's own page (e.g. a one-video catalog)
        url = entry.get("url")
    else:
        url = entry.get("webpage_url") or entry.get("original_url") or entry.get("url")
    extractor = entry.get("ie_key") if entry.get("_type") in ("url", "url_transparent") else None
    extractor = extractor or entry.get("extractor_key")
    platform_id = entry.get("id")
    if url and not (extractor and platform_id):
        known = offline_key(url)
        if known:
            extractor, platform_id = known
    item = {"source": "ytdlp", "url": url, "category": category, "query": query,
            "platform": extractor.lower() if extractor and platform_id else None,
            "platform_id": str(platform_id) if extractor and platform_id else None}
    item["video_id"] = (safe_id(item["platform"], item["platform_id"]) if item["platform"]
                        else url_video_id(url or query))
    item["hint"] = {k: entry.get(k) for k in ("title", "description", "uploader", "channel", "duration",
                                             "view_count", "like_count", "upload_date", "tags", "license")
                    if entry.get(k) is not None}
    return item


def _is_playlist_entry(entry: dict) -> bool:
    """A flat entry that lists more videos (a channel's tab, a sub-playlist), not a video."""
    if entry.get("_type") == "playlist":
        return True
    key = entry.get("ie_key")
    if entry.get("_type") in ("url", "url_transparent") and key:
        if key in _LISTING_EXTRACTORS:
            return True
        from yt_dlp.extractor import get_info_extractor

        with contextlib.suppress(Exception):
            return get_info_extractor(key)._RETURN_TYPE == "playlist"
    return False


def expand_url(url: str, options: YtdlpOptions, category: str | None = None, limit: int | None = None,
               query: str | None = None, depth: int = 2) -> list[dict]:
    """Entries (engine items) behind a search, a page, a playlist or a single video URL.

    Uses flat extraction: a playlist's entries are listed without extracting each video.
    A known single-video URL (e.g. a YouTube watch URL) makes an item without any request.
    Raises ``yt_dlp.utils.DownloadError`` (or ``UnsafeSourceError``) if the URL cannot be expanded.
    """
    import yt_dlp

    check_crawl_url(url)
    query = query or url
    known = offline_key(url)
    if known:
        return [entry_item({"url": url, "_type": "url", "ie_key": known[0], "id": known[1]}, category, query)]
    logger = _CaptureLogger()
    params = ytdlp_params(options, logger, extract_flat="in_playlist", skip_download=True)
    if limit:
        params["playlistend"] = limit
    with yt_dlp.YoutubeDL(params) as ydl:
        info = ydl.extract_info(url, download=False)
    return _items_of(info, options, category, query, limit, depth)


def _items_of(info: dict | None, options: YtdlpOptions, category: str | None, query: str,
              limit: int | None, depth: int) -> list[dict]:
    if not info:
        return []
    if info.get("_type") != "playlist":
        return [entry_item(info, category, query)]
    items: list[dict] = []
    for entry in info.get("entries") or []:
        if limit and len(items) >= limit:
            break
        if not entry:
            continue
        if _is_playlist_entry(entry) and depth > 0:
            if entry.get("_type") == "playlist":
                sub = _items_of(entry, options, category, query, limit and limit - len(items), depth - 1)
            else:
                try:
                    sub = expand_url(entry["url"], options, category, limit and limit - len(items), query, depth - 1)
                except Exception as e:  # one broken sub-playlist must not stop the others
                    log.warning("%s: cannot expand %s: %s", query, entry.get("url"), one_line(str(e)))
                    continue
            items += sub
        else:
            items.append(entry_item(entry, category, query, in_playlist=True))
    return items[:limit] if limit else items


# --- download --------------------------------------------------------------------------------

def classify_error(exc: BaseException, last_error: str | None = None) -> tuple[str, str, bool]:
    """(status, error line, transient) for an exception raised by yt-dlp.

    Unsupported URL -> ``unsupported``; geo-blocked -> ``skipped``; anything else -> ``failed``.
    ``transient`` says whether a retry may help (timeouts, resets, HTTP 429/5xx).
    """
    from yt_dlp.utils import DownloadError, GeoRestrictedError, UnsupportedError

    cause = exc.exc_info[1] if isinstance(exc, DownloadError) and exc.exc_info and exc.exc_info[1] else exc
    message = one_line(str(exc) if isinstance(exc, DownloadError) else f"{type(exc).__name__}: {exc}")
    if last_error and isinstance(exc, DownloadError):
        message = last_error
    if isinstance(cause, UnsupportedError) or "Unsupported URL" in message:
        return "unsupported", message, False
    if isinstance(cause, GeoRestrictedError) or "not available in your country" in message.lower():
        return "skipped", message, False
    if re.search(r"sign in|login|cookies", message, re.I) and "--cookies" not in message:
        message += " (this platform wants a login: pass --cookies cookies.txt)"
    return "failed", message, bool(_TRANSIENT.search(message))


@dataclass(frozen=True)
class YtdlpDownloader:
    """The per-video step: download one item with yt-dlp, then probe and hash it into a row.

    Files go to ``<data_root>/videos/<video_id>.<ext>`` (yt-dlp picks ``ext``; partial
    downloads stay in ``videos/.partial`` and never count). A file already complete there is
    not downloaded again.
    """

    data_root: str
    options: YtdlpOptions = YtdlpOptions()

    def __call__(self, item: dict) -> dict:
        row = base_row(item)
        url = item.get("url")
        try:
            check_crawl_url(url or "")
        except UnsafeSourceError as e:
            row.update(status="unsupported", error=str(e) if url else "the entry has no URL of its own")
            return row
        for attempt in range(self.options.retries + 1):
            logger = _CaptureLogger()
            try:
                info = self._download(url, item, logger)
            except Exception as e:  # yt-dlp raises many types; classify, maybe retry
                status, message, transient = classify_error(e, logger.last_error)
                row.update(status=status, error=message)
                if transient and attempt < self.options.retries:
                    time.sleep(self.options.backoff(attempt))
                    continue
                return row
            return self._finish(row, info, item.get("hint") or {})
        return row

    def _download(self, url: str, item: dict, logger: _CaptureLogger) -> dict:
        import yt_dlp

        out = videos_dir(self.data_root).resolve()
        stem = item["video_id"]
        params = ytdlp_params(
            self.options, logger,
            format=self.options.format_selector(),
            paths={"home": str(out), "temp": str(out / ".partial")},
            outtmpl={"default": f"{stem}.%(ext)s"},
            noplaylist=True, playlist_items="1", overwrites=False, continuedl=True, restrictfilenames=True,
            match_filter=_not_live,
        )
        with yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.extract_info(url, download=True)
        if info and info.get("_type") == "playlist":  # a page that holds several videos: only the first
            entries = [e for e in info.get("entries") or [] if e]
            info = entries[0] if entries else None
        if not info:
            raise RuntimeError(f"yt-dlp returned nothing for {url}")
        return ydl.sanitize_info(info)

    def _finish(self, row: dict, info: dict, hint: dict) -> dict:
        downloads = info.get("requested_downloads") or []
        path = downloads[-1].get("filepath") if downloads else info.get("filepath")
        if not path:
            row.update(status="skipped", error=f"not downloaded: {_not_live(info) or 'yt-dlp selected no format'}")
            return row
        path = Path(path)
        if path.resolve().parent != videos_dir(self.data_root).resolve():  # never, with our outtmpl
            row.update(status="failed", error=f"ValueError: {path} is outside {videos_dir(self.data_root)}")
            return row
        if not row.get("platform") and info.get("extractor_key") and info.get("id"):
            row.update(platform=info["extractor_key"].lower(), platform_id=str(info["id"]))
        title = info.get("title") or hint.get("title")
        description = info.get("description") or hint.get("description")
        row.update(
            url=info.get("webpage_url") or row["url"],
            title=title,
            description=description,
            uploader=info.get("uploader") or info.get("channel") or hint.get("uploader") or hint.get("channel"),
            license=info.get("license") or hint.get("license"),
            platform_tags=merge_tags(info.get("tags") or hint.get("tags"), title, description),
            upload_date=iso_date(info.get("upload_date") or hint.get("upload_date")),
            view_count=_int(info.get("view_count", hint.get("view_count"))),
            like_count=_int(info.get("like_count", hint.get("like_count"))),
            duration_s=_float(info.get("duration", hint.get("duration"))),
        )
        return finish_row(row, path, self.data_root)


def base_row(item: dict) -> dict:
    """The row an item starts as (status ``pending`` until the step decides)."""
    return {
        "video_id": item["video_id"], "platform": item.get("platform"), "platform_id": item.get("platform_id"),
        "url": item.get("url"), "category": item.get("category"), "query": item.get("query"),
        "title": (item.get("hint") or {}).get("title"), "crawled_at": utc_now(), "status": "pending",
        "error": None, "fetcher": fetcher_tag(),
    }


def _not_live(info: dict, *, incomplete: bool = False) -> str | None:
    if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
        return "live stream or premiere: nothing finished to download"
    return None


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _float(v: Any) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None
