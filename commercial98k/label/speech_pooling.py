"""Music features under a voice-over: emotion and pooled embedding that lean on the music, not the voice.

``c98k split`` records where someone speaks (``speech_segments``, video time, from Silero VAD:
``split.vad``). A voice 6 dB over the music moves the audio model's frames a long way (musicnn
penultimate: mean-pooled cosine to the music alone ~0.5 on held-out Emotify tracks), and the
emotion head pools every frame alike. Two things are done per clip, both driven by each audio
frame's voiced share ``s`` (the part of its window inside a speech span):

* **correction**: a voiced frame ``e`` becomes ``e + s * ([e, 1] @ W)``, a ridge map from
  frames of music + real speech to the frames of the same music alone (``SpeechCorrection``,
  fitted per audio model by ``benchmarks/voiceover_features.py --fit`` on Emotify tracks and
  speakers the benchmark holds out); frames without speech are left as they are;
* **weighting**: frames are pooled with weight ``1 - s + FLOOR`` (mean and standard deviation,
  per emotion-head window), so the music-only frames count most.

Selection or weighting alone barely helps: a voice-over usually covers most of an ad, so few
3-s frames are free of it (measured: even a perfect speech mask gains < 15 %). The stored
``[T, D]`` sequences stay as the audio model made them (the shards carry them and their time
grid); only the emotion columns and ``pooled_embedding`` use this, and the emotion model's
provenance tag says so (``gems-head-speech-weighted``). A clip without speech segments (an old
manifest, or no voice) is pooled exactly as before.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from commercial98k.storage.files import atomic_write_bytes, sha256_bytes, sha256_file

from ..models.registry import ModelInfo

SPEECH_POOLING = ("weighted", "none")
SUFFIX = "speech-weighted"
FLOOR = 0.05  # a fully voiced frame still counts a little: a clip that is all voice keeps all its frames
#: Speech spans are widened by this much each side: an audio-model window that overlaps a voice's edge
#: is moved by it too. Chosen when the spans came from YAMNet's speech classes, which missed a voice's
#: quiet edges under music (0, 0.5, 1, 1.5, 2.5 s tried; 1 s brought the fit tracks' emotion shift down
#: about 10 % more); benchmarks/voiceover_features.py measures it with the VAD's spans split records now.
SPAN_PAD_S = 1.0
DEFAULT_L2 = 100.0  # chosen on the fit tracks (1, 10, 100, 1000 tried; 100 best at +6 and +12 dB)
CORRECTIONS = {  # audio model name -> bundled correction file
    "musicnn-MSD_musicnn": Path(__file__).resolve().parent.parent / "data" / "speech_correction_musicnn.npz",
}
FORMAT = 1


def clip_speech_spans(row: dict) -> list[tuple[float, float]] | None:
    """The row's speech spans in clip time (0 = ``clip_start_s``), or None when the manifest has none."""
    segments, start, end = row.get("speech_segments"), row.get("clip_start_s"), row.get("clip_end_s")
    if segments is None or start is None:
        return None
    start = float(start)
    end = float(end) if end is not None else np.inf
    out = []
    for seg in segments:
        s, e = max(float(seg["start_s"]), start), min(float(seg["end_s"]), end)
        if e > s:
            out.append((s - start, e - start))
    return out


def frame_speech_share(spans: list[tuple[float, float]], n_frames: int, hop_s: float,
                       window_s: float | None = None, pad_s: float = SPAN_PAD_S) -> np.ndarray:
    """``[T]``: the share of each audio frame's window (``i * hop_s`` for ``window_s``) inside ``spans``
    widened by ``pad_s`` each side."""
    window_s = float(window_s or hop_s)
    spans = _merged([(s - pad_s, e + pad_s) for s, e in spans])
    share = np.zeros(n_frames, np.float64)
    for i in range(n_frames):
        a = i * hop_s
        covered = sum(max(0.0, min(e, a + window_s) - max(s, a)) for s, e in spans)
        share[i] = min(1.0, covered / window_s)
    return share


def _merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping spans joined (widened spans must not count twice)."""
    out: list[list[float]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def row_speech_share(row: dict, n_frames: int, audio_model: Any) -> np.ndarray | None:
    """``[T]`` voiced share of a clip's audio frames from its manifest row (None: no speech segments)."""
    spans = clip_speech_spans(row)
    if spans is None:
        return None
    return frame_speech_share(spans, n_frames, audio_model.hop_s, getattr(audio_model, "patch_s", None))


def frame_weights(share: np.ndarray) -> np.ndarray:
    """Pooling weight of each frame: its music share plus ``FLOOR``."""
    return np.clip(1.0 - np.asarray(share, np.float64), 0.0, 1.0) + FLOOR


