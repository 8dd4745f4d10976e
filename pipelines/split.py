"""The ``split`` stage: videos manifest -> clips manifest (shots, music segment, clips, identity).

Per video (a picklable step run by ``engine.run_steps``, locally or on Ray): probe, shots,
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
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from commercial98k.engine import error_line, run_steps
from commercial98k.fsutil import within
from commercial98k.identity_index import update_music_ids
from commercial98k.manifest import ManifestWriter, compact, manifest_exists, read_manifest
from commercial98k.ray_engine import is_system_failure
from commercial98k.schema import VIDEO_SCHEMA
from commercial98k.split import plan_video
from commercial98k.split.clips import cut_clip, slice_audio, write_clip_audio
from commercial98k.split.identity import (
    fingerprint_audio,
    fingerprint_file,
    fingerprint_problem,
    fingerprinter_info,
    group_duplicates,
    keyframe_times,
    segment_links,
    segment_of,
    video_phash,
)
from commercial98k.split.music import SAMPLE_RATE, get_detector
from commercial98k.split.shots import detector_info
from commercial98k.split.streamcopy import copy_clip
from commercial98k.stages import record, split_result
from commercial98k.threads import set_worker_threads, threads_per_worker, worker_threads

log = logging.getLogger(__name__)

VIDEO_COLUMNS = VIDEO_SCHEMA.names


@dataclass(frozen=True)
class SplitConfig:
    """Options of the split stage (see ``c98k split --help``)."""

    data_root: str = "data"
    detector: str = "adaptive"
    threshold: float | None = None
    downscale: int | None = None
    clip_seconds: float = 30.0
    min_clip_seconds: float = 4.0
    music_threshold: float = 0.5
    clip_height: int | None = 480  # clips taller than this are scaled down; None keeps the source size
    max_hamming: int = 8
    max_ber: float = 0.15
    clip_files: str = "none"  # none | copy | encode: whether clips/<clip_id>.mp4 is written, and how


def none_clip_id(video_id: str) -> str:
    """The clip_id of the single row recording a video that produced no clip."""
    return f"{video_id}-none"


class SplitStep:
    """``step(video_row) -> {"video_id", "status", "error", "rows": [clip rows]}``; picklable."""

    def __init__(self, config: SplitConfig, threads: int = 1):
        self.config = config
        self.threads = threads  # per worker: cores // workers

    def __call__(self, item: dict) -> dict:
        if worker_threads(0) != self.threads:  # once per worker process, before YAMNet loads
            set_worker_threads(self.threads)
        cfg = self.config
        root = Path(cfg.data_root)
        video_id = item["video_id"]
        base = {k: item.get(k) for k in VIDEO_COLUMNS}
        base["fetch_status"] = item.get("fetch_status") or item.get("status")
        base["fetch_error"] = item.get("fetch_error")
        base["shot_detector"] = detector_info(cfg.detector, cfg.threshold).tag()
        try:
            if not item.get("video_path"):
                raise ValueError("the videos manifest row has no video_path")
            path = within(root, item["video_path"])
            s = plan_video(path, detector=cfg.detector, threshold=cfg.threshold, downscale=cfg.downscale,
                           clip_seconds=cfg.clip_seconds, min_clip_seconds=cfg.min_clip_seconds,
                           music_threshold=cfg.music_threshold)
        except Exception as e:
            return _none_result(base, video_id, "failed", error_line(e))
        p = s.probe
        base.update(width=p.width, height=p.height, fps=p.fps or (s.shots.fps if s.shots else None),
                    has_audio=p.has_audio, duration_s=p.duration_s)
        if s.shots is not None:
            base["shots"] = [{"start_s": min(x.start_s, p.duration_s), "end_s": min(x.end_s, p.duration_s)}
                             for x in s.shots.shots]
        if s.music is not None:
            base["music_detector"] = get_detector().info.tag()
            base["music_segments"] = [{"start_s": a, "end_s": b} for a, b in s.music.spans]
            main = s.music.main_span()
            base.update(has_music=main is not None, music_start_s=main[0] if main else None,
                        music_end_s=main[1] if main else None)
        if s.status != "ok":
            if s.status == "no_music":
                base["has_music"] = False  # has_music agrees with the status
            return _none_result(base, video_id, s.status, s.error)
        try:
            rows = self._clip_rows(base, path, s, root)
        except Exception as e:
            return _none_result(base, video_id, "failed", error_line(e))
        return {"video_id": video_id, "status": "ok", "error": None, "rows": rows}

    def _clip_rows(self, base: dict, path: Path, s, root: Path) -> list[dict]:
        shots = [(x.start_s, x.end_s) for x in s.shots.shots] if s.shots else []
        times = keyframe_times(shots, s.duration_s)
        phash = s.scan.keyframe_phash(times) if s.scan is not None else video_phash(path, times)
        fp_info = fingerprinter_info().tag()
        rows = []
        for w in s.clips:
            clip_id = f"{base['video_id']}-c{w.index:03d}"
            clip_rel, audio_rel = f"clips/{clip_id}.mp4", f"audio/{clip_id}.wav"
            height = self.config.clip_height
            height = height if height and s.probe.height and s.probe.height > height else None
            if self.config.clip_files == "encode":
                cut_clip(path, root / clip_rel, w.start_s, w.end_s, with_audio=s.probe.has_audio, height=height)
            elif self.config.clip_files == "copy":
                copy_clip(path, root / clip_rel, w.start_s, w.end_s, with_audio=s.probe.has_audio, height=height)
            else:
                clip_rel = None
            audio = slice_audio(s.audio, SAMPLE_RATE, w.start_s, w.end_s)
            write_clip_audio(root / audio_rel, audio, SAMPLE_RATE)
            try:
                fingerprint = fingerprint_audio(audio, SAMPLE_RATE)
            except Exception:  # no libchromaprint: Chromaprint's fpcalc on the written wav
                fingerprint = fingerprint_file(root / audio_rel)
            segment = segment_of(w.start_s, w.end_s, s.music.spans) if s.music is not None else None
            rows.append(record(dict(
                base, clip_id=clip_id, clip_index=w.index, clip_start_s=w.start_s, clip_end_s=w.end_s,
                clip_start_frame=w.start_frame, clip_end_frame=w.end_frame,
                music_ratio=s.music.music_ratio(w.start_s, w.end_s, self.config.music_threshold), fingerprint=fingerprint,
                video_phash=phash, clip_path=clip_rel, audio_path=audio_rel, fingerprinter=fp_info,
                music_start_s=segment[0] if segment else None, music_end_s=segment[1] if segment else None,
                has_music=segment is not None), "split", "ok", None))
        return rows


def _none_result(base: dict, video_id: str, status: str, error: str | None) -> dict:
    """The one ``<video_id>-none`` row of a video that yields no clip, with split's status."""
    row = record(dict(base, clip_id=none_clip_id(video_id)), "split", status, error)
    return {"video_id": video_id, "status": status, "error": error, "rows": [row]}


