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
from commercial98k.manifest import ManifestWriter
from commercial98k.manifest_scan import finished, stage_results
from commercial98k.ray_engine import is_system_failure
from commercial98k.sources import (
    DEFAULT_SEARCH_COUNT,
    Breaker,
    ExpandStats,
    FetchStep,
    SourceSpec,
    YtdlpOptions,
    default_sources,
    expand_source,
    fetcher_tag,
    js_runtime_info,
    parse_source,
    platform_key,
    videos_dir,
)
from commercial98k.sources.common import utc_now
from commercial98k.sources.filters import is_filter_reason
from commercial98k.sources.ytdlp import needs_js_runtime
from commercial98k.stages import record
from commercial98k.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)

DEFAULT_MANIFEST = Path("manifests/videos.parquet")
_HASHED = ("ok", "no_audio")
_COUNTS_TO_LIMIT = ("ok", "no_audio", "duplicate", "pending")  # known rows that fill a category's --limit


@dataclass
class FetchResult:
    """What one fetch run did."""

    manifest: Path
    planned: int = 0  # entries selected from the sources (after --limit)
    known: int = 0  # of those, already in the manifest: skipped
    counts: Counter = field(default_factory=Counter)  # status -> rows written by this run
    stats: ExpandStats = field(default_factory=ExpandStats)
    unknown: Counter = field(default_factory=Counter)  # unknown category -> rows skipped
    found: dict[str, int] = field(default_factory=dict)  # category -> downloadable entries planned
    limit: int | None = None
    tripped: dict[str, int] = field(default_factory=dict)  # platform -> items not asked after its breaker

    @property
    def no_source_read(self) -> bool:
        """True when sources were given but not one could be read (network down, all blocked)."""
        return self.stats.sources > 0 and self.stats.read == 0

    def failure_line(self) -> str:
        """The one line for a run where no source could be read."""
        where, cause = self.stats.failures[0] if self.stats.failures else ("?", "no detail")
        n = self.stats.sources
        return f"no source could be read ({n} of {n} failed; first: {where}: {cause})"
    crashed: int = 0  # of the failed rows, those whose Ray worker crashed or was killed (not bad input)

    def summary(self) -> str:
        by_status = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "nothing new"
        parts = [f"{self.manifest}: {self.planned} videos planned, {self.known} already there; this run: {by_status}"]
        if self.limit and self.found:
            short = {c: n for c, n in self.found.items() if n < self.limit}
            parts.append("--limit met for every category" if not short else
                         "sources exhausted before --limit: " + ", ".join(
                             f"{c} {n}/{self.limit}" for c, n in sorted(short.items(), key=lambda x: str(x[0]))))
        st = self.stats
        if st.duplicate_lines:
            parts.append(f"{st.duplicate_lines} duplicate URL line{'s' * (st.duplicate_lines > 1)} dropped "
                         "(first category kept)")
        if self.unknown:
            names = ", ".join(repr(c) for c, _ in self.unknown.most_common(3))
            more = f" +{len(self.unknown) - 3} more" if len(self.unknown) > 3 else ""
            parts.append(f"{sum(self.unknown.values())} skipped for an unknown category ({names}{more})")
        if st.skipped_files:
            parts.append(f"files skipped: {st.skipped_files['hidden']} hidden, {st.skipped_files['not_media']} not media")
        if st.failures:
            parts.append(f"{len(st.failures)} of {st.sources} sources could not be read")
        for key, n in sorted(self.tripped.items()):
            parts.append(f"{key}: stopped after repeated blocks ({n} not asked)")
        return "; ".join(parts)


@dataclass
class _Known:
    """What the manifest already holds: keys, ids, URLs, content hashes."""

    ids: dict[str, str] = field(default_factory=dict)  # video_id -> status
    errors: dict[str, str | None] = field(default_factory=dict)  # video_id -> error
    durations: dict[str, float | None] = field(default_factory=dict)  # video_id -> duration_s
    keys: dict[tuple[str, str], str] = field(default_factory=dict)  # (platform, platform_id) -> video_id
    urls: dict[str, str] = field(default_factory=dict)  # url -> video_id
    hashes: dict[str, str] = field(default_factory=dict)  # sha256 -> first video_id

    @classmethod
    def load(cls, manifest: Path) -> _Known:
        known = cls()
        # the one done-keys reader (streamed; absent: a first run; corrupt or wrong kind: raises)
        for rows in stage_results(manifest, "videos", "fetch",
                                  ("platform", "platform_id", "url", "content_sha256", "duration_s")):
            for r in rows:
                known.add(r)
        return known

    def add(self, r: dict) -> None:
        self.ids[r["video_id"]] = r.get("result", r["status"])
        self.errors[r["video_id"]] = r.get("result_error", r.get("error"))
        self.durations[r["video_id"]] = r.get("duration_s")
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


def runtime_warning(specs: Sequence[SourceSpec], options: YtdlpOptions) -> str | None:
    """The one warning for YouTube sources when yt-dlp would find no JavaScript runtime."""
    youtube = any(s.kind in ("search", "url") and needs_js_runtime(s.value) for s in specs)
    if not youtube or js_runtime_info(options.js_runtime) is not None:
        return None
    return ("warning: YouTube sources but no JavaScript runtime (deno) found: many YouTube formats will be "
            "missing or fail; `pip install deno` (see `c98k doctor`)")


def _stamp(item: dict, status: str, error: str) -> dict:
    return {**item, "source": "dead", "status": status, "fetcher": fetcher_tag(), "crawled_at": utc_now(),
            "error": error}


