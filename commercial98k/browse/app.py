"""The ``c98k browse`` web app (Starlette): a JSON API over the clip index, the data root's media,
keyframe thumbnails, corrections, and the static front end (``static/``, no build step).

Endpoints: ``GET /api/meta``, ``GET /api/clips?<filters>``, ``GET /api/failures``,
``GET /api/corrections``, ``POST /api/corrections``, ``GET /media/<path under the data root>``
(HTTP Range), ``GET /thumb?video=<path>&t=<seconds>``. Errors are JSON ``{"error": "..."}``
with a 4xx status naming the field or path.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import threading
from collections import defaultdict
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from commercial98k.manifest.corrections import (
    Correction,
    CorrectionError,
    from_dict,
    load_corrections,
    save_correction,
)
from commercial98k.storage.files import DataRoot

from ..taxonomy import Taxonomy, load_taxonomy
from .files import Refused, Thumbnails, served_path
from .index import ClipIndex
from .queries import MatchCache, QueryError, facets, failures, find_clip, parse_query, run_query, stream_query

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
MAX_BODY = 16_384  # a correction is a few hundred bytes
CLIENT_FIELDS = {"clip_id", "kind", "value", "reason", "other", "who"}


def _user() -> str:
    """The login name recorded with corrections when the page does not give one."""
    try:
        return getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (some containers)
        return "unknown"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Browser:
    """The state the endpoints share: manifest, data root, index, taxonomy, corrections cache."""

    def __init__(self, manifest: str | os.PathLike, data_root: str | os.PathLike, who: str | None = None,
                 taxonomy: Taxonomy | None = None):
        self.manifest = Path(manifest)
        self.root = DataRoot(data_root)
        self.index = ClipIndex(self.manifest)
        self.taxonomy = taxonomy or load_taxonomy()
        self.who = who or _user()
        self.thumbnails = Thumbnails()
        self.matches = MatchCache()
        self._corrections: tuple[tuple, dict[str, list[Correction]]] = ((), {})
        self._lock = threading.Lock()

    def corrections_by_clip(self) -> dict[str, list[Correction]]:
        """The latest corrections per clip (re-read when the file changes)."""
        from commercial98k.manifest.corrections import corrections_path, latest

        path = corrections_path(self.manifest)
        try:
            st = path.stat()
            sig: tuple = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            sig = ()
        with self._lock:
            if sig and sig == self._corrections[0]:
                return self._corrections[1]
        by_clip: dict[str, list[Correction]] = defaultdict(list)
        for c in latest(load_corrections(self.manifest)).values():
            by_clip[c.clip_id].append(c)
        with self._lock:
            self._corrections = (sig, dict(by_clip))
        return self._corrections[1]


def _meta(b: Browser) -> dict:
    data = b.index.current()
    return {
        "manifest": str(b.manifest), "data_root": str(b.root.root), "who": b.who,
        "categories": [{"id": c.id, "name_en": c.name_en, "name_zh": c.name_zh} for c in b.taxonomy.categories],
        "indexing": b.index.indexing or (data is None and b.index.error is None),
        "index_error": f"error: {b.index.error}" if b.index.error else None,
        "facets": facets(data) if data is not None else None,
    }


async def meta(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_meta, request.app.state.browser))


def _clips(b: Browser, params: dict[str, str]) -> dict:
    q = parse_query(params)
    corrections = b.corrections_by_clip()
    data = b.index.current()
    if data is None and q.sort == "manifest":
        out = stream_query(b.manifest, q, corrections)
        b.index.start()
    else:
        out = run_query(data if data is not None else b.index.wait(), q, corrections, b.matches)
    for row in out["rows"]:  # an absolute path inside the root plays through its relative reference
        path = row.get("video_path")
        if path and os.path.isabs(path):
            with contextlib.suppress(ValueError):
                row["video_path"] = b.root.relative(path)
    out["indexing"] = b.index.indexing
    return out


async def clips(request: Request) -> Response:
    try:
        out = await run_in_threadpool(_clips, request.app.state.browser, dict(request.query_params))
    except QueryError as e:
        return _error(400, f"error: {e}")
    return JSONResponse(out)


async def failures_view(request: Request) -> Response:
    b: Browser = request.app.state.browser
    data = await run_in_threadpool(b.index.wait)
    return JSONResponse({"groups": failures(data), "rows": data.table.num_rows})


async def list_corrections(request: Request) -> Response:
    b: Browser = request.app.state.browser
    by_clip = await run_in_threadpool(b.corrections_by_clip)
    return JSONResponse({"corrections": [asdict(c) for cs in by_clip.values() for c in cs]})


async def _json_body(request: Request) -> dict:
    """The request's JSON object; ``Refused`` with the status and cause otherwise."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise Refused(415, f"error: send the correction as application/json, not {kind or 'no content type'}")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise Refused(413, f"error: the body is {len(body):,} bytes; a correction is at most {MAX_BODY:,}")
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise Refused(400, f"error: the body is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise Refused(400, f"error: the body must be a JSON object, not {type(doc).__name__}")
    extra = sorted(set(doc) - CLIENT_FIELDS)
    if extra:
        raise Refused(422, f"error: {extra[0]}: unknown field; fields are {', '.join(sorted(CLIENT_FIELDS))}")
    return doc


def _save(b: Browser, doc: dict) -> Correction:
    who = doc.get("who")
    if who is not None and (not isinstance(who, str) or len(who) > 100):
        raise CorrectionError("who: a name of at most 100 characters")
    doc = {**doc, "who": who or b.who, "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    correction = from_dict(doc, b.taxonomy)
    data = b.index.wait()
    for field in ("clip_id", "other"):
        clip = getattr(correction, field)
        if clip is not None and find_clip(data, clip) is None:
            raise Refused(404, f"error: {field}: no clip {clip!r} in {b.manifest}")
    save_correction(b.manifest, correction, b.taxonomy)
    return correction


async def add_correction(request: Request) -> Response:
    b: Browser = request.app.state.browser
    try:
        doc = await _json_body(request)
        correction = await run_in_threadpool(_save, b, doc)
    except Refused as e:
        return _error(e.status, str(e))
    except CorrectionError as e:
        return _error(422, f"error: {e}")
    return JSONResponse(asdict(correction), status_code=201)


def _media_reference(request: Request) -> str:
    """The path after ``/media/``, decoded once (``%2F`` and ``%2e%2e`` become ``/`` and ``..`` here,
    so they meet the same checks as the plain forms)."""
    from urllib.parse import unquote

    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = unquote(raw.decode("latin-1").split("?", 1)[0], errors="strict")
    return path[len("/media/"):] if path.startswith("/media/") else ""


async def media(request: Request) -> Response:
    b: Browser = request.app.state.browser
    try:
        path = served_path(b.root, _media_reference(request))
    except Refused as e:
        return _error(e.status, str(e))
    return FileResponse(path)


async def thumbnail(request: Request) -> Response:
    b: Browser = request.app.state.browser
    try:
        t = float(request.query_params.get("t", "0"))
        if not 0 <= t < 1e7:
            raise ValueError
    except ValueError:
        return _error(400, f"error: t: not a time in seconds: {request.query_params.get('t')!r}")
    try:
        path = served_path(b.root, request.query_params.get("video", ""))
        jpeg = await run_in_threadpool(b.thumbnails.get, path, t)
    except Refused as e:
        return _error(e.status, str(e))
    except Exception as e:  # an unreadable video: the card shows no picture, the cause is logged
        return _error(422, f"error: no thumbnail: {e}")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


async def failed(request: Request, exc: Exception) -> Response:
    """Any other failure (an unreadable manifest or corrections file): one error line, status 500."""
    return _error(500, f"error: {exc}")


async def home(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


def create_app(manifest: str | os.PathLike, data_root: str | os.PathLike, who: str | None = None,
               allowed_hosts: list[str] | None = None, taxonomy: Taxonomy | None = None) -> Starlette:
    """The app. ``allowed_hosts``: Host headers accepted (default loopback names: a web page elsewhere
    cannot reach the server through DNS rebinding); ``["*"]`` when serving other machines."""
    browser = Browser(manifest, data_root, who, taxonomy)
    routes = [
        Route("/", home),
        Route("/api/meta", meta),
        Route("/api/clips", clips),
        Route("/api/failures", failures_view),
        Route("/api/corrections", list_corrections, methods=["GET"]),
        Route("/api/corrections", add_correction, methods=["POST"]),
        Route("/media/{path:path}", media),
        Route("/thumb", thumbnail),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    hosts = allowed_hosts or LOOPBACK_HOSTS
    app = Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
                    exception_handlers={Exception: failed})
    app.state.browser = browser  # the index builds on the first request, once the server listens
    return app
