"""A small loopback web shop that serves ad videos per category, for tests and the offline demo.

``CatalogServer`` runs ``http.server`` in a background thread on ``127.0.0.1`` (port 0, so the
OS picks a free port) and serves a folder of video files as if they were product ads on an
e-commerce site. yt-dlp crawls it with its *generic* extractor, exactly as it would crawl a
real shop page, so ``c98k fetch --source <catalog url>`` exercises the real code path offline.

URL layout (``<vid>`` is the file's safe stem, e.g. ``big_buck_bunny_0_30``)::

    /                               list of categories (links to the catalog pages)
    /<category>/index.html          catalog page of one category (``?page=N`` with ``per_page``)
    /<category>/feed.xml            the same entries as an RSS feed (``?page=N`` with ``per_page``)
    /<category>/v/<vid>.html        the product-video page of one file
    /media/<file name>              the video file itself
    /about.html                     a page without any video (yt-dlp: "Unsupported URL")

A **catalog page** lists one ``<a href>`` link to each video page for people and, for
machines, one OpenGraph video per product: ``<meta property="og:video" content="<absolute
url of the video page>">`` with ``og:video:type`` ``text/html`` (the video page is the
player, as YouTube's pages do with their embed player). yt-dlp's generic extractor turns a
page with several ``og:video`` tags into a playlist whose entries have the URL of each video
page and the id ``<vid>``; with ``extract_flat`` nothing else is requested. (A page with a
single ``og:video`` is one video to yt-dlp, its format URL being the video page;
``c98k fetch`` follows it.) Links given in ``extra_links`` (absolute URLs or server paths)
are listed the same way: use them for dead links, since any path the server does not know
answers 404.

A **video page** carries the product's metadata three ways: ``<title>`` and
``og:title``/``og:description``, ``<meta name="keywords">``, and a schema.org ``VideoObject``
in JSON-LD (``name``, ``description``, ``keywords``, ``author``, ``uploadDate``, ``license``,
``interactionStatistic`` with view and like counts, ``contentUrl``). yt-dlp's
generic extractor reads the JSON-LD (title, description, tags, uploader, upload date, view
and like counts) and follows ``contentUrl`` to the file. The page has no ``<video>`` element:
yt-dlp would prefer it over the JSON-LD and title the video "<title> (1)".

**Video files** are served with their Content-Type (``video/mp4``, ``video/webm``,
``video/x-matroska``, ``application/dash+xml`` for a DASH manifest listed as a video, whose
renditions are then given in ``assets``: files served but not listed), ``Accept-Ranges`` and
single-range ``Range`` requests (206), so interrupted downloads resume. ``throttle_bps``
slows file responses down (tests use it to kill a download midway; it may be changed while
the server runs). Every response for a file is recorded in ``hits`` (``Hit``: path, range
start, bytes sent, complete or not); ``requests`` counts requests per URL path; ``flaky``
(URL path -> n) answers the first n requests for a path with 503, to exercise retries.

**Crawling as it is**: ``VideoMeta.duration_s`` is the length a page and the feed
claim (default: the file's own), so an entry may claim 1,832 s; the feed carries it as
``itunes:duration``, which yt-dlp's flat extraction reads (search-result metadata). With
``per_page`` catalog pages and feeds list that many entries and link the next page with
``rel="next"``. ``status_codes`` (URL path -> code) always answers that code (429: a rate
limit); ``truncate`` (file name -> share) serves only that share of a file's bytes, as if
that were all of it (a cut download that still opens).

Only loopback hosts are accepted, and only files named in ``pages`` are served. Ids come
from file stems, so stems must be unique within a category; a file listed in two categories
has the same id on both pages (``c98k fetch`` keeps the first category it crawls).
"""

from __future__ import annotations

import html
import ipaddress
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from commercial98k.storage.files import safe_id

from ._http import CONTENT_TYPES, Hit, _Handler, _page, _Server, _Server6

__all__ = ["CONTENT_TYPES", "CatalogServer", "Hit", "VideoMeta", "default_meta", "is_loopback"]


@dataclass
class VideoMeta:
    """What a product-video page says about its video (defaults are derived from the file name)."""

    title: str
    description: str
    tags: list[str] = field(default_factory=list)
    uploader: str = "C98K Test Shop"
    upload_date: str = "2023-05-01"
    license: str = "https://creativecommons.org/licenses/by/3.0/"
    view_count: int = 1000
    like_count: int = 10
    duration_s: float | None = None  # what the page and the feed claim; None: the file's own (probed)


