"""Shot boundaries with PySceneDetect 0.7 on downscaled frames."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from commercial98k.media.ffmpeg_io import MediaError

from ..models.registry import ModelInfo

# OpenCV's FFmpeg backend prints decoder noise for damaged files; we report one error line instead.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

DETECTORS = ("adaptive", "content", "threshold", "hash")
#: PySceneDetect's own defaults, repeated here so the CLI can show them.
DEFAULT_THRESHOLDS = {"adaptive": 3.0, "content": 27.0, "threshold": 12.0, "hash": 0.35}
#: Process frames about this wide (PySceneDetect's auto-downscale target is 256).
DEFAULT_WIDTH = 256


class Shot(NamedTuple):
    """One shot: ``[start_s, end_s)`` in seconds and ``[start_frame, end_frame)`` in frames."""

    start_s: float
    end_s: float
    start_frame: int
    end_frame: int


@dataclass(frozen=True)
class ShotList:
    """The shots of a video and the frame rate PySceneDetect decoded it at."""

    shots: list[Shot]
    fps: float
    num_frames: int

    def cuts(self) -> list[int]:
        """Frame numbers where a new shot starts (the first shot's start excluded)."""
        return [s.start_frame for s in self.shots[1:]]

    def boundaries_s(self) -> list[float]:
        return [s.start_s for s in self.shots[1:]]


class _FastScore:
    """ContentDetector's frame score (HSV deltas) with one ``absdiff`` + ``sumElems`` per frame
    instead of three int32 copies per channel: the same per-channel sums, so the same cuts."""

    _last_hsv = None

    def _calculate_frame_score(self, timecode, frame_img):
        import cv2

        w = self._weights
        if self.stats_manager is not None or w.delta_edges > 0.0:
            return super()._calculate_frame_score(timecode, frame_img)
        hsv = cv2.cvtColor(frame_img, cv2.COLOR_BGR2HSV)
        last, self._last_hsv = self._last_hsv, hsv
        if last is None:
            return 0.0
        n = float(hsv.shape[0] * hsv.shape[1])
        d = cv2.sumElems(cv2.absdiff(hsv, last))
        parts = (d[0] / n, d[1] / n, d[2] / n, 0.0)
        return sum(c * x for c, x in zip(parts, w, strict=True)) / sum(abs(x) for x in w)


@functools.cache
def fast_detector_classes() -> tuple[type, type]:
    """PySceneDetect's ContentDetector and AdaptiveDetector with the cheaper, equal frame score."""
    import scenedetect as sd

    return (type("FastContentDetector", (_FastScore, sd.ContentDetector), {}),
            type("FastAdaptiveDetector", (_FastScore, sd.AdaptiveDetector), {}))


def make_detector(detector: str = "adaptive", threshold: float | None = None, min_scene_len: int = 15,
                  **options):
    """A PySceneDetect detector by short name; ``threshold`` None keeps the detector's default.

    ``options`` go to the detector's constructor (e.g. ``fade_bias`` for ``threshold``).
    """
    import scenedetect as sd

    kw = {"min_scene_len": min_scene_len, **options}
    content, adaptive = fast_detector_classes()
    if detector == "adaptive":
        return adaptive(adaptive_threshold=threshold if threshold is not None else 3.0, **kw)
    if detector == "content":
        return content(threshold=threshold if threshold is not None else 27.0, **kw)
    if detector == "threshold":
        return sd.ThresholdDetector(threshold=threshold if threshold is not None else 12.0, add_final_scene=True, **kw)
    if detector == "hash":
        return sd.HashDetector(**({"threshold": threshold} if threshold is not None else {}), **kw)
    raise ValueError(f"unknown shot detector {detector!r}; use one of {', '.join(DETECTORS)}")


def detector_info(detector: str = "adaptive", threshold: float | None = None) -> ModelInfo:
    """Provenance of the shot detector: ``pyscenedetect-<detector> <version> <threshold>``."""
    import scenedetect as sd

    t = threshold if threshold is not None else DEFAULT_THRESHOLDS.get(detector, 0.0)
    return ModelInfo(f"pyscenedetect-{detector}", sd.__version__, f"t={t:g}")


def detect_shots(path: str | Path, detector: str = "adaptive", threshold: float | None = None,
                 downscale: int | None = None, min_scene_len: int = 15, **options) -> ShotList:
    """Detect shots; ``downscale`` None picks a factor so frames are about 256 px wide.

    Returns at least one shot covering the whole video when no cut is found. ``options`` go
    to the PySceneDetect detector. Raises ``MediaError`` when the file has no decodable video.
    """
    import scenedetect as sd

    logging.getLogger("pyscenedetect").setLevel(logging.ERROR)
    det = make_detector(detector, threshold, min_scene_len, **options)
    try:
        video = sd.open_video(str(path), backend="opencv")
    except Exception as e:  # VideoOpenFailure, OSError
        raise MediaError(f"{path}: cannot open the video for shot detection ({e})") from e
    manager = sd.SceneManager()
    width = video.frame_size[0] if video.frame_size else 0
    factor = downscale if downscale is not None else max(1, round(width / DEFAULT_WIDTH)) if width else 1
    manager.auto_downscale = False
    manager.downscale = max(1, int(factor))
    manager.add_detector(det)
    n = manager.detect_scenes(video=video)
    fps = float(video.frame_rate)
    if n <= 0:
        raise MediaError(f"{path}: no video frame could be decoded (corrupt or truncated file?)")
    scenes = manager.get_scene_list(start_in_scene=True)
    shots = [Shot(round(a.frame_num / fps, 6), round(b.frame_num / fps, 6), int(a.frame_num), int(b.frame_num))
             for a, b in scenes]
    if not shots:
        shots = [Shot(0.0, round(n / fps, 6), 0, n)]
    return ShotList(shots, fps, n)
