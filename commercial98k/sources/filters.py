"""What fetch refuses before a download: entries that are not ads (length, lives), blocked platforms.

``AdFilter`` is a yt-dlp ``match_filter``: it sees the flat metadata of search and playlist
entries (``incomplete=True``) and the full metadata of a video page before its media is
requested. ``blocked_hint`` recognises bot walls, rate limits and login walls in yt-dlp's
error lines; ``Breaker`` stops requests to a platform after K consecutive blocks.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field

#: yt-dlp error lines that mean "the platform refuses us", not "this video is broken".
_BLOCKED = re.compile(
    r"confirm you.{0,3}re not a bot|http error 429|too many requests|"
    r"blocked by server \(4\d\d\)|http error 412|precondition failed|rejected by server \(-?352\)|"
    r"\bcode\W+-352\b|login required|log ?in to|sign in to|only available for registered users|"
    r"use --cookies|members-only|this video is private",
    re.I)
BLOCKED_HINT = ("blocked by the platform (bot wall, rate limit or login): pass --cookies FILE "
                "exported from a logged-in browser, and slow down with --sleep 5")


def blocked_hint(message: str) -> str | None:
    """The error line plus a hint if ``message`` is a bot wall / rate limit / login wall, else None."""
    if not _BLOCKED.search(message):
        return None
    return message if "--sleep" in message else f"{message} ({BLOCKED_HINT})"


def _fmt_s(s: float) -> str:
    return f"{s:,.0f}" if s >= 100 else f"{s:g}"


@dataclass(frozen=True)
class AdFilter:
    """Keep entries whose length fits an ad (``min_s``..``max_s``), never lives or premieres.

    Returns None to keep an entry, else the reason (``duration 1,832 s > --max-duration 180``).
    An entry without a known duration is kept; its video page is checked again before download.
    """

    min_s: float | None = 5.0
    max_s: float | None = 180.0

    def __call__(self, info: dict, *, incomplete: bool = False) -> str | None:
        live = info.get("live_status")
        if info.get("is_live") or live in ("is_live", "is_upcoming", "post_live"):
            kind = "premiere" if live == "is_upcoming" else "live stream"
            return f"{kind}: nothing finished to download"
        try:
            d = float(info.get("duration"))
        except (TypeError, ValueError):
            return None
        if self.max_s is not None and d > self.max_s:
            return f"duration {_fmt_s(d)} s > --max-duration {_fmt_s(self.max_s)}"
        if self.min_s is not None and d < self.min_s:
            return f"duration {_fmt_s(d)} s < --min-duration {_fmt_s(self.min_s)}"
        return None


def is_filter_reason(error: str | None) -> bool:
    """Whether a ``skipped`` row's error was written by ``AdFilter`` (re-checked on a rerun)."""
    return bool(error) and error.startswith(("duration ", "live stream:", "premiere:"))


def platform_key(item: dict) -> str:
    """The circuit breaker's key: the extractor (``youtube``, ``bilibili``), or the host for generic pages."""
    platform = (item.get("platform") or "").lower()
    url = item.get("url") or item.get("query") or ""
    if platform and platform != "generic":
        return platform.removesuffix("search").split(":")[0]
    if url.startswith(("ytsearch", "ytsearchdate")):
        return "youtube"
    if url.startswith("bilisearch"):
        return "bilibili"
    return urllib.parse.urlsplit(url).netloc or platform or "?"


@dataclass
class Breaker:
    """Counts consecutive ``blocked`` results per platform; after ``limit`` of them the platform is off.

    Thread-safe: the local engine's workers share one. (Ray tasks each see a copy, so there
    the breaker only acts on planning and on what the driver has seen.)
    """

    limit: int = 5
    streak: Counter = field(default_factory=Counter)
    tripped: dict[str, int] = field(default_factory=dict)  # platform -> items not tried since
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def is_open(self, key: str) -> bool:
        """True when ``key`` is off for this run (and counts the item turned away)."""
        with self._lock:
            if key in self.tripped:
                self.tripped[key] += 1
                return True
            return False

    def record(self, key: str, blocked: bool) -> bool:
        """Note one result; True when this one trips the breaker."""
        with self._lock:
            if not blocked:
                self.streak[key] = 0
                return False
            self.streak[key] += 1
            if self.limit and self.streak[key] >= self.limit and key not in self.tripped:
                self.tripped[key] = 0
                return True
            return False

    def message(self, key: str) -> str:
        return (f"{key}: {self.limit} blocked requests in a row; no more requests to it in this run "
                f"(the other sources go on; rerun later, with --cookies or a larger --sleep)")
