"""Expand a search, a page or a playlist into video entries (flat), page after page.

Entries come lazily: the caller stops iterating once it has what it wants, and only then are
no more result pages requested. A search ``ytsearch20:q`` is walked 20 results a page; a
page (a shop's catalog, an RSS feed) is followed through its ``rel="next"`` link. Entries
whose flat metadata already shows they are not ads (``AdFilter``) come out as ``skipped``
items, never as work.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from urllib.parse import urljoin

from commercial98k.storage.files import safe_id

from .common import one_line, utc_now
from .ytdlp import (
    _LISTING_EXTRACTORS,
    _PAGE_EXTS,
    _SEARCH,
    YtdlpOptions,
    check_crawl_url,
    fetcher_tag,
    first_extractor,
    offline_key,
    shared_ydl,
    url_video_id,
    ydl_params,
)

log = logging.getLogger(__name__)

_NEXT = re.compile(r"<(?:link|a|atom:link)\b(?=[^>]*\brel=[\"']next[\"'])[^>]*\bhref=[\"']([^\"']+)[\"']", re.I)
_HTML_EXTRACTORS = ("Generic",)


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
    if url and "#__youtubedl_smuggle" in url:  # a feed item: its guid rides along with the URL
        from yt_dlp.utils import unsmuggle_url

        url, data = unsmuggle_url(url, {})
        if data.get("force_videoid") and not platform_id:
            extractor, platform_id = extractor or "Generic", data["force_videoid"]
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
                                             "view_count", "like_count", "upload_date", "tags", "license",
                                             "live_status")
                    if entry.get(k) is not None}
    return item


def filtered_item(item: dict, reason: str) -> dict:
    """``item`` recorded as ``skipped`` for ``reason`` (an entry that is not an ad), never downloaded."""
    return {**item, "source": "dead", "status": "skipped", "error": reason, "crawled_at": utc_now(),
            "fetcher": fetcher_tag(), "title": (item.get("hint") or {}).get("title"),
            "duration_s": (item.get("hint") or {}).get("duration")}


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


def iter_url(url: str, options: YtdlpOptions, category: str | None = None, query: str | None = None,
             page_size: int | None = None, depth: int = 2) -> Iterator[dict]:
    """Items behind a search, a page, a playlist or a single video URL, lazily, page by page.

    Uses flat extraction: a playlist's entries are listed without extracting each video. A
    known single-video URL (e.g. a YouTube watch URL) makes an item without any request.
    Raises ``yt_dlp.utils.DownloadError`` (or ``UnsafeSourceError``) if the first page cannot
    be read; a later page that fails ends the walk with a warning.
    """
    check_crawl_url(url)
    query = query or url
    known = offline_key(url)
    if known:
        yield entry_item({"url": url, "_type": "url", "ie_key": known[0], "id": known[1]}, category, query)
        return
    search = _SEARCH.match(url)
    page_url: str | None = url
    for page in range(max(1, options.max_pages)):
        if page_url is None:
            return
        if search:  # page k of "ytsearch20:q" is results 20k+1 .. 20(k+1) of "ytsearch20(k+1):q"
            n = page_size or (int(search.group("n")) if (search.group("n") or "").isdigit() else 20)
            target = f"{search.group('key')}{n * (page + 1)}:{search.group('query')}"
            window = {"playliststart": n * page + 1, "playlistend": n * (page + 1)}
        else:
            target, window = page_url, ({"playlistend": page_size} if page_size else {})
        try:
            info = _extract_flat(target, options, window)
        except Exception as e:
            if page == 0:
                raise
            log.warning("%s: page %d cannot be read, stopping there: %s", query, page + 1, one_line(str(e)))
            return
        count = 0
        for item in _items_of(info, options, category, query, depth):
            count += 1
            yield item
        # a full search page may have a next one; a page says so with rel="next"
        page_url = (url if count >= n else None) if search else _next_page(page_url, info, options)
        if page_url is not None and page + 1 >= options.max_pages:
            log.info("%s: stopped after %d result pages (--max-pages)", query, options.max_pages)


def expand_url(url: str, options: YtdlpOptions, category: str | None = None, limit: int | None = None,
               query: str | None = None, depth: int = 2) -> list[dict]:
    """The first ``limit`` items of ``iter_url`` as a list."""
    out: list[dict] = []
    for item in iter_url(url, options, category, query, depth=depth):
        out.append(item)
        if limit and len(out) >= limit:
            break
    return out


def _extract_flat(url: str, options: YtdlpOptions, window: dict) -> dict | None:
    from yt_dlp.utils import determine_ext

    ydl, logger = shared_ydl(options)
    with ydl_params(ydl, extract_flat="in_playlist", skip_download=True, match_filter=None,
                    playliststart=window.get("playliststart", 1), playlistend=window.get("playlistend"),
                    noplaylist=False, playlist_items=None):
        try:
            # the extractor found once (first_extractor, cached): yt-dlp need not scan its ~1,800 again
            raw = ydl.extract_info(url, download=False, process=False, ie_key=first_extractor(url))
            if raw and raw.get("_type", "video") in ("video", "url_transparent") and not raw.get("entries") \
                    and determine_ext(raw.get("url") or "", None) not in _PAGE_EXTS:  # not a link to a page
                return _single(raw, url)  # one video: its page is not extracted a second time to download
            return ydl.process_ie_result(raw, download=False) if raw else raw
        except Exception as e:
            if logger.last_error and not getattr(e, "_c98k_line", None):
                e._c98k_line = logger.last_error  # type: ignore[attr-defined]
            raise


def _single(raw: dict, url: str) -> dict:
    """A single video's unprocessed result as a flat entry that carries it (``_ie_result``) to the download."""
    from yt_dlp.utils import unsmuggle_url

    vid = raw.get("id") or unsmuggle_url(raw.get("url") or "", {})[1].get("force_videoid")
    return {**{k: raw.get(k) for k in ("title", "description", "uploader", "channel", "duration", "view_count",
                                        "like_count", "upload_date", "tags", "license", "live_status", "is_live")},
            "_type": "video", "id": vid, "extractor_key": raw.get("extractor_key"),
            "webpage_url": raw.get("webpage_url") or url, "_ie_result": raw}


