"""On-screen text (OCR) of a clip with RapidOCR (``rapidocr-onnxruntime`` 1.4.4, Apache-2.0).

The wheel ships PaddleOCR's PP-OCRv4 Chinese+English detection and recognition models and the
mobile angle classifier as ONNX files, so OCR runs offline through onnxruntime.

Per clip: a few keyframes (the middle of each shot inside the clip, at most ``max_frames``,
evenly spread when there are more shots; evenly spaced times when the clip has no shots),
near-duplicate keyframes dropped (8x8 grey thumbnails closer than ``DUP_THRESHOLD``), every
line read with its confidence, lines below ``min_score`` dropped, and repeats across frames
merged (NFKC, case and spacing ignored). ``ocr_text`` is the merged lines joined by `` | ``.

The recogniser often drops the spaces of English overlays ("Tapordrawaroundanythingyouwant"),
which hides their words from the text match and the tags. ``split_glued`` splits such runs with
SymSpell's word segmentation (``symspellpy``, MIT; its English unigram frequencies ship in the
wheel, nothing is downloaded): only a run of 7+ letters that is neither a dictionary word nor a
brand of ``commercial98k/data/brands.json``, and only into common words, so names ("Maybelline", not
"may bel line") stay whole. The splitting changes ``ocr_text``, so the ``ocr_model`` tag names it
(``OcrInfo``: ``rapidocr-ppocrv4 1.4.4 <sha12> +wordsplit-symspellpy-<version>``) and rows read
without it are labelled again.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np

from commercial98k.storage.files import sha256_file

from .registry import ModelInfo
from .weights import WeightsUnavailable

NAME = "rapidocr-ppocrv4"
VERSION = "1.4.4"
MIN_SCORE = 0.7
MAX_FRAMES = 3
LONG_SIDE = 960  # keyframes are scaled so the longer side is at most this (small text stays readable)
DUP_THRESHOLD = 6.0  # mean absolute difference (0-255) of 8x8 grey thumbnails under which frames are duplicates
SEPARATOR = " | "
GLUED_MIN_LETTERS = 7
#: a split is kept only if every part is at least this common (log10 of its unigram share: "glow" is
#: -5.0, "elegance" -5.4; fragments of unknown names such as "chino" or "ava" are rarer) and, in a run
#: shorter than ``ONE_LETTER_MIN_RUN``, no part is one letter ("Weleda" is not "We led a")
MIN_PART_LOG10P = -5.5
ONE_LETTER_MIN_RUN = 10
_CAMEL_STEP = re.compile(r"(?<=[a-z])(?=[A-Z])")
_LETTER_RUN = re.compile(rf"(?<![A-Za-z\u00c0-\u024f])[A-Za-z]{{{GLUED_MIN_LETTERS},}}(?![A-Za-z\u00c0-\u024f])")


@dataclass(frozen=True)
class OcrInfo(ModelInfo):
    """The recogniser's provenance plus the step that rewrites its lines (``splitter``): the same
    models with another splitter give another ``ocr_text``, so the tag (the ``ocr_model`` column the
    label stage compares to decide re-labelling) must differ too."""

    splitter: str = ""

    def tag(self) -> str:
        base = super().tag()
        return f"{base} +{self.splitter}" if self.splitter else base


def splitter_tag() -> str:
    """``wordsplit-symspellpy-<version>``: the installed symspellpy ships the frequency list the split uses."""
    try:
        return f"wordsplit-symspellpy-{metadata.version('symspellpy')}"
    except metadata.PackageNotFoundError as e:
        raise WeightsUnavailable("splitting glued OCR words needs symspellpy: pip install symspellpy") from e


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
        self.info = OcrInfo(NAME, VERSION, digest, splitter_tag())

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
        return [split_glued(line) for line in merge_lines(per_frame)]


class WordSplitter:
    """Splits English words glued together by the recogniser (``split("Shopnow") == "Shop now"``)."""

    def __init__(self, keep: set[str] | frozenset[str] = frozenset()):
        from importlib.resources import files

        try:
            from symspellpy import SymSpell
        except ImportError as e:
            raise WeightsUnavailable("splitting glued OCR words needs symspellpy: pip install symspellpy") from e
        self._sym = SymSpell(max_dictionary_edit_distance=0, prefix_length=7)
        path = files("symspellpy") / "frequency_dictionary_en_82_765.txt"
        if not self._sym.load_dictionary(str(path), 0, 1):
            raise WeightsUnavailable(f"{path}: symspellpy's word frequency list is missing")
        self._log_total = math.log10(sum(self._sym.words.values()))
        self.keep = frozenset(keep)

    def _common(self, word: str, run: int) -> bool:
        count = self._sym.words.get(word)
        if count is None or (len(word) == 1 and (word not in ("a", "i") or run < ONE_LETTER_MIN_RUN)):
            return False
        return math.log10(count) - self._log_total >= MIN_PART_LOG10P

    def split_word(self, word: str) -> str:
        """``word`` split into common words, or unchanged (a known word, a brand, mixed case like
        "iPhone", or no split into common words)."""
        low = word.lower()
        shape_ok = word.islower() or word.isupper() or (word[0].isupper() and word[1:].islower())
        if not shape_ok or low in self.keep or low in self._sym.words:
            return word
        parts = self._sym.word_segmentation(low, max_edit_distance=0).segmented_string.split()
        if len(parts) < 2 or "".join(parts) != low or not all(self._common(p, len(low)) for p in parts):
            return word
        if word.isupper():
            return " ".join(p.upper() for p in parts)
        return " ".join([parts[0].capitalize() if word[0].isupper() else parts[0], *parts[1:]])

    def split_run(self, run: str) -> str:
        """A run of letters split; a mixed-case run ("GlowalldaywithMaybelline") is cut at its
        lower-to-upper steps only when a piece splits too, so "MacBook" and "PlayStation" stay whole."""
        pieces = _CAMEL_STEP.split(run)
        if len(pieces) == 1 or run.lower() in self.keep:
            return self.split_word(run)
        out = [self.split_word(p) if len(p) >= GLUED_MIN_LETTERS else p for p in pieces]
        return " ".join(out) if out != pieces else run

    def split(self, text: str) -> str:
        """``text`` with every glued run of letters split."""
        return _LETTER_RUN.sub(lambda m: self.split_run(m.group(0)), text)


@lru_cache(maxsize=1)
def word_splitter() -> WordSplitter:
    """One splitter per process (the dictionary takes ~1 s to load), keeping the brand table's names whole."""
    from ..taxonomy import load_brands

    keep = set()
    for brand in load_brands():
        for name in brand.names:
            t = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", name).casefold())
            key = "".join(c for c in t if c.isascii() and c.isalpha())
            if len(key) >= GLUED_MIN_LETTERS:
                keep.add(key)
    return WordSplitter(frozenset(keep))


def split_glued(text: str) -> str:
    """``text`` with glued English words split ("Tapordrawaroundanythingyouwant" -> "Tap or draw
    around anything you want"); text without a run of 7+ letters is returned as is."""
    if not _LETTER_RUN.search(text):
        return text
    return word_splitter().split(text)


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

    from commercial98k.engine.threads import worker_threads
    from commercial98k.media.ffmpeg_io import MediaError, seek_before, video_stream

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
        from commercial98k.media.ffmpeg_io import probe

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
