"""The models ``c98k label`` runs, and the per-clip feature extraction shared with ``yuyin recommend``.

``LabelModels`` holds the audio, frame, text and emotion models chosen by registry name and
builds each one lazily on first use (so a Ray worker builds them once, when its first clip
arrives). ``models_for(config)`` caches one ``LabelModels`` per process and configuration.

``extract_clip_features`` decodes one span of a video and returns its audio-embedding
sequence, its frame-embedding sequence and the audio model's music-tag probabilities. It is
pure (no files written) so it serves both the labelling stage and recommendation on a new video.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from commercial98k.label.speech_pooling import SPEECH_POOLING, SpeechAwareEmotion, bundled_correction
from commercial98k.label.tags import TagNormalizer
from commercial98k.label.zero_shot import DEFAULT_TEMPERATURE, CategoryMatcher
from commercial98k.media import ffmpeg_io as media
from commercial98k.media.pyav import decode_span
from commercial98k.models.registry import AUDIO, EMOTION, FRAMES, TEXT, ModelInfo
from commercial98k.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)

#: Batch sizes on CPU when ``LabelConfig.batch_size`` is None, chosen by measurement
#: (``benchmarks/label_batch.py``): on CPU a batch of one frame ran EfficientNet-Lite0 1.6x
#: cheaper than 32 (cache-bound), musicnn was flat up to 8 and slower at 32. CUDA keeps 32.
CPU_BATCH_SIZES = {"frames": 1, "audio": 8, "emotion": 32}
CUDA_BATCH_SIZE = 32
#: A clip WAV whose length differs from its span by more than this is not used (truncated or stale).
WAV_SLACK_S = 0.1
#: Weight-override keys accepted in ``LabelConfig.weights`` (``--weights KIND=PATH``).
WEIGHT_KINDS = ("audio", "frames", "emotion")
NO_EMOTION = ("", "none")


@dataclass(frozen=True)
class LabelConfig:
    """Which models label the clips, and how they run. Hashable and picklable (sent to Ray workers)."""

    audio_model: str = "musicnn"
    frame_model: str = "efficientnet-lite0"
    text_model: str = "use-multilingual"
    emotion_model: str | None = "gems-head"
    device: str = "cpu"
    batch_size: int | None = None  # None: CPU_BATCH_SIZES on CPU, CUDA_BATCH_SIZE elsewhere
    weights: tuple[tuple[str, str], ...] = ()  # (kind, path) pairs, kind in WEIGHT_KINDS
    taxonomy_path: str | None = None
    synonyms_path: str | None = None
    category_temperature: float = DEFAULT_TEMPERATURE
    # OCR and visual category evidence
    ocr: bool = True
    ocr_frames: int = 3
    visual_evidence: str = "table"  # "table", "embedding" or "none" (see label.visual)
    category_calibration: str | None = None  # calibration JSON (default: the bundled one)
    # "weighted": the emotion head leans on each clip's music-only frames (label.speech_pooling);
    # a model choice, so it is here and in the emotion_model provenance tag
    speech_pooling: str = "weighted"

    def batch_for(self, kind: str) -> int:
        """The batch size of one model kind: the explicit one, else the measured default for the device."""
        if self.batch_size:
            return int(self.batch_size)
        return CPU_BATCH_SIZES.get(kind, 32) if str(self.device).startswith("cpu") else CUDA_BATCH_SIZE

    def weights_for(self, kind: str) -> str | None:
        return dict(self.weights).get(kind)

    @property
    def has_emotion(self) -> bool:
        return (self.emotion_model or "").lower() not in NO_EMOTION


@dataclass
class LabelModels:
    """The models of one labelling configuration, built lazily through the registries."""

    config: LabelConfig = field(default_factory=LabelConfig)

    def __post_init__(self) -> None:
        self._built: dict[str, Any] = {}
        self._lock = threading.RLock()

    def _get(self, key: str, build) -> Any:
        with self._lock:
            if key not in self._built:
                self._built[key] = build()
            return self._built[key]

    def _opts(self, kind: str) -> dict[str, Any]:
        opts: dict[str, Any] = {"device": self.config.device, "batch_size": self.config.batch_for(kind)}
        if self.config.weights_for(kind):
            opts["weights"] = self.config.weights_for(kind)
        return opts

    @property
    def audio(self):
        """The audio embedder (``AUDIO`` registry)."""
        return self._get("audio", lambda: AUDIO.create(self.config.audio_model, **self._opts("audio")))

    @property
    def frames(self):
        """The frame embedder (``FRAMES`` registry)."""
        return self._get("frames", lambda: FRAMES.create(self.config.frame_model, **self._opts("frames")))

    @property
    def text(self):
        """The text embedder (``TEXT`` registry); takes no device (it runs in numpy)."""
        return self._get("text", lambda: TEXT.create(self.config.text_model))

    @property
    def emotion(self):
        """The emotion head (``EMOTION`` registry; wrapped in ``SpeechAwareEmotion`` unless
        ``speech_pooling="none"``), or None with ``emotion_model="none"``."""
        if not self.config.has_emotion:
            return None
        return self._get("emotion", self._build_emotion)

    def _build_emotion(self):
        if not EMOTION.names():
            raise RuntimeError("no emotion model is installed (commercial98k.models.emotion_head registers none); "
                               "use --emotion-model none")
        opts: dict[str, Any] = {"device": self.config.device, "audio_model": self.audio.info}
        if self.config.weights_for("emotion"):
            opts["path"] = self.config.weights_for("emotion")
        head = EMOTION.create(self.config.emotion_model, **opts)
        if self.config.speech_pooling == "none":
            return head
        if self.config.speech_pooling != "weighted":
            raise ValueError(f"speech_pooling {self.config.speech_pooling!r}: expected one of {SPEECH_POOLING}")
        return SpeechAwareEmotion(head, bundled_correction(self.audio.info))

    @property
    def taxonomy(self) -> Taxonomy:
        return self._get("taxonomy", lambda: load_taxonomy(self.config.taxonomy_path))

    @property
    def category_matcher(self) -> CategoryMatcher:
        """Zero-shot category matcher over the text model (category texts embedded once)."""
        return self._get("category", lambda: CategoryMatcher(self.text, self.taxonomy,
                                                             self.config.category_temperature))

    @property
    def tag_normalizer(self) -> TagNormalizer:
        return self._get("tags", lambda: TagNormalizer(self.config.synonyms_path))

    @property
    def ocr(self):
        """The OCR model (``models.ocr``), or None with ``ocr=False``."""
        if not self.config.ocr:
            return None
        from commercial98k.models.ocr import ocr_model

        return self._get("ocr", ocr_model)

    @property
    def visual(self):
        """Visual category evidence over the frame model (``label.visual``), or None."""
        if self.config.visual_evidence == "none":
            return None
        from commercial98k.label.visual import VisualEvidence

        return self._get("visual", lambda: VisualEvidence(self.frames, self.taxonomy, self.text,
                                                          self.config.visual_evidence))

    @property
    def calibration(self):
        """Per-evidence weights of the combined category score (``label.category``)."""
        from commercial98k.label.category import CategoryCalibration

        return self._get("calibration", lambda: CategoryCalibration.load(self.config.category_calibration))

    def infos(self, frame_fps: float = 1.0) -> dict[str, ModelInfo | None]:
        """``ModelInfo`` of each model, keyed by provenance column (builds the models); the frame
        model's carries ``frame_fps`` (``frame_info``)."""
        emotion, ocr = self.emotion, self.ocr
        return {"audio_model": self.audio.info, "frame_model": frame_info(self.frames.info, frame_fps),
                "text_model": self.text.info,
                "emotion_model": emotion.info if emotion is not None else None,
                "ocr_model": ocr.info if ocr is not None else None}

    def provenance(self, frame_fps: float = 1.0) -> dict[str, str | None]:
        """The provenance columns: ``ModelInfo.tag()`` per model (None for no emotion model)."""
        return {k: (v.tag() if v is not None else None) for k, v in self.infos(frame_fps).items()}