def _next_page(url: str, info: dict | None, options: YtdlpOptions) -> str | None:
    """The ``rel="next"`` link of a page yt-dlp read with its generic extractor (catalogs, feeds)."""
    if not info or info.get("_type") != "playlist" or info.get("extractor_key") not in _HTML_EXTRACTORS:
        return None
    ydl, _ = shared_ydl(options)
    try:
        with ydl.urlopen(url) as response:
            text = response.read(2_000_000).decode("utf-8", "replace")
    except Exception as e:
        log.debug("%s: cannot look for a next page: %s", url, e)
        return None
    m = _NEXT.search(text)
    if not m:
        return None
    import html

    nxt = urljoin(url, html.unescape(m.group(1)))
    return nxt if nxt != url else None


def _items_of(info: dict | None, options: YtdlpOptions, category: str | None, query: str,
              depth: int) -> Iterator[dict]:
    if not info:
        return
    ad = options.ad_filter()
    if info.get("_type") != "playlist":
        item = entry_item(info, category, query)
        if info.get("_ie_result") is not None:
            item["_ie_result"] = info["_ie_result"]
        reason = ad(info, incomplete=True)
        yield filtered_item(item, reason) if reason else item
        return
    for entry in info.get("entries") or []:
        if not entry:
            continue
        if _is_playlist_entry(entry) and depth > 0:
            if entry.get("_type") == "playlist":
                yield from _items_of(entry, options, category, query, depth - 1)
                continue
            try:
                yield from iter_url(entry["url"], options, category, query, depth=depth - 1)
            except Exception as e:  # one broken sub-playlist must not stop the others
                log.warning("%s: cannot expand %s: %s", query, entry.get("url"), one_line(str(e)))
            continue
        item = entry_item(entry, category, query, in_playlist=True)
        reason = ad(entry, incomplete=True)
        yield filtered_item(item, reason) if reason else item
