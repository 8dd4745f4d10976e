"""One decode per video: shots, keyframe hashes and music spans from a single PyAV pass.

``scan_video`` demuxes the source once. Each video frame is scaled once to the shot-detection
size (about ``SCAN_WIDTH`` = 160 px wide) and fed to the PySceneDetect detector's
``process_frame``; every ``PHASH_FPS`` (2 fps) sample of the same small frames is reduced to its
32x32 grey thumbnail on the spot (so keyframe hashes need no second decode; 1 KB per sample
is kept and only the keyframes are hashed). The audio is resampled once to 16 kHz mono and streamed through YAMNet in chunks of
``chunk_patches`` patches (exactly the patches ``music.patches`` would make of the whole track),
so no log-mel of the whole track is ever held. What grows with the video's length is the 16 kHz
track itself (64 KB per second, kept for the clips' WAV and fingerprints) and a few numbers
per frame.

``decode_span`` decodes one span of a file: its audio and its sampled frames (what ``c98k label``
needs of a clip), the video from the keyframe before the span.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from commercial98k.engine.threads import worker_threads
from commercial98k.media.ffmpeg_io import MediaError, seek_before, video_stream

from .music import HOP_S, PATCH_FRAMES, PATCH_HOP_FRAMES, PATCH_S, SAMPLE_RATE, log_mel, patch_rms
from .shots import Shot, ShotList, make_detector

PHASH_FPS = 2.0
#: Frames for shot detection are scaled to about this width (``--downscale`` overrides). Measured:
#: the same cuts as at ``shots.DEFAULT_WIDTH`` (256) on the shared and the demo videos, with the
#: detector's per-pixel work (HSV, deltas) 1.6-2.5x smaller.
SCAN_WIDTH = 160
PATCH_HOP = int(round(HOP_S * SAMPLE_RATE))  # 7680 samples
PATCH_LEN = int(round(PATCH_S * SAMPLE_RATE))  # 15712 samples


class MusicStream:
    """Feed 16 kHz mono audio piece by piece; YAMNet runs on every ``chunk_patches`` whole patches.

    ``finish()`` returns the same ``FrameProbs`` as ``detector.frame_probs(whole_track)``.
    """

    def __init__(self, detector, chunk_patches: int = 64, keep_audio: bool = True):
        self.detector = detector
        self.chunk = max(1, chunk_patches)
        self.keep_audio = keep_audio
        self._kept: list[np.ndarray] = []
        self._pending: list[np.ndarray] = []  # samples from sample index ``_offset`` on
        self._pending_len = 0
        self._offset = 0  # sample index of the first pending sample (= next patch * PATCH_HOP)
        self._next = 0  # next patch to run
        self.total = 0
        self._logits: list[np.ndarray] = []
        self._rms: list[np.ndarray] = []

    def feed(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, np.float32).reshape(-1)
        if not len(samples):
            return
        if self.keep_audio:
            self._kept.append(samples)
        self._pending.append(samples)
        self._pending_len += len(samples)
        self.total += len(samples)
        if self._pending_len >= (self.chunk - 1) * PATCH_HOP + PATCH_LEN:
            self._run(self.chunk)

    def _buffer(self) -> np.ndarray:
        buf = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending = [buf]
        return buf

    def _run(self, count: int, pad_to: int | None = None) -> None:
        """Run ``count`` patches from ``_next`` on (zero-padding the buffer to ``pad_to`` samples)."""
        buf = self._buffer() if self._pending else np.zeros(0, np.float32)
        real = buf
        need = (count - 1) * PATCH_HOP + PATCH_LEN
        if len(buf) < need:
            buf = np.pad(buf, (0, need - len(buf)))
        mel = log_mel(buf[:need])
        idx = np.arange(count)[:, None] * PATCH_HOP_FRAMES + np.arange(PATCH_FRAMES)[None, :]
        self._logits.append(self.detector.patch_logits(mel[idx][:, None, :, :]))
        self._rms.append(patch_rms(real, self._next, count, offset=self._offset))
        drop = count * PATCH_HOP
        rest = real[drop:]
        self._pending = [rest] if len(rest) else []
        self._pending_len = len(rest)
        self._offset += drop
        self._next += count

    def finish(self):
        """Run the last patches (the track zero-padded to whole patches) and return ``FrameProbs``."""
        n = max(1, int(np.ceil(max(0.0, self.total / SAMPLE_RATE - PATCH_S) / HOP_S)) + 1)
        while self._next < n:
            self._run(min(self.chunk, n - self._next))
        logits = np.concatenate(self._logits) if self._logits else np.zeros((0, 521), np.float32)
        rms = np.concatenate(self._rms) if self._rms else np.zeros(0)
        return self.detector.probs_from_logits(logits, rms, self.total / SAMPLE_RATE)

    def audio(self) -> np.ndarray:
        """The whole track fed so far (kept only with ``keep_audio``)."""
        return np.concatenate(self._kept) if self._kept else np.zeros(0, np.float32)


@dataclass
class ScanResult:
    """What one pass over a video found."""

    shots: ShotList | None
    probs: object | None  # music.FrameProbs
    audio: np.ndarray | None = field(default=None, repr=False)
    #: per PHASH_FPS sample: its 32x32 grey thumbnail (1 KB; hashed only when asked), None if blank
    thumbs: list[np.ndarray | None] = field(default_factory=list, repr=False)

    def keyframe_phash(self, times: list[float]) -> str:
        """Comma-separated hex pHashes of the samples nearest ``times`` (blank frames skipped)."""
        if not self.thumbs:
            return ""
        out = []
        for t in times:
            i = min(len(self.thumbs) - 1, max(0, int(round(t * PHASH_FPS - 0.5))))
            if self.thumbs[i] is not None:
                out.append(f"{phash_thumb(self.thumbs[i]):016x}")
        return ",".join(dict.fromkeys(out))


def _thumb(small_bgr: np.ndarray) -> np.ndarray | None:
    """The 32x32 grey picture pHash is computed from; None for a blank frame (pixel std < 4, as
    ``identity.reupload.video_phash``: black or white frames match any video)."""
    import cv2

    mean, std = cv2.meanStdDev(small_bgr)  # per channel; pooled below = std over all values
    if float(np.sqrt(np.mean(std ** 2 + (mean - mean.mean()) ** 2))) < 4.0:
        return None
    return cv2.resize(cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY), (32, 32), interpolation=cv2.INTER_AREA)


def phash_thumb(grey32: np.ndarray) -> int:
    """imagehash's 64-bit pHash of a 32x32 grey picture: the 8x8 lowest DCT-II frequencies above their median."""
    from scipy.fft import dct

    low = dct(dct(grey32.astype(np.float64), axis=0), axis=1)[:8, :8]
    return int.from_bytes(np.packbits(low > np.median(low)).tobytes(), "big")


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