def pending_videos(videos_manifest: str | Path, clips_manifest: str | Path,
                   retry_failed: bool = False) -> tuple[list[dict], int]:
    """Video rows with status ok that split has not finished (with ``retry_failed``: or failed on);
    and how many were skipped.

    Both manifests are streamed (``manifest_scan``): only the pending video rows become dicts.
    """
    import pyarrow.compute as pc

    from commercial98k.manifest_scan import done_keys, scan_manifest

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
                    "split_error", "label_status", "label_error", "fingerprint", "video_phash", "clip_start_s",
                    "clip_end_s", "music_start_s", "music_end_s", "music_id", "dup_group", "has_music"]
#: the columns the identity pass may change
IDENTITY_CHANGES = ["music_id", "dup_group", "status", "error", "split_status", "split_error", "has_music"]


def assign_identity(clips_manifest: str | Path, max_ber: float = 0.15, max_hamming: int = 8) -> pa.Table:
    """``music_id`` of new fingerprinted clips from the persisted index (``identity_index``: new clips
    are matched against the known tracks, not all clips against each other); ``dup_group`` over all videos.

    Also drops a stale ``<video_id>-none`` row of a video that now has clips (a tombstone). Reads
    only ``IDENTITY_COLUMNS``, writes only the rows that changed as one manifest part (never the
    whole manifest), and returns those columns of every row after the pass.
    """
    from commercial98k.manifest_scan import scan_manifest

    batches = [pa.Table.from_batches([b]) for b in scan_manifest(clips_manifest, "clips", IDENTITY_COLUMNS)]
    if not batches:
        return read_manifest(clips_manifest, "clips").select(IDENTITY_COLUMNS)
    table = pa.concat_tables(batches, promote_options="permissive")
    before = table
    cols = {n: table.column(n).to_pylist() for n in ("clip_id", "video_id", "status", "fingerprint", "video_phash")}
    rows = table.select(["clip_id", "status", "fetch_status", "split_status", "label_status"]).to_pylist()
    cols["status"] = [split_result(r) for r in rows]  # split's own result: a label failure keeps its music_id
    with_clips = {v for v, s, c in zip(cols["video_id"], cols["status"], cols["clip_id"], strict=True)
                  if s == "ok" and not c.endswith("-none")}
    keep = [not (c == none_clip_id(v) and v in with_clips) for c, v in zip(cols["clip_id"], cols["video_id"], strict=True)]
    fps = {c: f for c, f, s, k in zip(cols["clip_id"], cols["fingerprint"], cols["status"], keep, strict=True)
           if f and s == "ok" and k}
    spans = table.select(["clip_id", "video_id", "clip_start_s", "clip_end_s", "music_start_s", "music_end_s"])
    linked = segment_links(tuple(r.values()) for r in spans.to_pylist())
    current = dict(zip(cols["clip_id"], table.column("music_id").to_pylist(), strict=True))
    # only new clips are matched (against the persisted index and each other)
    music = update_music_ids(clips_manifest, fps, current, max_ber=max_ber, linked=linked)
    phashes: dict[str, str] = {}
    for v, h in zip(cols["video_id"], cols["video_phash"], strict=True):
        if h and v not in phashes:
            phashes[v] = h
    dups = group_duplicates(phashes, max_hamming=max_hamming)
    table = table.set_column(table.schema.get_field_index("music_id"), "music_id",
                             pa.array([music.get(c) for c in cols["clip_id"]], pa.string()))
    table = table.set_column(table.schema.get_field_index("dup_group"), "dup_group",
                             pa.array([dups.get(v) for v in cols["video_id"]], pa.string()))
    table = without_music_identity(table.filter(pa.array(keep)))
    _write_identity_changes(clips_manifest, before, table,
                            [(c, v) for c, v, k in zip(cols["clip_id"], cols["video_id"], keep, strict=True) if not k])
    return table