def default_meta(category: str, file_name: str, index: int) -> VideoMeta:
    """Metadata for a file the caller gave none for: title from the file stem and the category."""
    words = re.sub(r"[_\-.]+", " ", Path(file_name).stem).strip()
    return VideoMeta(
        title=f"{words.title()} - {category} ad",
        description=f"Product video #{index + 1} of the {category} catalog ({file_name}).",
        tags=[category, "advertisement", f"#{category}ad"],
        view_count=1000 * (index + 1),
        like_count=10 * (index + 1),
    )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (no DNS lookup)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CatalogServer:
    """Serve ``pages`` (category id -> file names under ``root``) as a shop on a loopback port.

    Use as a context manager::

        with CatalogServer(Path("videos"), {"cosmetics": ["a.mp4", "b.webm"]}) as shop:
            shop.category_url("cosmetics")   # http://127.0.0.1:PORT/cosmetics/index.html
    """

    def __init__(self, root: str | Path, pages: dict[str, list[str]], extra_links: dict[str, list[str]] | None = None,
                 host: str = "127.0.0.1", port: int = 0, meta: dict[str, VideoMeta] | None = None,
                 throttle_bps: float | None = None, site_name: str = "C98K Test Shop",
                 flaky: dict[str, int] | None = None, assets: list[str] | None = None,
                 per_page: int | None = None, status_codes: dict[str, int] | None = None,
                 truncate: dict[str, float] | None = None):
        if not is_loopback(host):
            raise ValueError(f"CatalogServer only binds loopback hosts, not {host!r}")
        self.root = Path(root)
        self.host = host
        self.port = port
        self.site_name = site_name
        self.throttle_bps = throttle_bps
        self.extra_links = {k: list(v) for k, v in (extra_links or {}).items()}
        self.pages = {k: list(v) for k, v in pages.items()}
        self.files: dict[str, Path] = {}  # served name -> path
        self.videos: dict[tuple[str, str], tuple[str, VideoMeta]] = {}  # (category, vid) -> (file, meta)
        self._vids: dict[str, list[str]] = {}  # category -> vids in page order
        for name in assets or []:
            self.files[_plain_name(name, self.root)] = self.root / name
        for category, names in pages.items():
            if not re.fullmatch(r"[A-Za-z0-9_-]+", category):
                raise ValueError(f"category id {category!r} is not a safe path segment")
            self._vids[category] = []
            for i, name in enumerate(names):
                vid = safe_id(Path(name).stem)
                if (category, vid) in self.videos:
                    raise ValueError(f"{name!r} and {self.videos[(category, vid)][0]!r} would share the page "
                                     f"{category}/v/{vid}.html; give files distinct stems")
                self.files[_plain_name(name, self.root)] = self.root / name
                self.videos[(category, vid)] = (name, (meta or {}).get(name) or default_meta(category, name, i))
                self._vids[category].append(vid)
        self.per_page = per_page  # catalog pages and feeds list this many entries, then rel="next"
        self.status_codes = dict(status_codes or {})  # URL path -> HTTP status it always answers (429 ...)
        self.truncate = dict(truncate or {})  # file name -> share of its bytes served, as if complete
        self._durations: dict[str, float | None] = {}
        self.flaky = Counter(flaky or {})  # URL path -> 503 answers still to give
        self.requests: Counter[str] = Counter()  # URL path -> GET/HEAD requests seen
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- URLs ---------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (still answers after ``stop``, for assertions on URLs)."""
        if self._thread is None:
            raise RuntimeError("CatalogServer has not been started; use it as a context manager")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def category_url(self, category_id: str) -> str:
        """URL of a category's catalog page."""
        if category_id not in self.pages:
            raise KeyError(f"no catalog for {category_id!r}; have {', '.join(self.pages)}")
        return f"{self.base_url}/{category_id}/index.html"

    def feed_url(self, category_id: str) -> str:
        """URL of a category's RSS feed (entries carry ``itunes:duration``: flat metadata)."""
        self.category_url(category_id)
        return f"{self.base_url}/{category_id}/feed.xml"

    def video_page_url(self, category_id: str, file_name: str) -> str:
        """URL of the product-video page of ``file_name`` in a category."""
        return f"{self.base_url}/{category_id}/v/{safe_id(Path(file_name).stem)}.html"

    def media_url(self, file_name: str) -> str:
        return f"{self.base_url}/media/{quote(file_name)}"

    def media_hits(self, file_name: str) -> list[Hit]:
        """Responses sent for one file so far."""
        with self.lock:
            return [h for h in self.hits if h.path == f"/media/{file_name}"]

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> CatalogServer:
        handler = type("Handler", (_Handler,), {"shop": self})
        cls = _Server6 if ":" in self.host else _Server
        self._httpd = cls((self.host, self.port), handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="catalog-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> CatalogServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- pages --------------------------------------------------------------------------------
    def index_html(self) -> str:
        links = "\n".join(f'<li><a href="/{c}/index.html">{html.escape(c)}</a></li>' for c in self.pages)
        return _page(self.site_name, f"<h1>{html.escape(self.site_name)}</h1>\n<ul>\n{links}\n</ul>")

    def _entries(self, category: str) -> list[tuple[str, str, str | None]]:
        """(page URL, title, vid or None for an extra link) of every entry of a category, in order."""
        base = self.base_url
        hrefs: list[tuple[str, str, str | None]] = [
            (f"{base}/{category}/v/{vid}.html", self.videos[(category, vid)][1].title, vid)
            for vid in self._vids[category]]
        hrefs += [(link if link.startswith("http") else f"{base}/{link.lstrip('/')}", link, None)
                  for link in self.extra_links.get(category, [])]
        return hrefs

    def _page_of(self, entries: list, page: int) -> tuple[list, bool]:
        if not self.per_page:
            return entries, False
        start = (page - 1) * self.per_page
        return entries[start:start + self.per_page], start + self.per_page < len(entries)

    def duration_of(self, category: str, vid: str) -> float | None:
        """The duration a page claims: the meta's, else the file's own (probed once; None if unreadable)."""
        name, m = self.videos[(category, vid)]
        if m.duration_s is not None:
            return float(m.duration_s)
        if name not in self._durations:
            from commercial98k.media.ffmpeg_io import probe

            try:
                self._durations[name] = probe(self.root / name).duration_s
            except Exception:
                self._durations[name] = None
        return self._durations[name]

    def feed_xml(self, category: str, page: int = 1) -> str:
        """An RSS 2.0 feed of a category (``itunes:duration`` per item, ``atom:link rel=next``)."""
        entries, more = self._page_of(self._entries(category), page)
        e = html.escape
        items = []
        for url, title, vid in entries:
            extra = ""
            if vid is not None:
                d = self.duration_of(category, vid)
                extra = f"<guid isPermaLink=\"false\">{e(vid)}</guid>" + (
                    f"<itunes:duration>{d:.0f}</itunes:duration>" if d is not None else "")
            items.append(f"<item><title>{e(title)}</title><link>{e(url)}</link>{extra}</item>")
        nxt = (f'<atom:link rel="next" href="{e(self.feed_url(category))}?page={page + 1}"/>' if more else "")
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
                'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd" xmlns:atom="http://www.w3.org/2005/Atom">'
                f"<channel><title>{e(category)} ads - {e(self.site_name)}</title>{nxt}\n"
                + "\n".join(items) + "\n</channel></rss>\n")

    def catalog_html(self, category: str, page: int = 1) -> str:
        entries, more = self._page_of(self._entries(category), page)
        hrefs = [(u, t) for u, t, _ in entries]
        head = "\n".join(f'<meta property="og:video" content="{html.escape(u)}">\n'
                         '<meta property="og:video:type" content="text/html">' for u, _ in hrefs)
        items = "\n".join(f'<li><a href="{html.escape(u)}">{html.escape(t)}</a></li>' for u, t in hrefs)
        title = f"{category} ads - {self.site_name}"
        if more:
            head += f'\n<link rel="next" href="{self.base_url}/{category}/index.html?page={page + 1}">'
        return _page(title, f"<h1>{html.escape(title)}</h1>\n<ul>\n{items}\n</ul>", head=head)

    def video_html(self, category: str, vid: str) -> str:
        name, m = self.videos[(category, vid)]
        page_url = f"{self.base_url}/{category}/v/{vid}.html"
        ld = {
            "@context": "https://schema.org", "@type": "VideoObject", "name": m.title,
            "description": m.description, "keywords": ",".join(m.tags),
            "author": {"@type": "Organization", "name": m.uploader}, "uploadDate": m.upload_date,
            "license": m.license, "contentUrl": self.media_url(name), "url": page_url,
            "encodingFormat": CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream"),
            "interactionStatistic": [
                {"@type": "InteractionCounter", "interactionType": {"@type": "WatchAction"},
                 "userInteractionCount": m.view_count},
                {"@type": "InteractionCounter", "interactionType": {"@type": "LikeAction"},
                 "userInteractionCount": m.like_count},
            ],
        }
        if self.duration_of(category, vid) is not None:
            ld["duration"] = f"PT{self.duration_of(category, vid):.3f}S"
        e = html.escape
        head = (f'<meta property="og:title" content="{e(m.title)}">\n'
                f'<meta property="og:description" content="{e(m.description)}">\n'
                f'<meta name="description" content="{e(m.description)}">\n'
                f'<meta name="keywords" content="{e(", ".join(m.tags))}">\n'
                f'<script type="application/ld+json">{json.dumps(ld, ensure_ascii=False)}</script>')
        body = (f"<h1>{e(m.title)}</h1>\n<p>{e(m.description)}</p>\n"
                f'<p><a href="{e(self.media_url(name))}">Download the video</a></p>')
        return _page(m.title, body, head=head)


def _plain_name(name: str, root: Path) -> str:
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        raise ValueError(f"{name!r}: give plain file names inside {root}")
    return name
