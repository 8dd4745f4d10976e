"""The per-video yt-dlp step: download one item with the worker's ``YoutubeDL``, then check the file."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from commercial98k.storage.files import DataRoot

from ..faults import raise_if_environment
from .common import finish_row, iso_date, merge_tags, utc_now, videos_dir
from .filters import Breaker, platform_key
from .ytdlp import (
    UnsafeSourceError,
    YtdlpOptions,
    check_crawl_url,
    classify_error,
    fetcher_tag,
    shared_ydl,
    ydl_params,
)


@dataclass(frozen=True)
class YtdlpDownloader:
    """Download one item with yt-dlp, then probe, check and hash it into a row.

    Files go to ``<data_root>/videos/<video_id>.<ext>`` (yt-dlp picks ``ext``; partial
    downloads stay in ``videos/.partial`` and never count). A file already complete there is
    not downloaded again. The video page is checked with ``AdFilter`` before its media is
    requested (``skipped`` with the reason). A platform whose ``breaker`` is open is not asked.
    """

    data_root: str
    options: YtdlpOptions = YtdlpOptions()
    breaker: Breaker | None = field(default=None, compare=False)

    def __call__(self, item: dict) -> dict:
        row = base_row(item)
        url = item.get("url")
        try:
            check_crawl_url(url or "")
        except UnsafeSourceError as e:
            row.update(status="unsupported", error=str(e) if url else "the entry has no URL of its own")
            return row
        key = platform_key(item)
        if self.breaker is not None and self.breaker.is_open(key):
            row.update(status="blocked", error=f"not tried: {self.breaker.message(key)}")
            return row
        for attempt in range(self.options.retries + 1):
            ydl, logger = shared_ydl(self.options)
            try:
                info = self._download(ydl, url, item, first=attempt == 0)
            except Exception as e:  # yt-dlp raises many types; classify, maybe retry
                raise_if_environment(e, self.data_root)  # "unable to write data: No space left on device"
                status, message, transient = classify_error(e, logger.last_error)
                row.update(status=status, error=message)
                if transient and attempt < self.options.retries:
                    time.sleep(self.options.backoff(attempt))
                    continue
                return row
            return self._finish(row, info, item.get("hint") or {})
        return row

    def _download(self, ydl: Any, url: str, item: dict, first: bool = True) -> dict:
        out = videos_dir(self.data_root)
        outtmpl = {**ydl.params.get("outtmpl", {}), "default": f"{item['video_id']}.%(ext)s"}
        with ydl_params(ydl, paths={"home": str(out), "temp": str(out / ".partial")}, outtmpl=outtmpl,
                        noplaylist=True, playlist_items="1", extract_flat=False, skip_download=False,
                        playliststart=1, playlistend=None, match_filter=self.options.ad_filter()):
            # the page first (no media request), checked like a flat entry, then the download
            info = item.get("_ie_result") if first else None  # planning read the page already
            info = info or ydl.extract_info(url, download=False, process=False)
            if info and (info.get("_type") == "playlist" or not self.options.ad_filter()(info)):
                info = ydl.process_ie_result(info, download=True)
        if info and info.get("_type") == "playlist":  # a page that holds several videos: only the first
            entries = [e for e in info.get("entries") or [] if e]
            info = entries[0] if entries else None
        if not info:
            raise RuntimeError(f"yt-dlp returned nothing for {url}")
        return ydl.sanitize_info(info)

    def _finish(self, row: dict, info: dict, hint: dict) -> dict:
        downloads = info.get("requested_downloads") or []
        path = downloads[-1].get("filepath") if downloads else info.get("filepath")
        duration = _float(info.get("duration", hint.get("duration")))
        if not path:
            reason = self.options.ad_filter()(info) or "not downloaded: yt-dlp selected no format"
            row.update(status="skipped", error=reason, duration_s=duration, title=info.get("title") or row["title"])
            return row
        path = Path(path)
        try:
            inside = DataRoot(self.data_root).relative(path) == f"videos/{path.name}"
        except ValueError:
            inside = False
        if not inside:  # never, with our outtmpl
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
            duration_s=duration,
        )
        return finish_row(row, path, self.data_root, reported_s=duration)


def base_row(item: dict) -> dict:
    """The row an item starts as (status ``pending`` until the step decides)."""
    return {
        "video_id": item["video_id"], "platform": item.get("platform"), "platform_id": item.get("platform_id"),
        "url": item.get("url"), "category": item.get("category"), "query": item.get("query"),
        "title": (item.get("hint") or {}).get("title"), "crawled_at": utc_now(), "status": "pending",
        "error": None, "fetcher": fetcher_tag(),
    }


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