def plan(specs: Iterable[SourceSpec], options: YtdlpOptions, limit: int | None, known: _Known,
         taxonomy: Taxonomy, retry_failed: bool = False, progress: bool | None = None,
         result: FetchResult | None = None, breaker: Breaker | None = None,
         attempted: frozenset[str] = frozenset()) -> tuple[list[dict], int, int]:
    """Expand sources into the items to fetch. Returns (todo items, planned count, known count).

    ``limit`` counts downloadable entries per category: entries the ad filter skips, dead
    links and rows that failed before do not fill it, so the walk goes on to further result
    pages and further queries of the category until it is met or they are exhausted.
    """
    result = result if result is not None else FetchResult(Path("-"))
    per_category: Counter = Counter()
    seen: set[object] = set()  # video ids and (platform, platform_id) keys
    seen_urls: set[str] = set()
    todo: list[dict] = []
    planned = skipped_known = 0
    ids = set(taxonomy.ids())
    ad = options.ad_filter()
    specs = list(specs)
    bar = tqdm(specs, desc="expand", unit="source", disable=None if progress is None else not progress)
    for spec in bar:
        if limit and spec.category is not None:
            result.found.setdefault(spec.category, 0)
            if per_category[spec.category] >= limit:
                continue  # this category is full: its further queries are not asked
        for item in expand_source(spec, options, limit, categories=ids, stats=result.stats, breaker=breaker,
                                  seen_urls=seen_urls):
            cat = item.get("category")
            if limit and per_category[cat] >= limit:
                if spec.category is not None:
                    break  # stop iterating: no further result pages are requested
                continue
            if item["video_id"] in seen or (item.get("platform"), item.get("platform_id")) in seen:
                continue  # the same video from two queries or pages: first one wins
            if item["video_id"] in attempted and known.ids.get(item["video_id"]) not in _COUNTS_TO_LIMIT:
                continue  # tried in this run already (a refill round)
            seen.add(item["video_id"])
            if item.get("platform_id"):
                seen.add((item["platform"], item["platform_id"]))
            planned += 1
            if cat is not None and cat not in ids:
                result.unknown[cat] += 1
                todo.append(_stamp(item, "skipped", f"unknown category {cat!r} (not in the taxonomy)"))
                continue
            final = item.get("source") == "dead"  # a filtered entry or a dead link: a row, not work
            old_id = known.known_id(item)
            old = known.ids.get(old_id) if old_id is not None else None
            if old is not None:
                rerun = not finished(old, known.errors[old_id], retry_failed) and old_id not in attempted
                # skipped for its length under other --min/--max-duration: fetch it now
                refilter = (old == "skipped" and is_filter_reason(known.errors[old_id])
                            and not ad({"duration": known.durations[old_id]}))
                if final and item.get("status") == old and item.get("error") == known.errors[old_id]:
                    skipped_known += 1
                    continue
                if not (rerun or refilter or final):
                    skipped_known += 1
                    if old in _COUNTS_TO_LIMIT:
                        per_category[cat] += 1
                    continue
                if final and not refilter:
                    skipped_known += 1  # an earlier real row stays; a filter is no reason to drop it
                    continue
            if not final:
                per_category[cat] += 1
            if old_id is not None and old_id != item["video_id"]:
                # a URL that failed under a stand-in id now resolves to a real one: retire the old row
                todo.append(_stamp({"video_id": old_id, "url": item.get("url"), "category": cat,
                                    "query": item.get("query")}, "skipped", f"superseded by {item['video_id']}"))
            todo.append(item)
    if limit:
        for cat in result.found:
            result.found[cat] = per_category[cat]
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
    say = (lambda msg: tqdm.write(msg, file=sys.stderr)) if progress is not False else (lambda msg: None)
    warning = runtime_warning(specs, options)
    if warning:
        say(warning)
    result = FetchResult(manifest, limit=limit)
    breaker = Breaker(options.block_limit)
    todo, result.planned, result.known = plan(specs, options, limit, known, taxonomy, retry_failed, progress,
                                              result=result, breaker=breaker)
    if result.no_source_read:  # network down: no final row for URLs that could not even be reached
        todo = [t for t in todo if not t.get("_unreachable")]
        if not todo:
            return result
    for where, cause in result.stats.failures:
        say(f"warning: {where}: cannot read: {cause}")
    if result.known:
        say(f"fetch: {result.known} of {result.planned} videos are already in {manifest}; skipping them")

    def check_row(row: dict) -> dict:  # runs in this process, in completion order
        row = _dedupe_content(row, known, root)
        row = record(row, "fetch", row.get("status"), row.get("error"))
        known.add(row)
        if row.get("url") and breaker.record(platform_key(row), row.get("status") == "blocked"):
            say(f"warning: {breaker.message(platform_key(row))}")
        return row

    step = FetchStep(str(root), options, breaker)
    attempted: set[str] = set()
    with ManifestWriter(manifest, "videos", flush_every=1) as writer:
        while todo:
            short = False
            for row in run_steps(step, todo, workers=workers, engine=engine, address=address, desc="fetch",
                                 progress=progress, on_row=check_row, data_root=root):
                writer.add(row)
                attempted.add(row["video_id"])
                result.counts[row["status"]] += 1
                result.crashed += is_system_failure(row)
                short |= row["status"] not in _COUNTS_TO_LIMIT and row.get("category") in result.found
            if not (limit and short):
                break
            # entries skipped or failed at download left a category short: walk on from where it stopped
            more = FetchResult(manifest, limit=limit)
            todo, _, _ = plan(specs, options, limit, known, taxonomy, retry_failed, False, result=more,
                              breaker=breaker, attempted=frozenset(attempted))
            result.planned += len(todo)
            result.found.update(more.found)
    result.tripped = dict(breaker.tripped)
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
