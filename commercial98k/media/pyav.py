"""PyAV decoding shared by split and label: frames scaled cheaply, mono samples without a copy, and
one decode of a clip's span (its audio and sampled frames) from the keyframe before it."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np

from commercial98k.engine.threads import worker_threads
from commercial98k.media.ffmpeg_io import MediaError, seek_before, video_stream

_REFORMATTERS = threading.local()


def reformat(frame, size: tuple[int, int] | None, fmt: str) -> np.ndarray:
    """A decoded frame as an array of ``fmt`` scaled to ``size`` (one swscale context per thread)."""
    from av.video.reformatter import Interpolation, VideoReformatter

    r = getattr(_REFORMATTERS, "r", None)
    if r is None:
        r = _REFORMATTERS.r = VideoReformatter()
    w, h = size if size else (frame.width, frame.height)
    if fmt == "bgr24" and frame.format.name == "yuv420p" and w % 2 == 0 and h % 2 == 0:
        return _small_bgr(frame, w, h)
    return r.reformat(frame, w, h, fmt, interpolation=Interpolation.FAST_BILINEAR).to_ndarray()


def _plane(frame, i: int, w: int, h: int) -> np.ndarray:
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:h, :w]


def _small_bgr(frame, w: int, h: int) -> np.ndarray:
    """Scale the Y, U and V planes of a yuv420p frame with OpenCV, then convert: ~5x cheaper than
    converting the full-size frame (the colour conversion runs on the small picture)."""
    import cv2

    fw, fh = frame.width, frame.height
    area = cv2.INTER_AREA
    y = cv2.resize(_plane(frame, 0, fw, fh), (w, h), interpolation=area)
    u = cv2.resize(_plane(frame, 1, (fw + 1) // 2, (fh + 1) // 2), (w // 2, h // 2), interpolation=area)
    v = cv2.resize(_plane(frame, 2, (fw + 1) // 2, (fh + 1) // 2), (w // 2, h // 2), interpolation=area)
    i420 = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(h * 3 // 2, w)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)


def mono_samples(frame) -> np.ndarray:
    """The float32 samples of a packed mono ``flt`` audio frame, without a copy (``to_ndarray``
    stacks the planes into a new array per frame: ~35 % of the resampling loop's cost)."""
    return np.frombuffer(frame.planes[0], np.float32, frame.samples)


def open_container(path: Path):
    import av

    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise MediaError(f"{path}: cannot open it ({e})") from e


def _span_frames(path: Path, start: float, end: float, whole: bool, frame_fps: float,
                 frame_size: int, skip_nonref: bool = True) -> np.ndarray:
    """uint8 RGB frames of ``[start, end)`` at ``frame_fps``: decoded from the keyframe before ``start``.

    Sample ``k`` (time ``origin + k / frame_fps``) is the first frame less than half a frame before
    it. Packets whose frame cannot be a sample are decoded with ``skip_frame=NONREF``: the decoder
    drops them if no other frame refers to them (H.264/HEVC B-frames), which about halves the decode
    of a 1 fps sampling, and decodes them as usual otherwise. The frames returned are those of a
    full decode (a test compares them), as long as frame times keep within two frames of the grid.
    """
    frames: list[np.ndarray] = []
    with open_container(path) as container:
        vs = video_stream(container)
        if vs is None:
            raise MediaError(f"{path}: no video stream")
        vs.thread_type = "AUTO"
        cc = vs.codec_context
        cc.thread_count = worker_threads()
        if start > 0.5:  # a fresh container starts at the beginning
            seek_before(container, vs, start - 0.5)
        w, h = cc.width, cc.height
        scale = frame_size / min(w, h)
        sw, sh = max(frame_size, round(w * scale / 2) * 2), max(frame_size, round(h * scale / 2) * 2)
        frame_s = 1.0 / float(vs.average_rate or vs.base_rate or 25.0)
        half = 0.5 * frame_s  # half a source frame
        tb = float(vs.time_base)
        origin = None if whole else start  # time of frame sample 0

        def may_be_sample(pts: int | None) -> bool:
            if pts is None or origin is None or not skip_nonref:
                return True
            t = pts * tb
            k = max(0, round((t - origin) * frame_fps))
            return abs(t - (origin + k / frame_fps)) <= half + 2 * frame_s

        done = False
        for packet in container.demux(vs):
            cc.skip_frame = "DEFAULT" if may_be_sample(packet.pts) else "NONREF"
            for frame in packet.decode():
                if frame.pts is None:
                    continue
                t = frame.pts * tb
                if t >= end:
                    done = True
                    break
                if origin is None:  # a whole file: sample from its first frame on, as ffmpeg's fps filter
                    origin = t
                img = None
                while origin + len(frames) / frame_fps < min(end, t + half):
                    if img is None:  # the first frame within half a frame of each sample time
                        img = reformat(frame, (sw, sh), "rgb24")
                        y, x = (sh - frame_size) // 2, (sw - frame_size) // 2
                        img = np.ascontiguousarray(img[y:y + frame_size, x:x + frame_size])
                    frames.append(img)
            if done:
                break
    if not frames:
        raise MediaError(f"{path}: no video frames decoded in {start:.3f}-{end:.3f} s")
    return np.stack(frames)


def _span_audio(path: Path, start: float, end: float, sample_rate: int) -> np.ndarray:
    """Mono float32 audio of ``[start, end)`` at ``sample_rate``, to the sample as a whole-track decode.

    Only the audio stream is demuxed and decoded (cheap next to video). The seek is container-level,
    as before the video's own seek: it is sample-exact where it works and falls back to the start of
    the file (still audio-only) where it does not; a stream seek would place Matroska's AAC up to
    10 ms off.
    """
    import av

    pieces: list[np.ndarray] = []
    with open_container(path) as container:
        a_s = next(iter(container.streams.audio), None)
        if a_s is None:
            raise MediaError(f"{path}: no audio stream")
        if start > 0:
            container.seek(int(max(0.0, start - 0.5) / av.time_base), backward=True, any_frame=False)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        a_pos = None  # time of the next resampled audio sample
        for frame in container.decode(a_s):
            if a_pos is None:
                if frame.pts is None:
                    continue
                a_pos = float(frame.pts * frame.time_base)
            for out in resampler.resample(frame):
                data = mono_samples(out)
                a = max(0, int(round((start - a_pos) * sample_rate)))
                b = len(data) if math.isinf(end) else max(0, int(round((end - a_pos) * sample_rate)))
                if a < min(b, len(data)):
                    pieces.append(data[a:b])
                a_pos += len(data) / sample_rate
            if a_pos >= end:
                break
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if audio.size == 0:
        raise MediaError(f"{path}: no audio samples decoded")
    return audio


def decode_span(path: str | Path, start_s: float | None, end_s: float | None, sample_rate: int | None,
                frame_fps: float, frame_size: int, skip_nonref: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """Decode ``[start_s, end_s)`` of a file: mono float32 audio at ``sample_rate`` (None: skip)
    and uint8 RGB frames ``[N, S, S, 3]`` sampled at ``frame_fps`` (short side scaled to ``frame_size``,
    centre-cropped), as ``media.load_audio`` + ``media.load_frames`` would give.

    Each stream is decoded once, the video from the keyframe before the span (``seek_before``),
    so the cost follows the span's length, not its position in the file. ``skip_nonref`` False
    decodes every video packet (the reference the skip is checked against).
    """
    path = Path(path)
    start = float(start_s or 0.0)
    end = float(end_s) if end_s is not None else math.inf
    frames = _span_frames(path, start, end, start_s is None, frame_fps, frame_size, skip_nonref)
    audio = _span_audio(path, start, end, sample_rate) if sample_rate else None
    return audio, frames
