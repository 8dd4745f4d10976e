"""Probing and decoding media with ffmpeg (through ffmpeg-python; never through a shell)."""

from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from commercial98k.errors import C98kError
from commercial98k.faults import AGAIN, TOOL_HINT, EnvironmentFault, tool_crashed


class MediaError(C98kError, RuntimeError):
    """A file ffmpeg cannot read, or that lacks the stream asked for."""


@functools.lru_cache(maxsize=1)
def ffmpeg_bin() -> str:
    """``ffmpeg`` on PATH, else the binary the imageio-ffmpeg wheel ships.

    Neither: ``faults.EnvironmentFault`` (the machine lacks a tool; no video is to blame)."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:
        raise tool_missing("ffmpeg") from e
    if not os.access(exe, os.X_OK):
        raise tool_missing("ffmpeg")
    return exe


def tool_missing(tool: str) -> EnvironmentFault:
    """``<tool> not found: <how to install it>``."""
    return EnvironmentFault(f"{tool} not found", None, f"{TOOL_HINT[tool]}, {AGAIN}")


@functools.lru_cache(maxsize=1)
def ffprobe_bin() -> str | None:
    """``ffprobe`` on PATH, or None (``probe`` needs none: it reads the file with PyAV)."""
    return shutil.which("ffprobe")


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


# ffmpeg's generic trailers after the real cause: never the line a user needs.
_FFMPEG_TRAILERS = ("To ignore this, add a trailing '?' to the map", "Conversion failed!",
                    "Error opening output files", "Error opening output file", "Exiting normally")
#: lines that name a cause (ffmpeg's own error wording)
_ERROR_WORDS = re.compile(r"error|invalid|no such|not found|denied|no space|read-only|quota|could not|cannot|"
                          r"can't|unable|failed|unknown|not supported|unsupported|does not|mismatch|corrupt|"
                          r"truncat|missing|too many|out of memory", re.IGNORECASE)
#: the encoders' and muxer's closing statistics (``[aac @ 0x..] Qavg: 191.102``, ``[libx264 @ ..]
#: frame I:..``, ``video:12kB audio:3kB``, progress lines): printed last, never a cause
_STATISTICS = re.compile(r"Qavg:|^\[\w+ @ 0x[0-9a-f]+\] (frame [IPB]|mb [IPB]|final ratefactor|coded y|i16|i8|i4|"
                         r"8x8|direct|ref [PB]|kb/s|Weighted|consecutive|SSIM|PSNR|using )|^(frame|size)=|"
                         r"^video:\S+ audio:|muxing overhead|^\[out#|^Input #|^Output #|^Stream( #|mapping)|"
                         r"^\s*(Duration|Metadata|encoder|major_brand|minor_version|compatible_brands|Side data)\b")


def ffmpeg_error_line(stderr: bytes | str | None) -> str:
    """The line of ffmpeg's stderr that names the cause: the last one worded as an error, else
    the last one that is not a closing statistic or a generic trailer."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else (stderr or "")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    meaningful = [ln for ln in lines if not ln.startswith(_FFMPEG_TRAILERS) and not _STATISTICS.search(ln)]
    worded = [ln for ln in meaningful if _ERROR_WORDS.search(ln)]
    return (worded or meaningful or [ln for ln in lines if not _STATISTICS.search(ln)] or ["unknown error"])[-1]


def ffmpeg_error_tail(e: ffmpeg.Error) -> str:
    """The line ffmpeg/ffprobe wrote to stderr that names the cause, for a one-line error."""
    return ffmpeg_error_line(e.stderr)


def run_ffmpeg(stream, what: str, output: str | os.PathLike | None = None) -> bytes:
    """Run an ffmpeg-python ``stream`` (stdout captured and returned).

    A failure is ``MediaError("<what> failed (<the cause's line>)")``, except the machine's:
    no binary or one killed by a signal (``faults.EnvironmentFault``), and a full disk, a
    read-only file system or a permission denied (an ``OSError`` with that errno naming the
    file, ``output`` when ffmpeg does not say which), which ``faults.classify`` recognises.
    """
    args = stream.global_args("-hide_banner", "-nostdin").compile(cmd=ffmpeg_bin())
    try:
        proc = subprocess.run(args, capture_output=True, check=False)
    except OSError as e:  # the binary went away or is not executable
        raise tool_missing("ffmpeg") from e
    if proc.returncode == 0:
        return proc.stdout
    if proc.returncode < 0:
        raise tool_crashed("ffmpeg", -proc.returncode, output)
    text = proc.stderr.decode("utf-8", "replace")
    for line in text.splitlines():
        for words, code in (("No space left on device", errno.ENOSPC), ("Disk quota exceeded", errno.EDQUOT),
                            ("Read-only file system", errno.EROFS), ("Permission denied", errno.EACCES)):
            if words in line:
                named = line.split(": ")[0] if line.startswith("/") else None
                raise OSError(code, os.strerror(code), named or (os.fspath(output) if output else None))
    raise MediaError(f"{what} failed ({ffmpeg_error_line(text)})")