def scan_size(width: int, height: int, downscale: int | None = None) -> tuple[int, int] | None:
    """(w, h), even, that ``scan_video`` scales frames to for shot detection: the frame divided by
    ``downscale`` (None: the factor that brings the width nearest ``SCAN_WIDTH``); None if unknown."""
    if not width or not height:
        return None
    factor = downscale if downscale is not None else max(1, round(width / SCAN_WIDTH))
    return max(2, round(width / factor / 2) * 2), max(2, round(height / factor / 2) * 2)


def scan_video(path: str | Path, *, fps: float | None = None, detector: str = "adaptive",
               threshold: float | None = None, downscale: int | None = None, shots: bool = True,
               music_detector=None, keep_audio: bool = True, chunk_patches: int = 64,
               threads: int = 0) -> ScanResult:
    """Decode ``path`` once: shots (if ``shots``), keyframe pHashes, and with a ``music_detector``
    the 16 kHz track and its YAMNet ``FrameProbs``. ``threads`` 0: ``threads.worker_threads()``.

    Raises ``MediaError`` when the file cannot be read or has no decodable video frame.
    """
    import av
    from scenedetect import FrameTimecode

    path = Path(path)
    with _open(path) as container:
        vs = video_stream(container)
        if vs is None:
            raise MediaError(f"{path}: no video stream")
        a_s = next(iter(container.streams.audio), None) if music_detector is not None else None
        vs.thread_type = "AUTO"
        vs.codec_context.thread_count = threads or worker_threads()
        rate = fps or float(vs.average_rate or vs.base_rate or 25.0)
        size = scan_size(vs.codec_context.width or 0, vs.codec_context.height or 0, downscale)
        det = make_detector(detector, threshold) if shots else None
        stream = MusicStream(music_detector, chunk_patches, keep_audio) if a_s is not None else None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE) if a_s is not None else None
        thumbs: list[np.ndarray | None] = []
        cuts: list = []
        n = 0
        try:
            for packet in container.demux(*[s for s in (vs, a_s) if s is not None]):
                for frame in packet.decode():
                    if packet.stream is vs:
                        img = reformat(frame, size, "bgr24")
                        if det is not None:
                            cuts += det.process_frame(FrameTimecode(n, rate), img)
                        while len(thumbs) / PHASH_FPS <= (n + 0.5) / rate:
                            thumbs.append(_thumb(img))
                        n += 1
                    else:
                        for out in resampler.resample(frame):
                            stream.feed(mono_samples(out))
            if resampler is not None:
                for out in resampler.resample(None):
                    stream.feed(mono_samples(out))
        except av.FFmpegError as e:
            if n == 0:
                raise MediaError(f"{path}: cannot decode it ({e})") from e
    if n == 0:
        raise MediaError(f"{path}: no video frame could be decoded (corrupt or truncated file?)")
    shot_list = None
    if det is not None:
        cuts += det.post_process(FrameTimecode(n, rate))
        shot_list = _shot_list(sorted({int(c.frame_num) for c in cuts}), n, rate)
    probs = audio = None
    if stream is not None and stream.total:
        probs = stream.finish()
        audio = stream.audio() if keep_audio else None
    return ScanResult(shot_list, probs, audio, thumbs)


def mono_samples(frame) -> np.ndarray:
    """The float32 samples of a packed mono ``flt`` audio frame, without a copy (``to_ndarray``
    stacks the planes into a new array per frame: ~35 % of the resampling loop's cost)."""
    return np.frombuffer(frame.planes[0], np.float32, frame.samples)


def _shot_list(cuts: list[int], n: int, fps: float) -> ShotList:
    edges = [0] + [c for c in cuts if 0 < c < n] + [n]
    shots = [Shot(round(a / fps, 6), round(b / fps, 6), a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]
    return ShotList(shots or [Shot(0.0, round(n / fps, 6), 0, n)], fps, n)


def _open(path: Path):
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
    with _open(path) as container:
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
    with _open(path) as container:
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
