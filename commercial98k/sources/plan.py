"""Planning of ``c98k fetch``: sources -> the entries to fetch, and the per-row checks of the results.

``resolve_specs`` turns ``--category``/``--source`` into source specs; ``plan`` expands them
lazily into entries, at most ``limit`` downloadable ones per category, skipping what the
manifest already holds (``KnownVideos``); ``dedupe_content`` marks a video whose content equals
an earlier one's as ``duplicate``. ``FetchResult`` counts what a run did.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from commercial98k.manifest.done_keys import finished
from commercial98k.storage.files import DataRoot

from ..taxonomy import Taxonomy
from . import (
    DEFAULT_SEARCH_COUNT,
    Breaker,
    ExpandStats,
    SourceSpec,
    YtdlpOptions,
    default_sources,
    expand_source,
    fetcher_tag,
    js_runtime_info,
    parse_source,
)
from .common import utc_now
from .filters import is_filter_reason
from .ytdlp import needs_js_runtime

HASHED = ("ok", "no_audio")  # statuses whose content_sha256 names a real file
COUNTS_TO_LIMIT = ("ok", "no_audio", "duplicate", "pending")  # known rows that fill a category's --limit


class KnownVideos(Protocol):
    """What the videos manifest already holds (``video_id`` -> status, error, duration; content hashes)."""

    ids: dict[str, str]
    errors: dict[str, str | None]
    durations: dict[str, float | None]
    hashes: dict[str, str]

    def known_id(self, item: dict) -> str | None: ...


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


def plan(specs: Iterable[SourceSpec], options: YtdlpOptions, limit: int | None, known: KnownVideos,
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
            if item["video_id"] in attempted and known.ids.get(item["video_id"]) not in COUNTS_TO_LIMIT:
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
                    if old in COUNTS_TO_LIMIT:
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


def dedupe_content(row: dict, known: KnownVideos, root: str | os.PathLike | DataRoot) -> dict:
    """A row whose content equals an earlier video's becomes ``duplicate``; its file is removed."""
    sha = row.get("content_sha256")
    if row.get("status") not in HASHED or not sha:
        return row
    first = known.hashes.get(sha)
    if first is None or first == row["video_id"]:
        return row
    if row.get("video_path"):
        with contextlib.suppress(OSError, ValueError):
            DataRoot(root).resolve(row["video_path"]).unlink()
    return {**row, "status": "duplicate", "video_path": None, "error": f"same content (sha256) as {first}"}
