"""The per-clip work of ``c98k label``: decode a batch of clips, run the models, write feature files.

``label_rows`` labels a batch of clip rows (frames of all clips through the frame model
together, all texts through the text model in one call) and returns one updated row per input
with ``status`` ok or failed; ``label_batches`` cuts a stage batch into ``clips_per_batch``
sub-batches and decodes the next one's media in threads while the models run on this one.
``commercial98k.label.stage.LabelStage`` runs them on one worker (locally or as a Ray actor).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from commercial98k.errors import error_line
from commercial98k.label.category import category_result
from commercial98k.label.extractors import DecodedClip, LabelModels, audio_features, decode_clip, frame_info
from commercial98k.storage.feature_store import FeatureStore
from commercial98k.storage.files import DataRoot

from ..faults import raise_if_environment
from .evidence import (
    brand_evidence,
    clip_ocr,
    clip_tags,
    page_texts,
    text_distributions,
    visual_evidence,
)
from .speech_pooling import SpeechAwareEmotion, row_speech_share
from .tags import music_tags


@dataclass(frozen=True)
class LabelOptions:
    """Stage options that are not model choices."""

    frame_fps: float = 1.0
    music_tag_threshold: float = 0.1
    music_tag_top_k: int = 5
    clips_per_batch: int = 8


def clip_media(row: dict, data_root: str | os.PathLike | DataRoot) -> tuple[Path, float | None, float | None,
                                                                           Path | None]:
    """(media file, start, end, audio file) of a clip: its cut file if present, else its span of the
    video; the audio file is the clip's WAV from ``c98k split`` when it exists."""
    root = DataRoot(data_root)
    audio = root.resolve(row["audio_path"]) if row.get("audio_path") else None
    audio = audio if audio is not None and audio.is_file() else None
    if row.get("clip_path") and root.resolve(row["clip_path"]).is_file():
        return root.resolve(row["clip_path"]), None, None, audio
    if not row.get("video_path"):
        if row.get("clip_path"):
            raise FileNotFoundError(f"{root.resolve(row['clip_path'])}: clip file missing (and the row has no "
                                    "video_path to cut it from); restore it, then run `c98k label --retry-failed`")
        raise FileNotFoundError(f"clip {row.get('clip_id')}: neither clip_path nor video_path is set")
    video = root.resolve(row["video_path"])
    if not video.is_file():
        raise FileNotFoundError(f"{video}: source video missing")
    return video, row.get("clip_start_s"), row.get("clip_end_s"), audio


def _failed(row: dict, error: str) -> dict:
    out = dict(row)
    out["status"], out["error"] = "failed", error
    return out


def decode_row(row: dict, data_root: str | os.PathLike | DataRoot, models: LabelModels,
               opts: LabelOptions) -> DecodedClip:
    """The clip's audio (at the audio model's rate) and frames (at ``frame_fps``), in one decode."""
    video, start, end, audio = clip_media(row, data_root)
    size = getattr(models.frames, "input_size", 224)
    return decode_clip(video, start, end, models.audio.sample_rate, opts.frame_fps, size, audio)