def frame_info(info: ModelInfo, frame_fps: float = 1.0) -> ModelInfo:
    """A frame model's provenance at ``frame_fps``: another sampling rate is another time grid, so
    features made at it get another key and tag (``name-fps2``; 1 fps, the default, keeps the name)."""
    if abs(float(frame_fps) - 1.0) < 1e-9:
        return info
    return ModelInfo(f"{info.name}-fps{float(frame_fps):g}", info.version, info.weights_sha256)


_CACHE: dict[LabelConfig, LabelModels] = {}
_CACHE_LOCK = threading.Lock()


def models_for(config: LabelConfig) -> LabelModels:
    """One ``LabelModels`` per process and configuration (models built once per worker)."""
    with _CACHE_LOCK:
        if config not in _CACHE:
            _CACHE[config] = LabelModels(config)
        return _CACHE[config]


@dataclass
class DecodedClip:
    """Decoded media of one span: audio at the audio model's rate and uint8 frames."""

    audio: np.ndarray | None
    frames: np.ndarray


def decode_clip(video_path: str | Path, start_s: float | None, end_s: float | None, sample_rate: int | None,
                frame_fps: float = 1.0, frame_size: int = 224, audio_path: str | Path | None = None) -> DecodedClip:
    """Decode a span's audio (``sample_rate=None``: skip) and frames sampled at ``frame_fps``.

    ``audio_path`` (the clip's WAV that ``c98k split`` wrote, already cut to the span) replaces
    the video's audio when it is a mono WAV at ``sample_rate``: no AAC decode and resampling
    (measured: 45 % of decoding a demo clip). At another rate the span's own audio is decoded,
    since a 16 kHz WAV would band-limit a 48 kHz model; so it is for a WAV that cannot be read or
    whose length is not the span's (truncated).
    """
    if frame_fps <= 0:
        raise ValueError(f"frame_fps must be > 0, got {frame_fps}")
    start = float(start_s or 0.0)
    duration = float(end_s) - start if end_s is not None else None
    if duration is not None and duration <= 0:
        raise ValueError(f"{video_path}: empty span {start:.3f}-{end_s:.3f} s")
    audio = (media.wav_at_rate(audio_path, sample_rate) if audio_path is not None and sample_rate is not None
             else None)
    if audio is not None and duration is not None and abs(len(audio) / sample_rate - duration) > WAV_SLACK_S:
        log.warning("%s: %.2f s long, the span %.2f s: decoding the span's audio instead",
                    audio_path, len(audio) / sample_rate, duration)
        audio = None  # a truncated (or stale) WAV: the span in the manifest is the truth
    if audio is not None or sample_rate is None:
        _, frames = decode_span(video_path, start, end_s, None, frame_fps, frame_size)
    else:  # one decode of the span for both
        audio, frames = decode_span(video_path, start, end_s, sample_rate, frame_fps, frame_size)
    return DecodedClip(audio, frames)


