"""The per-video work of ``c98k split``: one video row in, its clip rows (or one ``-none`` row) out.

``SplitStep`` (a picklable per-video callable) plans the video (``plan_video``: probe, shots, YAMNet
music spans, clip windows from one decode), writes ``audio/<clip_id>.wav`` (mono 16 kHz),
fingerprints each clip and hashes the keyframes, and cuts ``clips/<clip_id>.mp4`` only with
``clip_files`` ``copy`` or ``encode``. A video without audio, without music or that fails gets
one ``<video_id>-none`` row with split's status and cause. ``SplitStage`` is the same work as a
``commercial98k.engine.stage.Stage``, run by ``engine.runner.run_stage`` on either engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from commercial98k.engine.stage import Resources, Stage
from commercial98k.engine.threads import set_worker_threads, worker_threads
from commercial98k.errors import error_line
from commercial98k.identity.chromaprint import (
    fingerprint_audio,
    fingerprint_file,
    fingerprinter_info,
    segment_of,
)
from commercial98k.identity.landmarks import encode as encode_landmarks
from commercial98k.identity.landmarks import extract_peaks, landmark_info, voiced_frames
from commercial98k.identity.reupload import keyframe_times, video_phash
from commercial98k.manifest.schema import VIDEO_SCHEMA
from commercial98k.manifest.status import record
from commercial98k.split.cut import cut_clip, slice_audio, write_clip_audio
from commercial98k.storage.files import DataRoot

from ..faults import raise_if_environment
from . import plan_video
from .music import SAMPLE_RATE, get_detector, span_share
from .shots import detector_info
from .streamcopy import copy_clip
from .vad import FRAME_S as VAD_FRAME_S
from .vad import get_vad

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
    fingerprint: str = "landmark"  # landmark | chromaprint | both: which fingerprint gives music_id
    music_library: str | None = None  # a folder of full tracks: clips that play one get its id (split.library)


def none_clip_id(video_id: str) -> str:
    """The clip_id of the single row recording a video that produced no clip."""
    return f"{video_id}-none"


class SplitStep:
    """``step(video_row) -> {"video_id", "status", "error", "rows": [clip rows]}``; picklable.

    ``threads``: cap this process's model threads at the first call (a bare step in a benchmark);
    None leaves them to the stage's worker (``SplitStage.setup``).
    """

    def __init__(self, config: SplitConfig, threads: int | None = None):
        self.config = config
        self.threads = threads

    def __call__(self, item: dict) -> dict:
        if self.threads and worker_threads(0) != self.threads:  # before YAMNet loads
            set_worker_threads(self.threads)
        cfg = self.config
        root = DataRoot(cfg.data_root)
        video_id = item["video_id"]
        base = video_base(item, cfg)
        try:
            if not item.get("video_path"):
                raise ValueError("the videos manifest row has no video_path")
            path = root.resolve(item["video_path"])
            s = plan_video(path, detector=cfg.detector, threshold=cfg.threshold, downscale=cfg.downscale,
                           clip_seconds=cfg.clip_seconds, min_clip_seconds=cfg.min_clip_seconds,
                           music_threshold=cfg.music_threshold)
        except Exception as e:
            raise_if_environment(e, cfg.data_root)  # a full disk is not this video's fault
            return none_result(base, video_id, "failed", error_line(e))
        p = s.probe
        base.update(width=p.width, height=p.height, fps=p.fps or (s.shots.fps if s.shots else None),
                    has_audio=p.has_audio, duration_s=p.duration_s)
        if s.shots is not None:
            base["shots"] = [{"start_s": min(x.start_s, p.duration_s), "end_s": min(x.end_s, p.duration_s)}
                             for x in s.shots.shots]
        if s.music is not None:
            base["music_detector"] = f"{get_detector().info.tag()}; {get_vad().info.tag()}"
            base["music_segments"] = [{"start_s": a, "end_s": b} for a, b in s.music.spans]
            base["speech_segments"] = [{"start_s": a, "end_s": b} for a, b in s.speech]
            main = s.music.main_span()
            base.update(has_music=main is not None, music_start_s=main[0] if main else None,
                        music_end_s=main[1] if main else None)
        if s.status != "ok":
            if s.status == "no_music":
                base["has_music"] = False  # has_music agrees with the status
            return none_result(base, video_id, s.status, s.error)
        try:
            rows = self._clip_rows(base, path, s, root)
        except Exception as e:
            raise_if_environment(e, cfg.data_root)
            return none_result(base, video_id, "failed", error_line(e))
        return {"video_id": video_id, "status": "ok", "error": None, "rows": rows}

    def _clip_rows(self, base: dict, path: Path, s, root: DataRoot) -> list[dict]:
        shots = [(x.start_s, x.end_s) for x in s.shots.shots] if s.shots else []
        times = keyframe_times(shots, s.duration_s)
        phash = s.scan.keyframe_phash(times) if s.scan is not None else video_phash(path, times)
        fp_info = f"{fingerprinter_info().tag()}; {landmark_info().tag()}"
        speech = s.speech
        rows = []
        for w in s.clips:
            clip_id = f"{base['video_id']}-c{w.index:03d}"
            clip_rel, audio_rel = f"clips/{clip_id}.mp4", f"audio/{clip_id}.wav"
            height = self.config.clip_height
            height = height if height and s.probe.height and s.probe.height > height else None
            if self.config.clip_files == "encode":
                cut_clip(path, root.resolve(clip_rel), w.start_s, w.end_s, with_audio=s.probe.has_audio, height=height)
            elif self.config.clip_files == "copy":
                copy_clip(path, root.resolve(clip_rel), w.start_s, w.end_s, with_audio=s.probe.has_audio, height=height)
            else:
                clip_rel = None
            audio = slice_audio(s.audio, SAMPLE_RATE, w.start_s, w.end_s)
            write_clip_audio(root.resolve(audio_rel), audio, SAMPLE_RATE)
            try:
                fingerprint = fingerprint_audio(audio, SAMPLE_RATE)
            except Exception:  # no libchromaprint: Chromaprint's fpcalc on the written wav
                fingerprint = fingerprint_file(root.resolve(audio_rel))
            peaks = extract_peaks(audio, voiced_frames(s.speech_probs, VAD_FRAME_S, w.start_s, len(audio)))
            segment = segment_of(w.start_s, w.end_s, s.music.spans) if s.music is not None else None
            rows.append(record(dict(
                base, clip_id=clip_id, clip_index=w.index, clip_start_s=w.start_s, clip_end_s=w.end_s,
                clip_start_frame=w.start_frame, clip_end_frame=w.end_frame,
                music_ratio=s.music.music_ratio(w.start_s, w.end_s, self.config.music_threshold), fingerprint=fingerprint,
                speech_ratio=span_share(speech, w.start_s, w.end_s), landmarks=encode_landmarks(peaks),
                video_phash=phash, clip_path=clip_rel, audio_path=audio_rel, fingerprinter=fp_info,
                music_start_s=segment[0] if segment else None, music_end_s=segment[1] if segment else None,
                has_music=segment is not None), "split", "ok", None))
        return rows


def video_base(item: dict, config: SplitConfig) -> dict:
    """The columns every clip row of a video starts from: the video's, fetch's result, the shot detector."""
    base = {k: item.get(k) for k in VIDEO_COLUMNS}
    base["fetch_status"] = item.get("fetch_status")  # the reader gives legacy video rows theirs
    base["fetch_error"] = item.get("fetch_error")
    base["shot_detector"] = detector_info(config.detector, config.threshold).tag()
    return base


def none_result(base: dict, video_id: str, status: str, error: str | None) -> dict:
    """The one ``<video_id>-none`` row of a video that yields no clip, with split's status."""
    row = record(dict(base, clip_id=none_clip_id(video_id)), "split", status, error)
    return {"video_id": video_id, "status": status, "error": error, "rows": [row]}


class SplitStage(Stage):
    """``c98k split``: one video in, its clip rows (or its ``<video_id>-none`` row) out.

    Its model threads are the executor's (the worker's share of the cores); a video whose work
    raised or whose worker died gets the same ``-none`` row as one that failed inside the step.
    """

    key, kind = "clip_id", "clips"

    def __init__(self, config: SplitConfig, cpus_per_worker: float = 1.0, threads: int | None = None):
        self.config = config
        self.data_root = config.data_root
        self.resources = Resources(num_cpus=cpus_per_worker)
        self.batch_size = 1
        self.threads = threads

    def setup(self) -> None:
        super().setup()
        get_detector()  # YAMNet and the VAD once per worker
        get_vad()

    def process_batch(self, rows: list[dict]) -> list[dict]:
        step = SplitStep(self.config)
        return [row for item in rows for row in step(item)["rows"]]

    def failed_rows(self, item: dict, error: str) -> list[dict]:
        return none_result(video_base(item, self.config), item["video_id"], "failed", error)["rows"]