def label_rows(rows: list[dict], models: LabelModels, store: FeatureStore, opts: LabelOptions,
               decoded: list[DecodedClip | BaseException] | None = None) -> list[dict]:
    """Label a batch of clip rows; returns one updated row per input (``status`` ok or failed).

    Frames of all clips go through the frame model together and all texts through the text
    model in one call. ``decoded`` (media decoded beforehand, or the exception it raised)
    lets the caller decode in parallel.
    """
    if decoded is None:
        decoded = []
        for r in rows:
            try:
                decoded.append(decode_row(r, store.data_root, models, opts))
            except Exception as e:
                raise_if_environment(e, store.data_root)
                decoded.append(e)
    out: list[dict | None] = [None] * len(rows)
    audio: dict[int, tuple[np.ndarray, dict[str, float] | None]] = {}
    for i, (row, dec) in enumerate(zip(rows, decoded, strict=True)):
        if isinstance(dec, BaseException):
            raise_if_environment(dec, store.data_root)  # decoded in a thread: a machine fault stops the run
            out[i] = _failed(row, error_line(dec))
            continue
        try:
            audio[i] = audio_features(dec.audio, models)
        except Exception as e:
            raise_if_environment(e, store.data_root)
            out[i] = _failed(row, error_line(e))
    frames = _embed_frames({i: decoded[i].frames for i in audio}, models)
    for i, seq in frames.items():
        if isinstance(seq, BaseException):
            raise_if_environment(seq, store.data_root)
            out[i] = _failed(rows[i], error_line(seq))
    live = [i for i in sorted(audio) if not isinstance(frames[i], BaseException)]
    music = {i: (music_tags(audio[i][1], threshold=opts.music_tag_threshold, top_k=opts.music_tag_top_k)
                 if audio[i][1] is not None else None) for i in live}
    try:
        texts = text_features([rows[i] for i in live], models, [frames[i] for i in live], [music[i] for i in live],
                              store.data_root)
    except Exception as e:  # the text model failed on the whole batch: fail its clips, keep going
        raise_if_environment(e, store.data_root)
        for i in live:
            out[i] = _failed(rows[i], error_line(e))
        live, texts = [], []
    emotion = models.emotion
    prov = models.provenance(opts.frame_fps)
    keys = {"audio": models.audio.info.key(), "frames": frame_info(models.frames.info, opts.frame_fps).key(),
            "tags": models.text.info.key()}
    for i, text in zip(live, texts, strict=True):
        seq, tag_probs = audio[i]
        try:
            emo = _predict_emotion(emotion, rows[i], seq, models.audio)
            out[i] = _finish_row(rows[i], seq, tag_probs, frames[i], text, emo, prov, keys, store, opts)
        except Exception as e:
            raise_if_environment(e, store.data_root)  # writing the feature files: a full disk stops the run
            out[i] = _failed(rows[i], error_line(e))
    return [r for r in out if r is not None]


def _embed_frames(frames: dict[int, np.ndarray], models: LabelModels) -> dict[int, np.ndarray | BaseException]:
    """Embed the frames of many clips in one pass; on error, clip by clip to find the bad one."""
    if not frames:
        return {}
    order = list(frames)
    try:
        emb = np.asarray(models.frames.embed_images(np.concatenate([frames[i] for i in order])), np.float32)
    except Exception:
        out: dict[int, np.ndarray | BaseException] = {}
        for i in order:
            try:
                out[i] = np.asarray(models.frames.embed_images(frames[i]), np.float32)
            except Exception as e:
                out[i] = e
        return out
    bounds = np.cumsum([0] + [len(frames[i]) for i in order])
    return {i: emb[bounds[n]:bounds[n + 1]] for n, i in enumerate(order)}


@dataclass
class TextParts:
    """The text side of one clip: tags with their embeddings and sources, on-screen text, category."""

    tags: list[str]
    tag_embeddings: np.ndarray
    predicted_category: str | None
    category_confidence: float | None
    tag_sources: list[str] | None = None
    ocr_text: str | None = None
    category_probs: dict[str, float] | None = None
    category_evidence: list[str] | None = None
    category_evidence_probs: dict[str, list[float]] | None = None


def text_features(rows: list[dict], models: LabelModels, frame_seqs: list[np.ndarray] | None = None,
                   music: list[list[str] | None] | None = None,
                  data_root: str | os.PathLike | DataRoot | None = None) -> list[TextParts]:
    """Tags (page, OCR, music), tag embeddings and the combined category score of many rows,
    with one text-model call (see ``commercial98k.label.evidence``)."""
    if not rows:
        return []
    n = len(rows)
    ocr = [clip_ocr(r, models, data_root) for r in rows]
    music = music or [None] * n
    keywords = {k.lower() for c in models.taxonomy.categories for k in c.keywords}
    tagged = [clip_tags(models.tag_normalizer, r, o, m, keywords) for r, o, m in zip(rows, ocr, music, strict=True)]
    page = page_texts(rows)
    ocr_texts = [o or "" for o in ocr]
    vocab = sorted({t for ts, _ in tagged for t in ts})
    emb = models.text.embed_texts(vocab + page + ocr_texts)
    tag_emb = dict(zip(vocab, emb[:len(vocab)], strict=True))
    page_p = text_distributions(models.category_matcher, page, emb[len(vocab):len(vocab) + n])
    ocr_p = text_distributions(models.category_matcher, ocr_texts, emb[len(vocab) + n:])
    visual = [visual_evidence(models, f) for f in (frame_seqs or [None] * n)]
    brands = [brand_evidence(models.taxonomy, r, o, ts) for r, o, (ts, _) in zip(rows, ocr, tagged, strict=True)]
    ids = models.taxonomy.ids()
    out = []
    for i, r in enumerate(rows):
        res = category_result(ids, {"page_text": page_p[i], "ocr": ocr_p[i], "visual": visual[i],
                               "brand": brands[i]},
                              r.get("category"), models.calibration)
        ts, sources = tagged[i]
        out.append(TextParts(ts, np.stack([tag_emb[t] for t in ts]) if ts else np.zeros((0, models.text.dim), np.float32),
                             res.predicted_category, res.category_confidence, sources, ocr[i],
                             {c: float(p) for c, p in zip(ids, res.probs, strict=True)} if res.present else None,
                             res.present, res.evidence))
    return out