def weighted_pool(seq: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``[T, D]`` -> ``[2D]``: weighted mean and standard deviation over time (``emotion.pool`` weighted)."""
    seq = np.asarray(seq, np.float64)
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    mean = w @ seq
    return np.concatenate([mean, np.sqrt(np.maximum(w @ (seq - mean) ** 2, 0.0))])


@dataclass
class SpeechCorrection:
    """Ridge map from voiced frames to the music alone: ``e + s * ([e, 1] @ weight)``."""

    audio_model: str  # ModelInfo.tag() of the audio model it was fitted on
    weight: np.ndarray  # [D + 1, D]
    meta: dict[str, Any] = field(default_factory=dict)
    file_sha256: str | None = field(default=None, repr=False)

    def apply(self, seq: np.ndarray, share: np.ndarray) -> np.ndarray:
        """Corrected ``[T, D]``; frames with no speech are returned unchanged."""
        seq = np.asarray(seq, np.float64)
        s = np.asarray(share, np.float64)[:, None]
        return seq + s * (np.c_[seq, np.ones(len(seq))] @ self.weight)

    def to_bytes(self) -> bytes:
        """Deterministic ``.npz`` bytes (fixed zip timestamps), numpy only."""
        from commercial98k.models.emotion_head import npz_bytes

        return npz_bytes({"format": np.array(FORMAT), "audio_model": np.array(self.audio_model),
                          "weight": np.asarray(self.weight, np.float32),
                          "meta": np.array(json.dumps(self.meta, sort_keys=True))})

    def save(self, path: str | Path) -> Path:
        data = self.to_bytes()
        atomic_write_bytes(path, data)
        self.file_sha256 = sha256_bytes(data)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> SpeechCorrection:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["format"]) != FORMAT:
                    raise ValueError(f"format {int(z['format'])}, this code reads {FORMAT}")
                return cls(str(z["audio_model"]), np.asarray(z["weight"], np.float64), json.loads(str(z["meta"])),
                           sha256_file(path))
        except (KeyError, ValueError, zipfile.BadZipFile, OSError) as e:
            raise ValueError(f"{path}: not a speech correction file ({e})") from e


def fit_correction(mix: list[np.ndarray], clean: list[np.ndarray], shares: list[np.ndarray], audio_model: str,
                   l2: float = DEFAULT_L2, meta: dict[str, Any] | None = None) -> SpeechCorrection:
    """Fit ``SpeechCorrection`` on frame sequences of mixes, of the same music alone, and the mixes'
    voiced shares (ridge on ``s * [e, 1]`` to ``clean - mix``, so unvoiced frames carry no weight)."""
    xs, ys = [], []
    for m, c, s in zip(mix, clean, shares, strict=True):
        n = min(len(m), len(c), len(s))
        m, c, s = np.asarray(m[:n], np.float64), np.asarray(c[:n], np.float64), np.asarray(s[:n], np.float64)
        xs.append(s[:, None] * np.c_[m, np.ones(n)])
        ys.append(c - m)
    x, y = np.concatenate(xs), np.concatenate(ys)
    weight = np.linalg.solve(x.T @ x + l2 * np.eye(x.shape[1]), x.T @ y)
    return SpeechCorrection(audio_model, weight, {"l2": l2, "frames": int(len(x)), **(meta or {})})


def bundled_correction(audio_info: ModelInfo) -> SpeechCorrection | None:
    """The bundled correction of this audio model (None when there is none, or it was fitted on other weights)."""
    path = CORRECTIONS.get(audio_info.name)
    if path is None or not path.is_file():
        return None
    corr = SpeechCorrection.load(path)
    return corr if corr.audio_model == audio_info.tag() else None


def pooled_embedding(seq: np.ndarray, share: np.ndarray | None = None,
                     correction: SpeechCorrection | None = None) -> np.ndarray:
    """The clip's pooled audio embedding ``[D]``: the plain mean without speech, else the
    music-share-weighted mean of the corrected frames."""
    seq = np.asarray(seq, np.float64)
    if share is None or not np.any(share > 0):
        return seq.mean(axis=0)
    if correction is not None:
        seq = correction.apply(seq, share)
    w = frame_weights(share)
    return (w / w.sum()) @ seq


class SpeechAwareEmotion:
    """An emotion head (``GemsHead``) whose prediction leans on each clip's music-only frames."""

    def __init__(self, head: Any, correction: SpeechCorrection | None = None):
        self.head, self.correction = head, correction
        self.classes = head.classes
        base = head.info
        version = base.version + (f"+sc{correction.file_sha256[:8]}" if correction and correction.file_sha256 else "")
        self.info = ModelInfo(f"{base.name}-{SUFFIX}", version, base.weights_sha256)

    def predict(self, audio_seq: np.ndarray, share: np.ndarray | None = None) -> dict[str, Any]:
        """``head.predict`` with voiced frames corrected and down-weighted (``share``: ``[T]`` voiced share)."""
        if share is None or not np.any(np.asarray(share) > 0):
            return self.head.predict(audio_seq)
        seq = self.head.check_sequence(audio_seq)
        share = np.asarray(share, np.float64)[:len(seq)]
        if len(share) < len(seq):
            share = np.r_[share, np.zeros(len(seq) - len(share))]
        if self.correction is not None:
            seq = self.correction.apply(seq, share)
        from commercial98k.models.emotion_head import (
            window_starts,  # scipy & co. load with the head, not with this module
        )

        w = frame_weights(share)
        wf = self.head.window_frames if self.head.window_frames > 0 else len(seq)
        starts = window_starts(len(seq), self.head.window_frames)
        feats = np.stack([weighted_pool(seq[s:s + wf], w[s:s + wf]) for s in starts])
        wins = np.array([w[s:s + wf].mean() for s in starts])
        probs, va = self.head.predict_features(feats)
        p, v = wins @ probs / wins.sum(), wins @ va / wins.sum()
        return {"valence": float(v[0]), "arousal": float(v[1]), "emotion": self.classes[int(np.argmax(p))],
                "probs": {c: float(x) for c, x in zip(self.classes, p, strict=True)}}

    def to_vector(self, pred: dict[str, Any]) -> np.ndarray:
        return self.head.to_vector(pred)
