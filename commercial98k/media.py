"""Probing and decoding media with ffmpeg (through ffmpeg-python; never through a shell)."""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np


class MediaError(RuntimeError):
    """A file ffmpeg cannot read, or that lacks the stream asked for."""


@functools.lru_cache(maxsize=1)
def ffmpeg_bin() -> str:
    """``ffmpeg`` on PATH, else the binary the imageio-ffmpeg wheel ships."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:
        raise MediaError("ffmpeg not found: install Debian's ffmpeg or `pip install imageio-ffmpeg`") from e


@functools.lru_cache(maxsize=1)
def ffprobe_bin() -> str:
    found = shutil.which("ffprobe")
    if not found:
        raise MediaError("ffprobe not found: install Debian's ffmpeg package")
    return found


@dataclass(frozen=True)
class Probe:
    duration_s: float
    width: int | None
    height: int | None
    fps: float | None
    has_video: bool
    has_audio: bool
    audio_sample_rate: int | None
    num_frames: int | None


def ffmpeg_error_tail(e: ffmpeg.Error) -> str:
    """The last line ffmpeg/ffprobe wrote to stderr: the cause, for a one-line error."""
    lines = (e.stderr or b"").decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "unknown error"


def _ratio(text: str | None) -> float | None:
    if not text or text in ("0/0", "0"):
        return None
    if "/" in text:
        a, b = text.split("/")
        return float(a) / float(b) if float(b) else None
    return float(text)


def probe(path: str | Path) -> Probe:
    """Duration, resolution, frame rate and which streams a file has."""
    path = str(path)
    if not Path(path).is_file():
        raise MediaError(f"{path}: no such file")
    try:
        info = ffmpeg.probe(path, cmd=ffprobe_bin())
    except ffmpeg.Error as e:
        raise MediaError(f"{path}: ffprobe cannot read it ({ffmpeg_error_tail(e)})") from e
    streams = info.get("streams", [])
    v = next((s for s in streams if s.get("codec_type") == "video" and s.get("disposition", {}).get("attached_pic", 0) == 0), None)
    a = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = _ratio(info.get("format", {}).get("duration")) or _ratio((v or a or {}).get("duration")) or 0.0
    fps = _ratio(v.get("avg_frame_rate")) or _ratio(v.get("r_frame_rate")) if v else None
    nb = v.get("nb_frames") if v else None
    return Probe(
        duration_s=float(duration),
        width=int(v["width"]) if v else None,
        height=int(v["height"]) if v else None,
        fps=fps,
        has_video=v is not None,
        has_audio=a is not None,
        audio_sample_rate=int(a["sample_rate"]) if a and a.get("sample_rate") else None,
        num_frames=int(nb) if nb and str(nb).isdigit() else None,
    )


def _run(stream, path: str | Path) -> bytes:
    try:
        out, _ = stream.run(cmd=ffmpeg_bin(), capture_stdout=True, capture_stderr=True, quiet=True)
    except ffmpeg.Error as e:
        raise MediaError(f"{path}: ffmpeg failed ({ffmpeg_error_tail(e)})") from e
    return out


def load_audio(path: str | Path, sample_rate: int, start_s: float | None = None,
               duration_s: float | None = None) -> np.ndarray:
    """Decode the first audio stream to mono float32 at ``sample_rate`` (optionally a span)."""
    in_kw = {}
    if start_s:
        in_kw["ss"] = f"{start_s:.6f}"
    if duration_s:
        in_kw["t"] = f"{duration_s:.6f}"
    stream = ffmpeg.input(str(path), **in_kw).output("pipe:", format="f32le", acodec="pcm_f32le", ac=1,
                                                      ar=sample_rate, map="0:a:0")
    out = _run(stream, path)
    audio = np.frombuffer(out, np.float32)
    if audio.size == 0:
        raise MediaError(f"{path}: no audio samples decoded")
    return audio.copy()


def load_frames(path: str | Path, fps: float, size: int | tuple[int, int] = 224, start_s: float | None = None,
                duration_s: float | None = None) -> np.ndarray:
    """Decode frames sampled at ``fps`` as uint8 RGB [N, H, W, 3].

    An int ``size`` scales the short side to ``size`` then centre-crops a square; a
    ``(width, height)`` pair scales to exactly that size.
    """
    in_kw = {}
    if start_s:
        in_kw["ss"] = f"{start_s:.6f}"
    if duration_s:
        in_kw["t"] = f"{duration_s:.6f}"
    s = ffmpeg.input(str(path), **in_kw).video.filter("fps", fps=fps)
    if isinstance(size, int):
        s = s.filter("scale", f"if(lt(iw,ih),{size},-2)", f"if(lt(iw,ih),-2,{size})").filter("crop", size, size)
        w = h = size
    else:
        w, h = size
        s = s.filter("scale", w, h)
    out = _run(s.output("pipe:", format="rawvideo", pix_fmt="rgb24"), path)
    frames = np.frombuffer(out, np.uint8)
    if frames.size == 0:
        raise MediaError(f"{path}: no video frames decoded")
    return frames.reshape(-1, h, w, 3).copy()


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono float audio as a 16-bit WAV (atomic)."""
    import soundfile as sf

    from .fsutil import atomic_path

    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(tmp, np.clip(audio, -1, 1), sample_rate, subtype="PCM_16", format="WAV")
