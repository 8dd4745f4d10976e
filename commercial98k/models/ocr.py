"""On-screen text (OCR) of a clip with RapidOCR (``rapidocr-onnxruntime`` 1.4.4, Apache-2.0).

The wheel ships PaddleOCR's PP-OCRv4 Chinese+English detection and recognition models and the
mobile angle classifier as ONNX files, so OCR runs offline through onnxruntime.

Per clip: a few keyframes (the middle of each shot inside the clip, at most ``max_frames``,
evenly spread when there are more shots; evenly spaced times when the clip has no shots),
near-duplicate keyframes dropped (8x8 grey thumbnails closer than ``DUP_THRESHOLD``), every
line read with its confidence, lines below ``min_score`` dropped, and repeats across frames
merged (NFKC, case and spacing ignored). ``ocr_text`` is the merged lines joined by `` | ``.
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fsutil import sha256_file
from .registry import ModelInfo
from .weights import WeightsUnavailable

NAME = "rapidocr-ppocrv4"
VERSION = "1.4.4"
MIN_SCORE = 0.7
MAX_FRAMES = 3
LONG_SIDE = 960  # keyframes are scaled so the longer side is at most this (small text stays readable)
DUP_THRESHOLD = 6.0  # mean absolute difference (0-255) of 8x8 grey thumbnails under which frames are duplicates
SEPARATOR = " | "


@dataclass(frozen=True)
class OcrLine:
    text: str
    score: float


def _norm_key(text: str) -> str:
    """Key under which two readings of a line are the same: NFKC, lower-case, no spaces/punctuation."""
    t = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in t if ch.isalnum() or ch in "$¥€£%.")


class OcrModel:
    """RapidOCR with PP-OCRv4 det/rec (Chinese + English); ``read(frame)`` -> lines with scores."""

    def __init__(self, threads: int = 1, min_score: float = MIN_SCORE):
        try:
            import rapidocr_onnxruntime
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as e:
            raise WeightsUnavailable("OCR needs rapidocr-onnxruntime==1.4.4: pip install --no-deps "
                                     "rapidocr-onnxruntime==1.4.4 pyclipper shapely (or --no-ocr)") from e
        models = Path(rapidocr_onnxruntime.__file__).resolve().parent / "models"
        rec = models / "ch_PP-OCRv4_rec_infer.onnx"
        det = models / "ch_PP-OCRv4_det_infer.onnx"
        if not rec.is_file() or not det.is_file():
            raise WeightsUnavailable(f"{models}: PP-OCRv4 ONNX models missing from the rapidocr wheel")
        # detection at the frame's own size (the default scales the short side *up* to 736 px);
        # no angle classifier: ad overlays are upright
        self.engine = RapidOCR(intra_op_num_threads=int(threads), inter_op_num_threads=1, use_cls=False,
                               det_limit_type="max", det_limit_side_len=LONG_SIDE)
        self.min_score = float(min_score)
        self._lock = threading.Lock()  # onnxruntime sessions are thread-safe, the RapidOCR wrapper is not
        digest = sha256_file(det)[:32] + sha256_file(rec)[:32]
        self.info = ModelInfo(NAME, VERSION, digest)

    def read(self, frame: np.ndarray) -> list[OcrLine]:
        """Text lines of one uint8 RGB frame ``[H, W, 3]`` scoring at least ``min_score``, top to bottom."""
        frame = np.asarray(frame, np.uint8)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"expected a uint8 RGB frame [H,W,3], got shape {frame.shape}")
        with self._lock:
            result, _ = self.engine(np.ascontiguousarray(frame[..., ::-1]))  # the models read BGR
        lines = []
        for _box, text, score in sorted(result or [], key=lambda r: (min(p[1] for p in r[0]), min(p[0] for p in r[0]))):
            text = " ".join(str(text).split())
            if text and float(score) >= self.min_score:
                lines.append(OcrLine(text, float(score)))
        return lines

    def read_frames(self, frames: np.ndarray | list[np.ndarray]) -> list[str]:
        """Merged lines of several frames (near-duplicate frames read once, repeated lines once)."""
        per_frame = [self.read(f) for f in dedupe_frames(frames)]
        return merge_lines(per_frame)


def merge_lines(per_frame: list[list[OcrLine]]) -> list[str]:
    """Lines in first-seen order; a line read in several frames appears once (its best reading)."""
    best: dict[str, OcrLine] = {}
    order: list[str] = []
    for lines in per_frame:
        for line in lines:
            key = _norm_key(line.text)
            if not key:
                continue
            if key not in best:
                order.append(key)
                best[key] = line
            elif line.score > best[key].score:
                best[key] = line
    # a reading contained in a longer one ("shop" inside "shop now") adds nothing
    keep = [k for k in order if not any(k != o and len(k) < len(o) and k in o for o in order)]
    return [best[k].text for k in keep]


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """8x8 grey thumbnail (block means) of a uint8 RGB frame."""
    grey = np.asarray(frame, np.float32).mean(axis=-1)
    h, w = grey.shape
    ys, xs = np.linspace(0, h, 9).astype(int), np.linspace(0, w, 9).astype(int)
    return np.array([[grey[ys[i]:max(ys[i + 1], ys[i] + 1), xs[j]:max(xs[j + 1], xs[j] + 1)].mean()
                      for j in range(8)] for i in range(8)])


def dedupe_frames(frames: np.ndarray | list[np.ndarray], threshold: float = DUP_THRESHOLD) -> list[np.ndarray]:
    """Frames without near-duplicates of an earlier kept frame."""
    kept, thumbs = [], []
    for f in frames:
        t = thumbnail(f)
        if all(np.abs(t - u).mean() >= threshold for u in thumbs):
            kept.append(f)
            thumbs.append(t)
    return kept


def keyframe_times(start_s: float, end_s: float, shots: list[dict] | None = None,
                   max_frames: int = MAX_FRAMES) -> list[float]:
    """Times to read text at: middles of the shots overlapping ``[start_s, end_s]`` (clipped to it),
    at most ``max_frames`` spread over them; evenly spaced times when there are no shots."""
    if end_s <= start_s:
        return [start_s]
    mids = []
    for s in shots or []:
        a, b = max(start_s, float(s["start_s"])), min(end_s, float(s["end_s"]))
        if b - a > 0.2:
            mids.append((a + b) / 2)
    if not mids:
        n = max(1, max_frames)
        return [start_s + (end_s - start_s) * (i + 0.5) / n for i in range(n)]
    if len(mids) > max_frames:
        idx = np.linspace(0, len(mids) - 1, max_frames).round().astype(int)
        mids = [mids[i] for i in sorted(set(idx))]
    return mids


def frame_size(width: int | None, height: int | None, long_side: int = LONG_SIDE) -> tuple[int, int]:
    """(w, h), even, with the longer side at most ``long_side`` and the aspect ratio kept."""
    if not width or not height:
        return (long_side, long_side * 9 // 16 // 2 * 2)
    scale = min(1.0, long_side / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def load_keyframes(path: str | Path, times: list[float], size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB frames ``[N, h, w, 3]`` at ``times``: for each, the first frame from half a frame
    before it on (as ``ffmpeg -ss t -vframes 1``), decoded in-process with one PyAV container for all times
    (an ffmpeg process per keyframe cost ~0.1 CPU s of start-up alone)."""
    import av

    from ..media import MediaError, seek_before, video_stream
    from ..threads import worker_threads

    w, h = size
    out = []
    try:
        with av.open(str(path)) as container:
            vs = video_stream(container)
            if vs is None:
                raise MediaError(f"{path}: no video stream")
            vs.codec_context.thread_count = worker_threads()
            half = 0.5 / float(vs.average_rate or vs.base_rate or 25.0)
            for t in times:
                t = max(0.0, t)
                seek_before(container, vs, t)
                last = None
                for frame in container.decode(vs):
                    last = frame
                    if frame.pts is None or float(frame.pts * frame.time_base) >= t - half:
                        break
                if last is not None:  # past the end: the last frame (ffmpeg gives none; a frame is better)
                    out.append(last.reformat(w, h, "rgb24", interpolation="BICUBIC").to_ndarray())  # ffmpeg's scale
    except av.FFmpegError as e:
        raise MediaError(f"{path}: cannot decode keyframes ({e})") from e
    if not out:
        raise MediaError(f"{path}: no keyframe decoded at {', '.join(f'{t:.2f}' for t in times)} s")
    return np.stack(out)