def _write_identity_changes(clips_manifest: str | Path, before: pa.Table, after: pa.Table,
                            dropped: list[tuple[str, str]]) -> None:
    """One part with the whole rows whose ``IDENTITY_CHANGES`` differ, and tombstones for ``dropped``."""
    import pyarrow.compute as pc

    from commercial98k.manifest import TOMBSTONE, write_rows_part
    from commercial98k.manifest_scan import scan_manifest

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


def without_music_identity(table: pa.Table) -> pa.Table:
    """Make every split-``ok`` clip without a ``music_id`` ``no_music`` with the reason (has_music False).

    After this every ``ok`` clip has a ``music_id``: a clip whose fingerprint is empty or too
    short cannot be told apart from other tracks, so it never reaches the shards as a track.
    """
    rows = table.select(["clip_id", "status", "error", "split_status", "split_error", "label_status", "label_error",
                         "fetch_status", "fetch_error", "music_id", "fingerprint", "has_music"]).to_pylist()
    changed = False
    for r in rows:
        if split_result(r) == "ok" and not r["music_id"]:
            why = fingerprint_problem(r["fingerprint"]) or "no music identity (fingerprint matched nothing)"
            r.update(record(r, "split", "no_music", why), has_music=False)
            changed = True
    if not changed:
        return table
    for name in ("status", "error", "split_status", "split_error", "has_music"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(i), pa.array([r[name] for r in rows], table.schema.field(i).type))
    return table


