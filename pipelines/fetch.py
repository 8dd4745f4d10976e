"""The fetch stage: sources -> video entries -> downloads -> ``manifests/videos.parquet``.

Composition only: planning and the per-row checks are ``commercial98k.sources.plan``, the
download stage ``commercial98k.sources.FetchStage``; this module reads and writes the manifest.

1. expand every source (taxonomy searches, pages, URL files, folders) into entries with flat
   extraction, at most ``limit`` per category (the same entries on a rerun);
2. skip entries whose (extractor, id) the manifest already holds (``failed`` ones too, unless
   ``retry_failed``), and repeats inside this run;
3. run ``FetchStage`` over the rest with ``engine.runner.run_stage`` (worker threads or Ray actors);
4. rows come back to this process (``DriverWriter``): mark a video whose content sha256 equals an
   earlier video's as ``duplicate`` (its file is removed), count ``blocked`` answers per platform
   (``Breaker``), and write every row through ``ManifestWriter`` as soon as it is finished.

Resumable: a killed run keeps every written row and every complete file; a rerun skips the
rows, finds complete files in place (no second download), resumes ``.part`` files, and never
counts a partial file (they live in ``videos/.partial`` until complete and probed).

With ``engine="ray"`` on several machines, the data root (and a ``--cookies`` file) must be
on a file system every node mounts at the same path; rows are written by this process only.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from commercial98k.engine.runner import DriverWriter, executor_for, run_stage
from commercial98k.faults import fetch_bytes, require_free
from commercial98k.manifest.done_keys import stage_results
from commercial98k.manifest.io import ManifestWriter
from commercial98k.manifest.lock import stage_writes
from commercial98k.manifest.status import record
from commercial98k.sources import Breaker, FetchStage, YtdlpOptions, platform_key, videos_dir
from commercial98k.sources.plan import (
    COUNTS_TO_LIMIT,
    FetchResult,
    dedupe_content,
    plan,
    resolve_specs,
    runtime_warning,
)
from commercial98k.sources.plan import HASHED as _HASHED  # the name _Known uses
from commercial98k.storage.files import DataRoot
from commercial98k.taxonomy import Taxonomy, load_taxonomy

__all__ = ["DEFAULT_MANIFEST", "FetchResult", "fetch"]

log = logging.getLogger(__name__)

DEFAULT_MANIFEST = Path("manifests/videos.parquet")


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
        status = r["result"] if "result" in r else r["status"]  # fetch's own result, for a manifest row
        self.ids[r["video_id"]] = status
        self.errors[r["video_id"]] = r.get("result_error", r.get("error"))
        self.durations[r["video_id"]] = r.get("duration_s")
        if r.get("platform") and r.get("platform_id"):
            self.keys[(r["platform"], r["platform_id"])] = r["video_id"]
        if r.get("url"):
            self.urls[r["url"]] = r["video_id"]
        if r.get("content_sha256") and status in _HASHED:
            self.hashes.setdefault(r["content_sha256"], r["video_id"])

    def known_id(self, item: dict) -> str | None:
        """The video_id the manifest knows this item under: same id, same (platform, id), or same URL."""
        vid = item["video_id"]
        if vid not in self.ids and item.get("platform") and item.get("platform_id"):
            vid = self.keys.get((item["platform"], item["platform_id"]), vid)
        if vid not in self.ids and item.get("url"):
            vid = self.urls.get(item["url"], vid)
        return vid if vid in self.ids else None


def fetch(category: str | None = None, sources: Sequence[str] = (), *, manifest: str | Path = DEFAULT_MANIFEST,
          data_root: str | Path = "data", limit: int | None = None, options: YtdlpOptions | None = None,
          workers: int | None = 1, engine: str = "local", address: str | None = None, retry_failed: bool = False,
          taxonomy: Taxonomy | None = None, progress: bool | None = None, wait: bool = False) -> FetchResult:
    """Fetch the videos of ``category`` (or of ``sources``) into ``data_root`` and the manifest.

    ``category``: a taxonomy id, ``"all"`` or None (then ``sources`` must be given).
    ``sources``: ``--source`` values (searches, http(s) pages, URL files, folders); empty means
    the category's taxonomy queries as yt-dlp searches. ``limit``: at most this many videos per
    category (also the number of search results asked for). Returns counts by status.
    The manifest's lock is held throughout (``ManifestLocked`` when another process writes it,
    unless ``wait``); a machine fault stops the run as one ``EnvironmentFault`` (nothing failed).
    """
    say = (lambda msg: tqdm.write(msg, file=sys.stderr)) if progress is not False else (lambda msg: None)
    taxonomy = taxonomy or load_taxonomy()
    specs = resolve_specs(category, sources, taxonomy, limit)  # a bad flag is reported before the lock
    with stage_writes(manifest, data_root, wait=wait, on_wait=say):
        return _fetch(specs, Path(manifest), DataRoot(data_root).root, limit, options or YtdlpOptions(), workers,
                      engine, address, retry_failed, taxonomy, progress, say)


def _fetch(specs: list, manifest: Path, root: Path, limit: int | None, options: YtdlpOptions, workers: int | None,
           engine: str, address: str | None, retry_failed: bool, taxonomy: Taxonomy, progress: bool | None,
           say) -> FetchResult:
    known = _Known.load(manifest)  # before anything is created: a bad manifest stops the run here
    videos_dir(root).mkdir(parents=True, exist_ok=True)
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
    require_free(root, fetch_bytes(todo, root), f"fetch ({len(todo)} videos)", "--data-root")

    stage = FetchStage(str(root), options, breaker)
    executor = executor_for(engine, workers=workers, address=address, data_root=root)
    attempted: set[str] = set()
    short = False

    def check_row(row: dict) -> dict:  # runs in this process, in completion order, before the row is written
        nonlocal short
        row = dedupe_content(row, known, root)
        row = record(row, "fetch", row.get("status"), row.get("error"))
        known.add(row)
        if row.get("url") and breaker.record(platform_key(row), row.get("status") == "blocked"):
            say(f"warning: {breaker.message(platform_key(row))}")
        attempted.add(row["video_id"])
        short |= row["status"] not in COUNTS_TO_LIMIT and row.get("category") in result.found
        return row

    with executor, ManifestWriter(manifest, "videos", flush_every=1) as writer:
        while todo:
            short = False
            run = run_stage(stage, todo, executor=executor, sink=DriverWriter(writer, hook=check_row), desc="fetch",
                            progress=progress)
            result.counts.update(run.counts)
            result.crashed += run.crashed
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