def audio_features(audio: np.ndarray, models: LabelModels) -> tuple[np.ndarray, dict[str, float] | None]:
    """Audio embedding sequence ``[T, D]`` and clip-level music-tag probabilities (None if no tagger)."""
    model = models.audio
    if hasattr(model, "embed_and_tag") and hasattr(model, "tag_names"):
        seq, taggram = model.embed_and_tag(audio)
        probs = np.asarray(taggram, np.float64).mean(axis=0)
        return np.asarray(seq, np.float32), {str(n): float(p) for n, p in zip(model.tag_names, probs, strict=True)}
    return np.asarray(model.embed(audio), np.float32), None


def extract_clip_features(video_path: str | Path, start_s: float | None, end_s: float | None,
                          models: LabelModels, frame_fps: float = 1.0, with_audio: bool = True,
                          audio_path: str | Path | None = None) -> dict[str, Any]:
    """Features of one span of a video: what YuYin learns from.

    Returns ``dict(audio=[T_a, D_a] float32 or None, frames=[T_v, D_v] float32,
    music_tag_probs={tag: prob} or None)``. ``start_s``/``end_s`` None mean the whole file;
    ``with_audio=False`` skips audio (recommending music for a silent video). Raises
    ``media.MediaError`` for unreadable media.
    """
    sample_rate = models.audio.sample_rate if with_audio else None
    size = getattr(models.frames, "input_size", 224)
    decoded = decode_clip(video_path, start_s, end_s, sample_rate, frame_fps, size, audio_path)
    audio, tag_probs = (None, None)
    if decoded.audio is not None:
        audio, tag_probs = audio_features(decoded.audio, models)
    frames = np.asarray(models.frames.embed_images(decoded.frames), np.float32)
    return {"audio": audio, "frames": frames, "music_tag_probs": tag_probs}