def _predict_emotion(emotion: Any, row: dict, audio_seq: np.ndarray, audio_model: Any) -> dict[str, Any] | None:
    """The clip's emotion; a speech-aware head gets the voiced share of each audio frame from the row."""
    if emotion is None:
        return None
    if audio_seq.ndim != 2 or len(audio_seq) == 0:
        raise ValueError(f"audio model returned no frames (shape {audio_seq.shape})")
    if isinstance(emotion, SpeechAwareEmotion):
        return emotion.predict(audio_seq, row_speech_share(row, len(audio_seq), audio_model))
    return emotion.predict(audio_seq)


def _finish_row(row: dict, audio_seq: np.ndarray, tag_probs: dict[str, float] | None, frame_seq: np.ndarray,
                text: TextParts, pred: dict[str, Any] | None, prov: dict[str, str | None], keys: dict[str, str],
                store: FeatureStore, opts: LabelOptions) -> dict:
    """Feature files and the updated manifest row of one clip (``pred``: its emotion, or None)."""
    if audio_seq.ndim != 2 or len(audio_seq) == 0:
        raise ValueError(f"audio model returned no frames (shape {audio_seq.shape})")
    out = dict(row)
    if pred is not None:
        out.update(valence=pred["valence"], arousal=pred["arousal"], emotion=pred["emotion"],
                   emotion_probs={k: float(v) for k, v in pred["probs"].items()})
    else:
        out.update(valence=None, arousal=None, emotion=None, emotion_probs=None)
    cid = row["clip_id"]
    out["audio_embedding"] = store.put("audio", keys["audio"], cid, audio_seq)
    out["frame_embedding"] = store.put("frames", keys["frames"], cid, frame_seq)
    out["tag_embedding"] = store.put("tags", keys["tags"], cid, text.tag_embeddings, dtype="float32")
    out["tags"] = text.tags
    out["music_tags"] = (music_tags(tag_probs, threshold=opts.music_tag_threshold, top_k=opts.music_tag_top_k)
                         if tag_probs is not None else None)
    out["predicted_category"] = text.predicted_category
    out["category_confidence"] = text.category_confidence
    out.update(tag_sources=text.tag_sources, ocr_text=text.ocr_text, category_probs=text.category_probs,
               category_evidence=text.category_evidence, category_evidence_probs=text.category_evidence_probs)
    out.update(prov)
    out["status"], out["error"] = "ok", None
    return out


def label_batches(pending: list[dict], models: LabelModels, store: FeatureStore, opts: LabelOptions,
                  workers: int) -> Iterator[dict]:
    """Yield labelled rows batch by batch; the next batch's media decodes while this one runs."""
    batches = [pending[i:i + opts.clips_per_batch] for i in range(0, len(pending), opts.clips_per_batch)]

    def decode(row: dict) -> DecodedClip | BaseException:
        try:
            return decode_row(row, store.data_root, models, opts)
        except Exception as e:
            return e

    with cf.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(decode, r) for r in batches[0]] if batches else []
        for b, batch in enumerate(batches):
            decoded = [f.result() for f in futures]
            futures = [pool.submit(decode, r) for r in batches[b + 1]] if b + 1 < len(batches) else []
            yield from label_rows(batch, models, store, opts, decoded)
