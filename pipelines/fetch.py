"""The fetch stage: sources -> video entries -> downloads -> ``manifests/videos.parquet``.

1. expand every source (taxonomy searches, pages, URL files, folders) into entries with flat
   extraction, at most ``limit`` per category (the same entries on a rerun);
2. skip entries whose (extractor, id) the manifest already holds (``failed`` ones too, unless
   ``retry_failed``), and repeats inside this run;
3. run ``FetchStep`` over the rest with ``engine.run_steps`` (threads or Ray tasks);
4. mark a video whose content sha256 equals an earlier video's as ``duplicate`` (its file is
   removed), and write every row through ``ManifestWriter`` as soon as it is finished.

Resumable: a killed run keeps every written row and every complete file; a rerun skips the
rows, finds complete files in place (no second download), resumes ``.part`` files, and never
counts a partial file (they live in ``videos/.partial`` until complete and probed).

With ``engine="ray"`` on several machines, the data root (and a ``--cookies`` file) must be
on a file system every node mounts at the same path; rows are written by this process only.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from commercial98k.engine import run_steps
from commercial98k.fsutil import within
from commercial98k.manifest import ManifestWriter, manifest_exists, read_manifest
from commercial98k.ray_engine import is_system_failure
from commercial98k.sources import (
    DEFAULT_SEARCH_COUNT,
    FetchStep,
    SourceSpec,
    YtdlpOptions,
    default_sources,
    expand_source,
    fetcher_tag,
    parse_source,
    videos_dir,
)
from commercial98k.sources.common import utc_now
from commercial98k.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)

DEFAULT_MANIFEST = Path("manifests/videos.parquet")
_HASHED = ("ok", "no_audio")


@dataclass
class FetchResult:
    """What one fetch run did."""

    manifest: Path
    planned: int = 0  # entries selected from the sources (after --limit)
    known: int = 0  # of those, already in the manifest: skipped
    counts: Counter = field(default_factory=Counter)  # status -> rows written by this run
    crashed: int = 0  # of the failed rows, those whose Ray worker crashed or was killed (not bad input)

    def summary(self) -> str:
        by_status = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "nothing new"
        return f"{self.manifest}: {self.planned} videos planned, {self.known} already there; this run: {by_status}"


@dataclass
class _Known:
    """What the manifest already holds: keys, ids, URLs, content hashes."""

    ids: dict[str, str] = field(default_factory=dict)  # video_id -> status
    keys: dict[tuple[str, str], str] = field(default_factory=dict)  # (platform, platform_id) -> video_id
    urls: dict[str, str] = field(default_factory=dict)  # url -> video_id
    hashes: dict[str, str] = field(default_factory=dict)  # sha256 -> first video_id

    @classmethod
    def load(cls, manifest: Path) -> _Known:
        known = cls()
        if not manifest_exists(manifest):  # a first run; a corrupt or wrong-kind manifest raises
            return known
        rows = read_manifest(manifest, "videos").select(
            ["video_id", "platform", "platform_id", "url", "content_sha256", "status"]).to_pylist()
        for r in rows:
            known.add(r)
        return known

    def add(self, r: dict) -> None:
        self.ids[r["video_id"]] = r["status"]
        if r.get("platform") and r.get("platform_id"):
            self.keys[(r["platform"], r["platform_id"])] = r["video_id"]
        if r.get("url"):
            self.urls[r["url"]] = r["video_id"]
        if r.get("content_sha256") and r["status"] in _HASHED:
            self.hashes.setdefault(r["content_sha256"], r["video_id"])

    def known_id(self, item: dict) -> str | None:
        """The video_id the manifest knows this item under: same id, same (platform, id), or same URL."""
        vid = item["video_id"]
        if vid not in self.ids and item.get("platform") and item.get("platform_id"):
            vid = self.keys.get((item["platform"], item["platform_id"]), vid)
        if vid not in self.ids and item.get("url"):
            vid = self.urls.get(item["url"], vid)
        return vid if vid in self.ids else None


def resolve_specs(category: str | None, sources: Sequence[str], taxonomy: Taxonomy,
                  limit: int | None) -> list[SourceSpec]:
    """The sources of a run: the given ones (tagged with ``category``), else the taxonomy searches."""
    if category and category != "all":
        taxonomy.get(category)  # raises UnknownCategory with the known ids
    if sources:
        tag = category if category and category != "all" else None
        return [parse_source(s, tag) for s in sources]
    if not category:
        raise ValueError("nothing to fetch: give --category (a taxonomy id or 'all') or --source")
    cats = taxonomy.categories if category == "all" else (taxonomy.get(category),)
    return [spec for c in cats for spec in default_sources(c, limit or DEFAULT_SEARCH_COUNT)]


def plan(specs: Iterable[SourceSpec], options: YtdlpOptions, limit: int | None, known: _Known,
         taxonomy: Taxonomy, retry_failed: bool = False, progress: bool | None = None) -> tuple[list[dict], int, int]:
    """Expand sources into the items to fetch. Returns (todo items, planned count, known count)."""
    per_category: Counter = Counter()
    seen: set[object] = set()  # video ids and (platform, platform_id) keys
    todo: list[dict] = []
    planned = skipped_known = 0
    ids = set(taxonomy.ids())
    specs = list(specs)
    bar = tqdm(specs, desc="expand", unit="source", disable=None if progress is None else not progress)
    for spec in bar:
        for item in expand_source(spec, options, limit):
            cat = item.get("category")
            if limit and per_category[cat] >= limit:
                continue
            if item["video_id"] in seen or (item.get("platform"), item.get("platform_id")) in seen:
                continue  # the same video from two queries or pages: first one wins
            seen.add(item["video_id"])
            if item.get("platform_id"):
                seen.add((item["platform"], item["platform_id"]))
            per_category[cat] += 1
            planned += 1
            old_id = known.known_id(item)
            if old_id is not None and not (retry_failed and known.ids[old_id] == "failed"):
                skipped_known += 1
                continue
            if old_id is not None and old_id != item["video_id"]:
                # a URL that failed under a stand-in id now resolves to a real one: retire the old row
                todo.append({"source": "dead", "video_id": old_id, "url": item.get("url"), "category": cat,
                             "query": item.get("query"), "status": "skipped", "fetcher": fetcher_tag(),
                             "crawled_at": utc_now(), "error": f"superseded by {item['video_id']}"})
            if cat is not None and cat not in ids:
                item = {**item, "source": "dead", "status": "skipped", "fetcher": fetcher_tag(),
                        "crawled_at": utc_now(), "error": f"unknown category {cat!r} (not in the taxonomy)"}
            todo.append(item)
    return todo, planned, skipped_known


def fetch(category: str | None = None, sources: Sequence[str] = (), *, manifest: str | Path = DEFAULT_MANIFEST,
          data_root: str | Path = "data", limit: int | None = None, options: YtdlpOptions | None = None,
          workers: int | None = 1, engine: str = "local", address: str | None = None, retry_failed: bool = False,
          taxonomy: Taxonomy | None = None, progress: bool | None = None) -> FetchResult:
    """Fetch the videos of ``category`` (or of ``sources``) into ``data_root`` and the manifest.

    ``category``: a taxonomy id, ``"all"`` or None (then ``sources`` must be given).
    ``sources``: ``--source`` values (searches, http(s) pages, URL files, folders); empty means
    the category's taxonomy queries as yt-dlp searches. ``limit``: at most this many videos per
    category (also the number of search results asked for). Returns counts by status.
    """
    taxonomy = taxonomy or load_taxonomy()
    options = options or YtdlpOptions()
    manifest = Path(manifest)
    root = Path(data_root).resolve()
    specs = resolve_specs(category, sources, taxonomy, limit)
    known = _Known.load(manifest)  # before anything is created: a bad manifest stops the run here
    videos_dir(root).mkdir(parents=True, exist_ok=True)
    todo, planned, skipped = plan(specs, options, limit, known, taxonomy, retry_failed, progress)
    result = FetchResult(manifest, planned=planned, known=skipped)
    if skipped and progress is not False:
        tqdm.write(f"fetch: {skipped} of {planned} videos are already in {manifest}; skipping them", file=sys.stderr)

    def check_row(row: dict) -> dict:  # runs in this process, in completion order
        row = _dedupe_content(row, known, root)
        known.add(row)
        return row

    step = FetchStep(str(root), options)
    with ManifestWriter(manifest, "videos", flush_every=1) as writer:
        for row in run_steps(step, todo, workers=workers, engine=engine, address=address, desc="fetch",
                             progress=progress, on_row=check_row, data_root=root):
            writer.add(row)
            result.counts[row["status"]] += 1
            result.crashed += is_system_failure(row)
    return result


def _dedupe_content(row: dict, known: _Known, root: Path) -> dict:
    """A row whose content equals an earlier video's becomes ``duplicate``; its file is removed."""
    sha = row.get("content_sha256")
    if row.get("status") not in _HASHED or not sha:
        return row
    first = known.hashes.get(sha)
    if first is None or first == row["video_id"]:
        return row
    if row.get("video_path"):
        with contextlib.suppress(OSError, ValueError):
            within(root, row["video_path"]).unlink()
    return {**row, "status": "duplicate", "video_path": None, "error": f"same content (sha256) as {first}"}