def ocr_clip(model: OcrModel, video_path: str | Path, start_s: float | None, end_s: float | None,
             shots: list[dict] | None = None, width: int | None = None, height: int | None = None,
             max_frames: int = MAX_FRAMES) -> str:
    """Merged on-screen text of a clip (``""`` when none)."""
    frames = clip_keyframes(video_path, start_s, end_s, shots, width, height, max_frames)
    return SEPARATOR.join(model.read_frames(frames))


def clip_keyframes(video_path: str | Path, start_s: float | None, end_s: float | None,
                   shots: list[dict] | None = None, width: int | None = None, height: int | None = None,
                   max_frames: int = MAX_FRAMES) -> np.ndarray:
    """The frames ``ocr_clip`` reads: up to ``max_frames`` shot-middle keyframes of the clip at OCR size."""
    start = float(start_s or 0.0)
    if end_s is None:
        from ..media import probe

        info = probe(video_path)
        end_s = start + float(info.duration_s or 0.0)
        width, height = width or info.width, height or info.height
    return load_keyframes(video_path, keyframe_times(start, float(end_s), shots, max_frames), frame_size(width, height))


_MODELS: dict[tuple, OcrModel] = {}
_MODELS_LOCK = threading.Lock()


def ocr_model(threads: int = 1, min_score: float = MIN_SCORE) -> OcrModel:
    """One shared ``OcrModel`` per process and settings."""
    with _MODELS_LOCK:
        key = (threads, min_score)
        if key not in _MODELS:
            _MODELS[key] = OcrModel(threads, min_score)
        return _MODELS[key]
