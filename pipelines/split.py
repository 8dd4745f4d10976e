"""The ``split`` stage: videos manifest -> clips manifest (shots, music segment, clips, identity).

Composition only: the per-video work is ``commercial98k.split.step`` and the identities
``commercial98k.identity.assign``; this module picks the pending videos and reads/writes manifests.

Per video (``SplitStage``, run by ``engine.runner.run_stage`` on either engine): probe, shots,
YAMNet music spans, clip windows, all from one decode of the video (``split.decode``); write
``audio/<clip_id>.wav`` (mono 16 kHz), fingerprint each clip and hash the keyframes, and cut
``clips/<clip_id>.mp4`` only with ``clip_files`` ``copy`` (stream copy) or ``encode`` (re-encode):
the span in the manifest is the truth, and ``c98k label`` reads a clip without a file from its
source video and span. A video without audio, without
music or that fails gets one ``<video_id>-none`` row with the status and cause, so a re-run
skips it (failed videos are retried). Then the new clips get their ``music_id`` from the
persisted fingerprint index next to the manifest (``<manifest>.identity/``; new clips are
matched against the known tracks, not every clip against every other) and every video its
``dup_group`` (re-uploads); only the rows that changed are written, as one manifest part.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from commercial98k.engine.runner import WorkerParts, executor_for, run_stage
from commercial98k.faults import require_free, split_bytes
from commercial98k.identity.assign import with_identities
from commercial98k.manifest.io import compact, manifest_exists, read_manifest
from commercial98k.manifest.lock import stage_writes
from commercial98k.split.step import SplitConfig, SplitStage
from commercial98k.storage.files import DataRoot

__all__ = ["SplitConfig", "assign_identity", "pending_videos", "run_split"]

log = logging.getLogger(__name__)


def pending_videos(videos_manifest: str | Path, clips_manifest: str | Path,
                   retry_failed: bool = False) -> tuple[list[dict], int]:
    """Video rows with status ok that split has not finished (with ``retry_failed``: or failed on);
    and how many were skipped.

    Both manifests are streamed (``manifest_scan``): only the pending video rows become dicts.
    """
    import pyarrow.compute as pc

    from commercial98k.manifest.done_keys import done_keys
    from commercial98k.manifest.scan import scan_manifest

    # the one done-keys reader: videos with a clips row split has finished (failed: unless retry_failed)
    done = done_keys(clips_manifest, "clips", "split", retry_failed, key="video_id")
    if not manifest_exists(videos_manifest):
        read_manifest(videos_manifest, "videos")  # the usual one-line error
    todo, total = [], 0
    for b in scan_manifest(videos_manifest, "videos"):
        ok = b.filter(pc.fill_null(pc.equal(b.column("status"), "ok"), False))
        total += ok.num_rows
        todo += [r for r in ok.to_pylist() if r["video_id"] not in done]
    return todo, total - len(todo)


#: the columns the identity pass reads (never the whole rows, except of the rows it changes)
IDENTITY_COLUMNS = ["clip_id", "video_id", "status", "error", "fetch_status", "fetch_error", "split_status",
                    "split_error", "label_status", "label_error", "fingerprint", "landmarks", "music_track", "music_offset_s",
                    "video_phash", "clip_start_s",
                    "clip_end_s", "music_start_s", "music_end_s", "music_id", "dup_group", "has_music"]
#: the columns the identity pass may change
IDENTITY_CHANGES = ["music_id", "dup_group", "status", "error", "split_status", "split_error", "has_music",
                    "music_track", "music_offset_s"]


def assign_identity(clips_manifest: str | Path, max_ber: float = 0.15, max_hamming: int = 8,
                    fingerprint: str = "landmark", music_library: str | Path | None = None) -> pa.Table:
    """Give the clips manifest its identities (``split.assign.with_identities``).

    Reads only ``IDENTITY_COLUMNS``, writes only the rows that changed as one manifest part (never
    the whole manifest; a stale ``<video_id>-none`` row gets a tombstone), and returns those
    columns of every row after the pass.
    """
    from commercial98k.manifest.scan import scan_manifest

    batches = [pa.Table.from_batches([b]) for b in scan_manifest(clips_manifest, "clips", IDENTITY_COLUMNS)]
    if not batches:
        return read_manifest(clips_manifest, "clips").select(IDENTITY_COLUMNS)
    before = pa.concat_tables(batches, promote_options="permissive")
    after = with_identities(before, clips_manifest, max_ber, max_hamming, fingerprint, music_library)
    kept = set(after.column("clip_id").to_pylist())
    dropped = [(c, v) for c, v in zip(before.column("clip_id").to_pylist(), before.column("video_id").to_pylist(),
                                      strict=True) if c not in kept]
    _write_identity_changes(clips_manifest, before, after, dropped)
    return after


def _write_identity_changes(clips_manifest: str | Path, before: pa.Table, after: pa.Table,
                            dropped: list[tuple[str, str]]) -> None:
    """One part with the whole rows whose ``IDENTITY_CHANGES`` differ, and tombstones for ``dropped``."""
    import pyarrow.compute as pc

    from commercial98k.manifest.io import TOMBSTONE, write_rows_part
    from commercial98k.manifest.scan import scan_manifest

    old = dict(zip(before.column("clip_id").to_pylist(), before.select(IDENTITY_CHANGES).to_pylist(), strict=True))
    new = dict(zip(after.column("clip_id").to_pylist(), after.select(IDENTITY_CHANGES).to_pylist(), strict=True))
    changed = {c: v for c, v in new.items() if old.get(c) != v}
    out: list[dict] = []
    if changed:
        wanted = pa.array(list(changed), pa.string())
        for batch in scan_manifest(clips_manifest, "clips"):
            picked = batch.filter(pc.is_in(batch.column("clip_id"), value_set=wanted))
            out += [dict(r, **changed[r["clip_id"]]) for r in picked.to_pylist()]
    out += [{"clip_id": c, "video_id": v, "status": TOMBSTONE} for c, v in dropped]
    write_rows_part(clips_manifest, "clips", out)


def run_split(videos_manifest: str | Path, clips_manifest: str | Path, config: SplitConfig, *,
              workers: int | None = 1, engine: str = "local", address: str | None = None,
              retry_failed: bool = False, wait: bool = False, on_wait=None) -> dict:
    """Split every pending video, then assign identities; return counts by status.

    ``counts["crashed"]``: videos whose worker crashed or was killed (not bad input). The clips
    manifest's lock (which covers its identity index) is held throughout: ``ManifestLocked``
    when another process writes it, unless ``wait``. A machine fault (full disk, no permission,
    no ffmpeg) stops the run as one ``EnvironmentFault``; no video is recorded as failed for it.
    """
    config = replace(config, data_root=str(DataRoot(config.data_root).root))  # workers have other cwds
    with stage_writes(clips_manifest, config.data_root, wait=wait, on_wait=on_wait):
        return _run_split(videos_manifest, clips_manifest, config, workers, engine, address, retry_failed)


def _run_split(videos_manifest: str | Path, clips_manifest: str | Path, config: SplitConfig, workers: int | None,
               engine: str, address: str | None, retry_failed: bool) -> dict:
    todo, skipped = pending_videos(videos_manifest, clips_manifest, retry_failed)
    if todo:
        require_free(config.data_root, split_bytes(todo, config.clip_files), f"split ({len(todo)} videos)",
                     "--data-root")
    counts: dict[str, int] = {"skipped": skipped}
    if todo:
        counts.update(_split_videos(todo, clips_manifest, config, workers, engine, address))
    if manifest_exists(clips_manifest):
        table = assign_identity(clips_manifest, config.max_ber, config.max_hamming, config.fingerprint,
                                config.music_library)
        compact(clips_manifest, "clips")  # incremental: the base is rewritten only when parts outweigh it
        ok = np.array([s == "ok" for s in table.column("status").to_pylist()], bool)
        counts["clips"] = int(ok.sum())
        counts["music_ids"] = len({m for m, o in zip(table.column("music_id").to_pylist(), ok, strict=True) if o and m})
    return counts


def _split_videos(todo: list[dict], clips_manifest: str | Path, config: SplitConfig, workers: int | None,
                  engine: str, address: str | None) -> dict[str, int]:
    """Split on either engine (workers write their own parts); count videos by the status of their first row."""
    status: dict[str, str] = {}
    executor = executor_for(engine, workers=workers, address=address, data_root=config.data_root)
    result = run_stage(SplitStage(config), todo, executor=executor, sink=WorkerParts(clips_manifest, "clips"),
                       desc="split", on_row=lambda r: status.setdefault(r["clip_id"].rsplit("-", 1)[0], r["status"]))
    compact(clips_manifest, "clips")
    counts = dict(Counter(status.values()))
    if result.crashed:
        counts["crashed"] = result.crashed
    return counts
