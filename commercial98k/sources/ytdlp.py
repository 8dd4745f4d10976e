"""yt-dlp sources: expand a search or a page into video entries (flat), and download one video.

Only yt-dlp's Python API is used (``yt_dlp.YoutubeDL``), never a shell. Only ``http(s)`` URLs
and search prefixes such as ``ytsearch20:`` or ``bilisearch5:`` are crawled.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import re
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from commercial98k.errors import C98kError
from commercial98k.storage.files import safe_id

from .common import one_line
from .filters import AdFilter, blocked_hint

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


class UnsafeSourceError(C98kError, ValueError):
    """A source that fetch refuses to crawl (not http(s), not a search prefix)."""


def is_search(text: str) -> bool:
    """``ytsearch20:query``-style text that one of yt-dlp's search extractors accepts."""
    m = _SEARCH.match(text)
    return bool(m) and first_extractor(text) not in (None, "Generic")


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
def first_extractor(url: str) -> str | None:
    """The key of the first yt-dlp extractor that claims ``url`` (``Generic`` for any web page), cached.

    yt-dlp runs this same scan over its ~1,800 extractors in every ``extract_info`` (60 ms a URL
    here); passing the key found once as ``ie_key`` spares the second scan.
    """
    from yt_dlp.extractor import gen_extractor_classes

    for ie in gen_extractor_classes():
        if ie.suitable(url):
            return ie.ie_key()
    return None


def offline_key(url: str) -> tuple[str, str] | None:
    """(extractor, id) of a single-video URL known without a request (e.g. YouTube watch URLs)."""
    from yt_dlp.extractor import get_info_extractor

    key = first_extractor(url)
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
    min_duration_s: float | None = 5.0  # an ad, not a vlog: entries outside are skipped before download
    max_duration_s: float | None = 180.0
    js_runtime: str | None = None  # deno executable; default: the venv's (the `deno` wheel), else PATH
    max_pages: int = 5  # result pages walked per search or catalog while --limit is not met
    block_limit: int = 5  # consecutive `blocked` results that stop requests to a platform for the run

    def format_selector(self) -> str:
        if self.format:
            return self.format
        h = int(self.max_height)
        # up to h lines with the best audio (merged), else the best single file up to h,
        # else the smallest available rendition with audio
        return f"bv*[height<=?{h}]+ba/b[height<=?{h}]/wv*+ba/w"

    def backoff(self, n: int) -> float:
        """Seconds before retry ``n + 1``: exponential, capped at 60 s, with jitter (half to all of it).

        yt-dlp calls it as ``backoff(n=...)``; jitter keeps parallel workers from retrying in step.
        """
        return min(60.0, self.retry_backoff_s * (2 ** n)) * random.uniform(0.5, 1.0)

    def ad_filter(self) -> AdFilter:
        return AdFilter(self.min_duration_s, self.max_duration_s)


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
        "js_runtimes": js_runtimes(options.js_runtime),
    }
    if options.sleep_s > 0:
        params.update(sleep_interval=options.sleep_s, sleep_interval_requests=options.sleep_s)
    if options.cookies:
        params["cookiefile"] = str(options.cookies)
    params.update(extra)
    return params


def deno_path(explicit: str | None = None) -> str | None:
    """The deno executable fetch hands to yt-dlp: ``explicit``, the ``deno`` wheel's, else PATH's."""
    import shutil

    if explicit:
        return explicit
    try:
        import deno  # the Python redistribution of the Deno binary (pinned in requirements.lock)

        found = deno.find_deno_bin()
        if found and Path(found).is_file():
            return str(found)
    except Exception:  # absent or broken wheel: fall back to PATH
        pass
    return shutil.which("deno")


@lru_cache(maxsize=8)
def js_runtimes(explicit: str | None = None) -> dict[str, dict]:
    """yt-dlp's ``js_runtimes`` parameter: deno with its path (yt-dlp only looks on PATH otherwise)."""
    path = deno_path(explicit)
    return {"deno": {"path": path}} if path else {"deno": {}}


def js_runtime_info(explicit: str | None = None) -> tuple[str, str] | None:
    """(path, version) of the JS runtime as yt-dlp sees it, or None when it finds none."""
    from yt_dlp.utils._jsruntime import DenoJsRuntime

    info = DenoJsRuntime(path=js_runtimes(explicit)["deno"].get("path")).info
    return (info.path, info.version) if info and info.supported else None


def fetcher_tag() -> str:
    """Provenance of the fetcher: ``yt-dlp <version>``."""
    from yt_dlp.version import __version__

    return f"yt-dlp {__version__}"


# --- one YoutubeDL per worker ---------------------------------------------------------------

_LOCAL = threading.local()


def shared_ydl(options: YtdlpOptions) -> tuple[Any, _CaptureLogger]:
    """This thread's ``YoutubeDL`` for ``options`` and its logger, built once and reused.

    Building a ``YoutubeDL`` (and its extractor list) costs more than a loopback download, so
    planning and every download of a worker share one; per-call parameters are set with
    ``ydl_params``. Thread-local: yt-dlp objects are not thread-safe.
    """
    cache = getattr(_LOCAL, "cache", None)
    if cache is None:
        cache = _LOCAL.cache = {}
    if options not in cache:
        import yt_dlp

        logger = _CaptureLogger()
        params = ytdlp_params(options, logger, format=options.format_selector(), overwrites=False,
                              continuedl=True, restrictfilenames=True)
        cache[options] = (yt_dlp.YoutubeDL(params), logger)
    ydl, logger = cache[options]
    logger.last_error = None
    return ydl, logger


@contextlib.contextmanager
def ydl_params(ydl: Any, **params: Any) -> Iterator[Any]:
    """Set YoutubeDL parameters for one call, then put the old values back."""
    missing = object()
    old = {k: ydl.params.get(k, missing) for k in params}
    ydl.params.update(params)
    try:
        yield ydl
    finally:
        for k, v in old.items():
            if v is missing:
                ydl.params.pop(k, None)
            else:
                ydl.params[k] = v


def classify_error(exc: BaseException, last_error: str | None = None) -> tuple[str, str, bool]:
    """(status, error line, transient) for an exception raised by yt-dlp.

    Unsupported URL -> ``unsupported``; geo-blocked -> ``skipped``; bot wall, HTTP 429,
    Bilibili 412/-352, login wall -> ``blocked`` (with a hint); anything else -> ``failed``.
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
    transient = bool(_TRANSIENT.search(message))
    hinted = blocked_hint(message)
    if hinted:
        return "blocked", hinted, transient
    return "failed", message, transient


def needs_js_runtime(source: str) -> bool:
    """Whether a source goes to YouTube (which needs a JS runtime for its formats since 2025.11)."""
    if source.startswith(("ytsearch", "ytsearchdate")):
        return True
    host = (urllib.parse.urlsplit(source).hostname or "").lower()
    return host == "youtu.be" or host == "youtube.com" or host.endswith(".youtube.com")