def _ratio(text: str | None) -> float | None:
    if not text or text in ("0/0", "0"):
        return None
    if "/" in text:
        a, b = text.split("/")
        return float(a) / float(b) if float(b) else None
    return float(text)


def probe(path: str | Path) -> Probe:
    """Duration, resolution, frame rate and which streams a file has, read in-process with PyAV
    (an ``ffprobe`` process per file cost ~0.1 CPU s of start-up, 10-15 % of splitting a short ad)."""
    path = str(path)
    if not Path(path).is_file():
        raise MediaError(f"{path}: no such file")
    try:
        import av
    except ImportError:  # PyAV is a dependency; without it, Debian's ffprobe
        return probe_with_ffprobe(path)
    try:
        with av.open(path) as container:
            return probe_container(container)[0]
    except (av.FFmpegError, OSError) as e:
        raise MediaError(f"{path}: cannot read it ({e})") from e


def probe_with_ffprobe(path: str | Path) -> Probe:
    """``probe`` through an ``ffprobe`` process (the reference ``probe`` is checked against)."""
    path = str(path)
    if not Path(path).is_file():
        raise MediaError(f"{path}: no such file")
    cmd = ffprobe_bin()
    if cmd is None:
        raise MediaError("ffprobe not found: install Debian's ffmpeg package (or use probe(), which needs PyAV)")
    try:
        info = ffmpeg.probe(path, cmd=cmd)
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


def video_stream(container):
    """The first video stream of an open PyAV container that is not cover art (an attached picture), or None."""
    import av

    return next((s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic), None)


def seek_before(container, stream, t: float) -> None:
    """Seek an open PyAV container to the last keyframe of ``stream`` at or before ``t`` seconds (>= 0).

    The seek is in the stream's own time base: a container-level seek (``AV_TIME_BASE``) lands on
    the first packet of some Matroska files, which then decode a late span from the very start.
    """
    container.seek(int(max(0.0, t) / stream.time_base), stream=stream, backward=True, any_frame=False)


def probe_container(container):
    """(``Probe``, video stream or None, audio stream or None) of an open PyAV container
    (the first video stream that is not cover art, the first audio stream)."""
    import av

    v = video_stream(container)
    a = next(iter(container.streams.audio), None)
    duration = container.duration / av.time_base if container.duration else 0.0
    if not duration and (v or a) is not None and (v or a).duration is not None:
        duration = float((v or a).duration * (v or a).time_base)
    probe = Probe(
        duration_s=float(duration),
        width=v.codec_context.width if v else None,
        height=v.codec_context.height if v else None,
        fps=float(v.average_rate or v.base_rate) if v and (v.average_rate or v.base_rate) else None,
        has_video=v is not None,
        has_audio=a is not None,
        audio_sample_rate=a.codec_context.sample_rate if a else None,
        num_frames=v.frames or None if v else None,
    )
    return probe, v, a


def _run(stream, path: str | Path) -> bytes:
    return run_ffmpeg(stream, f"{path}: ffmpeg")


def load_audio(path: str | Path, sample_rate: int, start_s: float | None = None,
               duration_s: float | None = None) -> np.ndarray:
    """Decode the first audio stream to mono float32 at ``sample_rate`` (optionally a span).

    A whole mono WAV already at ``sample_rate`` (the clip audio ``c98k split`` writes) is read
    in-process, with the same samples as ffmpeg gives; anything else goes through ffmpeg.
    """
    if start_s is None and duration_s is None:
        same = wav_at_rate(path, sample_rate)
        if same is not None:
            return same
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


def wav_at_rate(path: str | Path, sample_rate: int) -> np.ndarray | None:
    """The float32 samples of a mono WAV recorded at ``sample_rate``; None for any other file and
    for one that cannot be read or holds no samples (the caller decodes the source instead)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None
    if info.format != "WAV" or info.channels != 1 or info.samplerate != int(sample_rate):
        return None
    try:
        audio, _ = sf.read(str(path), dtype="float32")
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None
    return audio if audio.size else None


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono float audio as a 16-bit WAV (atomic).

    Encoded in memory and written by Python: libsndfile reports a full disk only as
    ``LibsndfileError: System error.``, an ``OSError`` keeps its errno (ENOSPC: the machine's fault).
    """
    import io

    import soundfile as sf

    from commercial98k.storage.files import atomic_write_bytes

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1, 1), sample_rate, subtype="PCM_16", format="WAV")
    atomic_write_bytes(path, buf.getvalue())
