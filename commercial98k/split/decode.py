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
The per-clip span decoder ``c98k label`` uses lives in ``commercial98k.media.pyav``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from commercial98k.engine.threads import worker_threads
from commercial98k.media.ffmpeg_io import MediaError, video_stream
from commercial98k.media.pyav import mono_samples, open_container, reformat

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
    with open_container(path) as container:
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


def _shot_list(cuts: list[int], n: int, fps: float) -> ShotList:
    edges = [0] + [c for c in cuts if 0 < c < n] + [n]
    shots = [Shot(round(a / fps, 6), round(b / fps, 6), a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]
    return ShotList(shots or [Shot(0.0, round(n / fps, 6), 0, n)], fps, n)


