"""The HTTP side of ``CatalogServer``: the request handler and the threading servers.

The handler serves any ``Shop`` (the pages, files and request bookkeeping it reads and updates);
``catalog_server.CatalogServer`` is the one implementation."""

from __future__ import annotations

import html
import mimetypes
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

CONTENT_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".mkv": "video/x-matroska",
                 ".mov": "video/quicktime", ".ts": "video/mp2t", ".m4a": "audio/mp4", ".mpd": "application/dash+xml",
                 ".m3u8": "application/vnd.apple.mpegurl"}
_CHUNK = 64 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass
class Hit:
    """One response for a video file."""

    path: str
    range_start: int | None
    bytes_sent: int = 0
    complete: bool = False
    status: int = 200


class Shop(Protocol):
    """What the handler needs of a shop: its pages and files, and the bookkeeping it updates
    under ``lock`` (requests per path, 503s still to give, file responses)."""

    site_name: str
    files: dict[str, Path]
    pages: dict[str, list[str]]
    videos: dict[tuple[str, str], tuple[str, Any]]  # (category, vid) -> (file, its meta)
    status_codes: dict[str, int]
    truncate: dict[str, float]
    throttle_bps: float | None
    flaky: Counter[str]
    requests: Counter[str]
    hits: list[Hit]
    lock: threading.Lock

    def index_html(self) -> str: ...

    def catalog_html(self, category: str, page: int = 1) -> str: ...

    def feed_xml(self, category: str, page: int = 1) -> str: ...

    def video_html(self, category: str, vid: str) -> str: ...


def _page(title: str, body: str, head: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"{head}\n</head><body>\n{body}\n</body></html>\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        """Clients that hang up (yt-dlp reads only the headers of a direct link) are normal."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    shop: Shop
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # keep test output quiet
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, head: bool) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = parse_qs(split.query)
        page = int(query["page"][0]) if query.get("page", [""])[0].isdigit() else 1
        parts = [p for p in path.split("/") if p]
        shop = self.shop
        with shop.lock:
            shop.requests[path] += 1
            flaky = shop.flaky[path] > 0
            if flaky:
                shop.flaky[path] -= 1
        if flaky:
            return self._send_error(503, "Service Unavailable")
        if path in shop.status_codes:
            code = shop.status_codes[path]
            return self._send_error(code, HTTPStatus(code).phrase)
        if not parts or parts == ["index.html"]:
            return self._send_html(shop.index_html(), head)
        if parts == ["about.html"]:
            return self._send_html(_page(f"About {shop.site_name}", "<p>A shop page without any video.</p>"), head)
        if len(parts) == 2 and parts[0] == "media" and parts[1] in shop.files:
            return self._send_file(shop.files[parts[1]], path, head)
        if len(parts) == 2 and parts[1] == "index.html" and parts[0] in shop.pages:
            return self._send_html(shop.catalog_html(parts[0], page), head)
        if len(parts) == 2 and parts[1] == "feed.xml" and parts[0] in shop.pages:
            return self._send_html(shop.feed_xml(parts[0], page), head, "application/rss+xml")
        if len(parts) == 3 and parts[1] == "v" and parts[2].endswith(".html"):
            key = (parts[0], parts[2][: -len(".html")])
            if key in shop.videos:
                return self._send_html(shop.video_html(*key), head)
        self._send_error(404, "Not Found")

    def _send_error(self, code: int, message: str) -> None:
        body = f"{code} {message}\n".encode()
        self.send_response(code, message)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_html(self, text: str, head: bool, ctype: str = "text/html") -> None:
        body = text.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_file(self, file: Path, url_path: str, head: bool) -> None:
        try:
            size = file.stat().st_size
            if file.name in self.shop.truncate:  # cut short, yet sent as if that were the whole file
                size = int(size * self.shop.truncate[file.name])
        except OSError:
            return self._send_error(404, "Not Found")
        start, end = 0, size - 1
        rng = self.headers.get("Range")
        status = 200
        if rng:
            m = _RANGE.match(rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                return self._send_range_error(size)
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start = max(0, size - int(m.group(2)))
            if start >= size or start > end:
                return self._send_range_error(size)
            status = 206
        ctype = CONTENT_TYPES.get(file.suffix.lower()) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Last-Modified", self.date_time_string(int(file.stat().st_mtime)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        hit = Hit(url_path, start if rng else None, status=status)
        with self.shop.lock:
            self.shop.hits.append(hit)
        self._copy(file, start, end - start + 1, hit)

    def _send_range_error(self, size: int) -> None:
        self.send_response(416, "Range Not Satisfiable")
        self.send_header("Content-Range", f"bytes */{size}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _copy(self, file: Path, start: int, length: int, hit: Hit) -> None:
        bps = self.shop.throttle_bps
        chunk = min(_CHUNK, max(1024, int(bps / 10))) if bps else _CHUNK
        t0 = time.monotonic()
        try:
            with open(file, "rb") as f:
                f.seek(start)
                while length > 0:
                    block = f.read(min(chunk, length))
                    if not block:
                        break
                    self.wfile.write(block)
                    length -= len(block)
                    hit.bytes_sent += len(block)
                    if bps:  # sleep until the average rate is back under the limit
                        ahead = hit.bytes_sent / bps - (time.monotonic() - t0)
                        if ahead > 0:
                            time.sleep(ahead)
            hit.complete = length == 0
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
