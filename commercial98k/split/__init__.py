"""Video structure: probe, shots (PySceneDetect), music segment (YAMNet), clips, music identity.

For one new video (e.g. ``yuyin recommend``)::

    from commercial98k.split import plan_video
    s = plan_video("ad.mp4")                 # probe + shots + music spans + clip windows
    s.status, s.clips, s.music.spans, s.shots.shots, s.audio   # audio: 16 kHz mono float32
    s.speech                                 # where a voice-over speaks (Silero VAD)

The ``c98k split`` stage (``split.step.SplitStep``) runs this per video, cuts the clips, writes
their audio and fingerprints, then groups clips into ``music_id`` and videos into ``dup_group``.

The video is decoded once (``decode.scan_video``): the same small frames serve the shot
detector and the keyframe pHashes (``s.scan.keyframe_phash(times)``), and the 16 kHz track is
streamed through YAMNet in bounded chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from commercial98k.media.ffmpeg_io import MediaError, Probe, probe
from commercial98k.split.cut import DEFAULT_CLIP_SECONDS, DEFAULT_MIN_CLIP_SECONDS, ClipWindow, plan_clips

from .decode import ScanResult, scan_video
from .music import OFFSET_SHARE, MusicSegmentation, get_detector, spans_from_probs
from .shots import Shot, ShotList
from .vad import get_vad, spans_from_frames

__all__ = ["ClipWindow", "MusicSegmentation", "Shot", "ShotList", "VideoStructure", "plan_video"]


@dataclass
class VideoStructure:
    """What ``plan_video`` found. ``status``: ok, no_audio, no_music or unsupported (no video)."""

    path: Path
    probe: Probe
    status: str
    shots: ShotList | None = None
    music: MusicSegmentation | None = None
    clips: list[ClipWindow] = field(default_factory=list)
    audio: np.ndarray | None = field(default=None, repr=False)  # 16 kHz mono, whole video
    error: str | None = None
    scan: ScanResult | None = field(default=None, repr=False)  # the one decode pass (keyframe pHashes)
    speech: list[tuple[float, float]] = field(default_factory=list)  # where someone speaks (split.vad)
    speech_probs: np.ndarray | None = field(default=None, repr=False)  # the VAD's per-frame P(speech)

    @property
    def duration_s(self) -> float:
        return self.probe.duration_s


#: Audio whose loudest sample is below this (dBFS) is reported as silent, not as "no music".
SILENT_DB = -60.0


def _max_db(audio: np.ndarray | None) -> float:
    """Peak level of decoded audio in dBFS (-inf for none or all zeros)."""
    peak = float(np.max(np.abs(audio))) if audio is not None and len(audio) else 0.0
    return 20.0 * float(np.log10(peak)) if peak > 0 else float("-inf")


def plan_video(path: str | Path, *, detector: str = "adaptive", threshold: float | None = None,
               downscale: int | None = None, clip_seconds: float = DEFAULT_CLIP_SECONDS,
               min_clip_seconds: float = DEFAULT_MIN_CLIP_SECONDS, music_threshold: float = 0.5,
               require_music: bool = True, detect_shots_without_audio: bool = False,
               num_threads: int | None = None) -> VideoStructure:
    """Probe a video, find its shots and music spans, and plan its clip windows.

    With ``require_music=False`` (recommending music for a new video) the windows cover the
    whole video whatever its soundtrack. Raises ``MediaError`` for unreadable files.
    """
    path = Path(path)
    info = probe(path)
    if not info.has_video:
        return VideoStructure(path, info, "unsupported", error="no video stream")
    if info.duration_s <= 0:
        raise MediaError(f"{path}: zero duration")
    if not info.has_audio and require_music:
        scan = (scan_video(path, fps=info.fps, detector=detector, threshold=threshold, downscale=downscale)
                if detect_shots_without_audio else None)
        return VideoStructure(path, info, "no_audio", shots=scan.shots if scan else None, error="no audio stream",
                              scan=scan)
    scan = scan_video(path, fps=info.fps, detector=detector, threshold=threshold, downscale=downscale,
                      music_detector=get_detector(num_threads=num_threads) if info.has_audio else None)
    shots = scan.shots
    fps = info.fps or shots.fps
    bounds = [b for b in shots.boundaries_s() if b < info.duration_s]
    music = audio = None
    speech: list[tuple[float, float]] = []
    speech_probs = None
    if info.has_audio:
        if scan.probs is None:
            raise MediaError(f"{path}: no audio samples decoded")
        audio = scan.audio
        vad = get_vad(num_threads=num_threads)
        speech_probs = vad.frame_probs(audio)
        speech = spans_from_frames(speech_probs, info.duration_s)
        found = spans_from_probs(scan.probs, music_threshold, OFFSET_SHARE * music_threshold, speech_segments=speech)
        spans = [(s, min(e, info.duration_s)) for s, e in found if s < info.duration_s]
        music = MusicSegmentation(spans, scan.probs)
    if require_music:
        if music is None or not music.has_music:
            peak = float(music.probs.music.max()) if music is not None and len(music.probs) else 0.0
            level = _max_db(audio)
            why = (f"audio is silent (max {level:.0f} dB)" if level < SILENT_DB else
                   f"peak P(music) {peak:.2f} < {music_threshold:g}" if peak < music_threshold else
                   f"P(music) reaches {peak:.2f} only in bursts shorter than the 2 s minimum span")
            return VideoStructure(path, info, "no_music", shots=shots, music=music, audio=audio,
                                  error=f"no background music detected ({why})", scan=scan, speech=speech,
                                  speech_probs=speech_probs)
        spans = music.spans
    else:
        spans = [(0.0, info.duration_s)]
    clips = plan_clips(info.duration_s, spans, bounds, fps, clip_seconds, min_clip_seconds)
    status = "ok" if clips else "no_music"
    error = None if clips else f"music spans shorter than --min-clip-seconds {min_clip_seconds:g}"
    return VideoStructure(path, info, status, shots=shots, music=music, clips=clips, audio=audio, error=error,
                          scan=scan, speech=speech, speech_probs=speech_probs)
