"""Plan clip windows inside the music segment, aligned to shots and frames; cut them with ffmpeg."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from commercial98k.media.ffmpeg_io import MediaError, run_ffmpeg, write_wav
from commercial98k.storage.files import atomic_path

DEFAULT_CLIP_SECONDS = 30.0
DEFAULT_MIN_CLIP_SECONDS = 4.0
#: x264 quality of re-encoded clips. Measured (a 320 px ad span, EfficientNet-Lite0 at 1 fps):
#: the clip file's frame features against the source span's, mean-embedding cosine 0.984 at
#: crf 23, 0.994 at 18, 0.998 at 12 (every frame >= 0.989), 1.000 lossless; the file is then
#: about the source's own bitrate. The sampled frames themselves are pixel-identical at crf 0,
#: so what crf 23 left was only the re-encode's loss.
CLIP_CRF = 12


@dataclass(frozen=True)
class ClipWindow:
    """One clip: ``[start_s, end_s)`` and, when the video has a frame rate, ``[start_frame, end_frame)``."""

    index: int
    start_s: float
    end_s: float
    start_frame: int | None = None
    end_frame: int | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _windows(start: float, end: float, boundaries: Sequence[float], clip_s: float, min_s: float) -> list[tuple[float, float]]:
    """Split ``[start, end]`` into windows of at most ``clip_s``, ending on a shot boundary when one
    lies in ``[cur + min_s, cur + clip_s]`` (the latest such), else exactly ``clip_s`` long."""
    out = []
    cur = start
    eps = 1e-6
    while end - cur > clip_s + eps:
        target = cur + clip_s
        inside = [b for b in boundaries if cur + min_s - eps <= b <= target + eps]
        cut = max(inside) if inside else target
        out.append((cur, cut))
        cur = cut
    if end - cur >= min_s - eps:
        out.append((cur, end))
    return out


def plan_clips(duration_s: float, music_spans: Sequence[tuple[float, float]], shot_boundaries: Sequence[float] = (),
               fps: float | None = None, clip_seconds: float = DEFAULT_CLIP_SECONDS,
               min_clip_seconds: float = DEFAULT_MIN_CLIP_SECONDS) -> list[ClipWindow]:
    """Clip windows inside each music span; frame-accurate when ``fps`` is known.

    A span up to ``clip_seconds`` long is one clip (a whole ad); a longer one is cut into windows
    that end on shot boundaries where possible. Windows shorter than ``min_clip_seconds`` are
    dropped. With ``fps``, window edges snap to frame starts inside the span and the video.
    """
    if clip_seconds <= 0 or min_clip_seconds < 0 or min_clip_seconds > clip_seconds:
        raise ValueError(f"need 0 <= min_clip_seconds ({min_clip_seconds}) <= clip_seconds ({clip_seconds})")
    bounds = sorted(float(b) for b in shot_boundaries)
    clips: list[ClipWindow] = []
    total_frames = int(math.floor(duration_s * fps + 1e-6)) if fps else None
    for span_start, span_end in sorted(music_spans):
        s, e = max(0.0, float(span_start)), min(float(duration_s), float(span_end))
        if fps:  # snap the span inward to whole frames
            fs = int(math.ceil(s * fps - 1e-6))
            fe = min(int(math.floor(e * fps + 1e-6)), total_frames or 0)
            s, e = fs / fps, fe / fps
        for a, b in _windows(s, e, bounds, clip_seconds, min_clip_seconds):
            if fps:
                fa, fb = int(round(a * fps)), int(round(b * fps))
                fb = min(fb, fa + int(math.floor(clip_seconds * fps + 1e-6)))  # rounding never makes a window too long
                if fb <= fa or (fb - fa) / fps < min_clip_seconds - 1e-6:
                    continue
                clips.append(ClipWindow(len(clips), round(fa / fps, 6), round(fb / fps, 6), fa, fb))
            else:
                clips.append(ClipWindow(len(clips), round(a, 6), round(b, 6)))
    return clips


def cut_clip(video_path: str | Path, out_path: str | Path, start_s: float, end_s: float, *,
             with_audio: bool = True, height: int | None = None, crf: int = CLIP_CRF, preset: str = "veryfast") -> Path:
    """Re-encode ``[start_s, end_s)`` of a video to H.264/AAC MP4 (frame-accurate), atomically.

    ``height`` scales the picture to that height (width keeps the aspect ratio); None keeps it.
    ``crf`` 12 (``CLIP_CRF``) keeps the clip's features within cosine 0.99 of the source span's.
    """
    out_path = Path(out_path)
    inp = ffmpeg.input(str(video_path), ss=f"{start_s:.6f}")
    if height:
        video = inp.video.filter("scale", -2, int(height) // 2 * 2)
    else:
        video = inp.video.filter("scale", "trunc(iw/2)*2", "trunc(ih/2)*2")
    streams = [video, inp.audio] if with_audio else [video]
    # Deterministic: one encoder thread (x264's frame threads and lookahead split depend on the
    # thread count), bit-exact flags and no metadata (encoder version, times), so the same input
    # gives byte-identical clips on every run.
    kw = {"t": f"{end_s - start_s:.6f}", "vcodec": "libx264", "preset": preset, "crf": crf,
          "pix_fmt": "yuv420p", "movflags": "+faststart", "format": "mp4", "threads": 1,
          "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0", "fflags": "+bitexact",
          "flags:v": "+bitexact", "map_metadata": -1, "map_chapters": -1}
    if with_audio:
        kw.update({"acodec": "aac", "audio_bitrate": "128k", "flags:a": "+bitexact"})
    with atomic_path(out_path, suffix=".mp4") as tmp:
        # a failure names ffmpeg's error line (a full disk is an OSError: the machine's fault)
        run_ffmpeg(ffmpeg.output(*streams, str(tmp), **kw).overwrite_output(),
                   f"{video_path}: cutting {start_s:.3f}-{end_s:.3f} s", out_path)
    return out_path


def slice_audio(audio: np.ndarray, sample_rate: int, start_s: float, end_s: float) -> np.ndarray:
    """The samples of ``[start_s, end_s)`` of a decoded track."""
    a = int(round(start_s * sample_rate))
    b = int(round(end_s * sample_rate))
    return np.asarray(audio[max(0, a):max(0, b)], np.float32)


def write_clip_audio(out_path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write a clip's mono audio as 16-bit WAV (atomic, via ``media.write_wav``)."""
    if len(audio) == 0:
        raise MediaError(f"{out_path}: empty clip audio")
    write_wav(out_path, audio, sample_rate)
    return Path(out_path)