def run_split(videos_manifest: str | Path, clips_manifest: str | Path, config: SplitConfig, *,
              workers: int | None = 1, engine: str = "local", address: str | None = None,
              retry_failed: bool = False) -> dict:
    """Split every pending video, then assign identities; return counts by status.

    ``counts["crashed"]``: videos whose worker crashed or was killed (not bad input).
    """
    config = replace(config, data_root=str(Path(config.data_root).resolve()))  # workers have other cwds
    todo, skipped = pending_videos(videos_manifest, clips_manifest, retry_failed)
    counts: dict[str, int] = {"skipped": skipped}
    if todo and engine == "ray":  # actors (pipelines.stages.SplitStage) that write their own parts
        counts.update(_split_on_actors(todo, clips_manifest, config, workers, address))
    elif todo:
        threads = threads_per_worker(workers or 1)
        set_worker_threads(threads)
        get_detector()  # unpack the model once before the workers start
        with ManifestWriter(clips_manifest, "clips", flush_every=32) as writer:
            for result in _results(SplitStep(config, threads), todo, workers, engine, address):
                counts[result["status"]] = counts.get(result["status"], 0) + 1
                if is_system_failure(result):
                    counts["crashed"] = counts.get("crashed", 0) + 1
                writer.extend(result["rows"])
    if manifest_exists(clips_manifest):
        table = assign_identity(clips_manifest, config.max_ber, config.max_hamming)
        compact(clips_manifest, "clips")  # incremental: the base is rewritten only when parts outweigh it
        ok = np.array([s == "ok" for s in table.column("status").to_pylist()], bool)
        counts["clips"] = int(ok.sum())
        counts["music_ids"] = len({m for m, o in zip(table.column("music_id").to_pylist(), ok, strict=True) if o and m})
    return counts


def _split_on_actors(todo: list[dict], clips_manifest: str | Path, config: SplitConfig, workers: int | None,
                     address: str | None) -> dict[str, int]:
    """Split on Ray actors; the driver only counts videos by status from the (clip_id, status) it gets."""
    from commercial98k.stage_runner import run_stage
    from pipelines.stages import SplitStage

    status: dict[str, str] = {}
    crashed = 0
    for row in run_stage(SplitStage(config), todo, engine="ray", workers=workers, address=address,
                         manifest=clips_manifest, data_root=config.data_root, desc="split (clips)"):
        status.setdefault(row["clip_id"].rsplit("-", 1)[0], row["status"])
        crashed += is_system_failure(row)
    compact(clips_manifest, "clips")
    counts: dict[str, int] = {}
    for s in status.values():
        counts[s] = counts.get(s, 0) + 1
    if crashed:
        counts["crashed"] = crashed
    return counts


def _results(step: SplitStep, todo: list[dict], workers: int | None, engine: str,
             address: str | None) -> Iterator[dict]:
    for result in run_steps(step, todo, workers=workers, engine=engine, address=address, desc="split",
                            data_root=step.config.data_root):
        if "rows" not in result:  # the engine caught an unexpected error: record the video as failed
            vid = result.get("video_id") or "?"
            row = {k: result.get(k) for k in VIDEO_COLUMNS}
            row.update(fetch_status=row.get("fetch_status") or row.get("status"))
            result = _none_result(row, vid, "failed", result.get("error"))
        yield result
