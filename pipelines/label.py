"""The ``c98k label`` stage: embeddings, music tags, emotion, text tags and category confidence per clip.

Reads ``manifests/c98k.parquet`` and labels every ``ok`` clip that lacks features of the
chosen models: audio-embedding sequence (``features/audio``), frame embeddings at
``frame_fps`` (``features/frames``), tag text embeddings aligned with the ``tags`` column
(``features/tags``), music tags from the audio model's tagger, emotion from the emotion head,
and ``category_confidence`` / ``predicted_category`` from a zero-shot text match. Updated rows
go through ``ManifestWriter`` (same ``clip_id``, newer row wins) with the provenance columns
``audio_model``, ``frame_model``, ``text_model``, ``emotion_model``.

Resumable: a clip is skipped when its feature files exist and its provenance matches the
models of this run. One code path for both engines (``pipelines.stages.LabelStage``): clips
are labelled in batches (frames and texts of several clips go through the models together);
locally in this process with media decoded by ``workers`` threads, on Ray by ``workers`` actors
that each build the models once and write their own manifest parts.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from commercial98k.engine import error_line
from commercial98k.features import FeatureStore
from commercial98k.fsutil import within
from commercial98k.label.category import clip_text
from commercial98k.label.clip_features import (
    DecodedClip,
    LabelConfig,
    LabelModels,
    audio_features,
    decode_clip,
)
from commercial98k.label.tags import music_tags
from commercial98k.manifest import compact, manifest_exists, read_manifest
from commercial98k.ray_engine import is_system_failure
from commercial98k.stage_runner import run_stage
from pipelines.stages import LabelStage, label_provenance

log = logging.getLogger(__name__)

FEATURE_COLUMNS = {"audio": "audio_embedding", "frames": "frame_embedding", "tags": "tag_embedding"}


@dataclass(frozen=True)
class LabelOptions:
    """Stage options that are not model choices."""

    frame_fps: float = 1.0
    music_tag_threshold: float = 0.1
    music_tag_top_k: int = 5
    clips_per_batch: int = 8


def clip_media(row: dict, data_root: Path) -> tuple[Path, float | None, float | None, Path | None]:
    """(media file, start, end, audio file) of a clip: its cut file if present, else its span of the video."""
    if row.get("clip_path") and within(data_root, row["clip_path"]).is_file():
        video, start, end = within(data_root, row["clip_path"]), None, None
        audio = within(data_root, row["audio_path"]) if row.get("audio_path") else None
        return video, start, end, audio if audio is not None and audio.is_file() else None
    if not row.get("video_path"):
        raise FileNotFoundError(f"clip {row.get('clip_id')}: neither clip_path nor video_path is set")
    video = within(data_root, row["video_path"])
    if not video.is_file():
        raise FileNotFoundError(f"{video}: source video missing")
    return video, row.get("clip_start_s"), row.get("clip_end_s"), None


def is_labelled(row: dict, store: FeatureStore, provenance: dict[str, str | None], has_emotion: bool) -> bool:
    """True when the row's features exist and were made by the models of this run."""
    if row.get("status") != "ok":
        return False
    for col in ("audio_model", "frame_model", "text_model") + (("emotion_model",) if has_emotion else ()):
        if row.get(col) != provenance[col]:
            return False
    return all(store.has(row.get(col)) for col in FEATURE_COLUMNS.values())


def select_pending(rows: list[dict], store: FeatureStore, provenance: dict[str, str | None], has_emotion: bool,
                   limit: int | None = None) -> tuple[list[dict], int]:
    """(``ok`` rows still to label, number already labelled by these models)."""
    pending, done = [], 0
    for r in rows:
        if r.get("status") != "ok":
            continue
        if is_labelled(r, store, provenance, has_emotion):
            done += 1
        else:
            pending.append(r)
    return (pending[:limit] if limit else pending), done


def _failed(row: dict, error: str) -> dict:
    out = dict(row)
    out["status"], out["error"] = "failed", error
    return out


def _decode(row: dict, data_root: Path, models: LabelModels, opts: LabelOptions) -> DecodedClip:
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
                decoded.append(_decode(r, store.root, models, opts))
            except Exception as e:
                decoded.append(e)
    out: list[dict | None] = [None] * len(rows)
    audio: dict[int, tuple[np.ndarray, dict[str, float] | None]] = {}
    for i, (row, dec) in enumerate(zip(rows, decoded, strict=True)):
        if isinstance(dec, BaseException):
            out[i] = _failed(row, error_line(dec))
            continue
        try:
            audio[i] = audio_features(dec.audio, models)
        except Exception as e:
            out[i] = _failed(row, error_line(e))
    frames = _embed_frames({i: decoded[i].frames for i in audio}, models)
    for i, seq in frames.items():
        if isinstance(seq, BaseException):
            out[i] = _failed(rows[i], error_line(seq))
    live = [i for i in sorted(audio) if not isinstance(frames[i], BaseException)]
    try:
        texts = _text_features([rows[i] for i in live], models)
    except Exception as e:  # the text model failed on the whole batch: fail its clips, keep going
        for i in live:
            out[i] = _failed(rows[i], error_line(e))
        live, texts = [], []
    emotion = models.emotion
    prov = models.provenance()
    keys = {"audio": models.audio.info.key(), "frames": models.frames.info.key(), "tags": models.text.info.key()}
    for i, text in zip(live, texts, strict=True):
        seq, tag_probs = audio[i]
        try:
            out[i] = _finish_row(rows[i], seq, tag_probs, frames[i], text, emotion, prov, keys, store, opts)
        except Exception as e:
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
    tags: list[str]
    tag_embeddings: np.ndarray
    predicted_category: str | None
    category_confidence: float | None


def _text_features(rows: list[dict], models: LabelModels) -> list[TextParts]:
    """Tags, tag embeddings and category match of many rows, with one text-model call."""
    if not rows:
        return []
    norm = models.tag_normalizer
    tags = [norm.normalize(r.get("platform_tags"), r.get("title"), r.get("description")) for r in rows]
    texts = [clip_text(r.get("title"), r.get("description"), t) for r, t in zip(rows, tags, strict=True)]
    vocab = sorted({t for ts in tags for t in ts})
    emb = models.text.embed_texts(vocab + texts) if vocab or texts else np.zeros((0, models.text.dim))
    tag_emb = dict(zip(vocab, emb[:len(vocab)], strict=True))
    matches = models.category_matcher.match(texts, [r.get("category") for r in rows], emb[len(vocab):])
    return [TextParts(ts, np.stack([tag_emb[t] for t in ts]) if ts else np.zeros((0, models.text.dim), np.float32),
                      m.predicted_category, m.category_confidence)
            for ts, m in zip(tags, matches, strict=True)]


def _finish_row(row: dict, audio_seq: np.ndarray, tag_probs: dict[str, float] | None, frame_seq: np.ndarray,
                text: TextParts, emotion: Any, prov: dict[str, str | None], keys: dict[str, str],
                store: FeatureStore, opts: LabelOptions) -> dict:
    """Emotion, feature files and the updated manifest row of one clip."""
    if audio_seq.ndim != 2 or len(audio_seq) == 0:
        raise ValueError(f"audio model returned no frames (shape {audio_seq.shape})")
    out = dict(row)
    if emotion is not None:
        pred = emotion.predict(audio_seq)
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
    out.update(prov)
    out["status"], out["error"] = "ok", None
    return out


def _local_batches(pending: list[dict], models: LabelModels, store: FeatureStore, opts: LabelOptions,
                   workers: int):
    """Yield labelled rows batch by batch; the next batch's media decodes while this one runs."""
    batches = [pending[i:i + opts.clips_per_batch] for i in range(0, len(pending), opts.clips_per_batch)]

    def decode(row: dict) -> DecodedClip | BaseException:
        try:
            return _decode(row, store.root, models, opts)
        except Exception as e:
            return e

    with cf.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(decode, r) for r in batches[0]] if batches else []
        for b, batch in enumerate(batches):
            decoded = [f.result() for f in futures]
            futures = [pool.submit(decode, r) for r in batches[b + 1]] if b + 1 < len(batches) else []
            yield from label_rows(batch, models, store, opts, decoded)


def run_label(manifest: str | os.PathLike, data_root: str | os.PathLike, config: LabelConfig | None = None,
              options: LabelOptions | None = None, *, workers: int | None = 1, engine: str = "local",
              address: str | None = None, limit: int | None = None, progress: bool | None = None,
              gpus_per_worker: float = 0.0) -> Counter:
    """Label the pending clips of ``manifest``; returns counts (``labelled``, ``failed``, ``skipped``,
    ``crashed``: failed because a Ray worker crashed or was killed)."""
    config, options = config or LabelConfig(), options or LabelOptions()
    data_root = Path(data_root).resolve()
    store = FeatureStore(data_root)
    if not manifest_exists(manifest):
        read_manifest(manifest, "clips")  # the usual one-line error
    # builds the models (locally here, on Ray in one cluster task): fails early with a clear error
    prov, started_ray = label_provenance(config, engine, address, gpus_per_worker)
    try:
        return _label_pending(manifest, data_root, store, prov, config, options, workers, engine, address,
                              limit, progress, gpus_per_worker)
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def plan_label(manifest: str | os.PathLike, store: FeatureStore, provenance: dict[str, str | None],
               has_emotion: bool, limit: int | None = None) -> tuple[list[dict], int, int]:
    """(rows to label, already labelled, not ok): the manifest is streamed in batches
    (``manifest_scan``), only ``ok`` rows become dicts and only pending ones are kept."""
    import pyarrow.compute as pc

    from commercial98k.manifest_scan import scan_manifest

    pending: list[dict] = []
    done = not_ok = 0
    for batch in scan_manifest(manifest, "clips"):
        ok = pc.fill_null(pc.equal(batch.column("status"), "ok"), False)
        not_ok += batch.num_rows - pc.sum(ok).as_py() if batch.num_rows else 0
        rows, n = select_pending(batch.filter(ok).to_pylist(), store, provenance, has_emotion)
        pending += rows
        done += n
    return (pending[:limit] if limit else pending), done, not_ok


def _label_pending(manifest: str | os.PathLike, data_root: Path, store: FeatureStore,
                   prov: dict[str, str | None], config: LabelConfig, options: LabelOptions, workers: int | None,
                   engine: str, address: str | None, limit: int | None, progress: bool | None,
                   gpus_per_worker: float) -> Counter:
    pending, done, not_ok = plan_label(manifest, store, prov, config.has_emotion, limit)
    counts: Counter = Counter(skipped=done, not_ok=not_ok)
    log.info("label: %d clips to label, %d already labelled", len(pending), done)
    if not pending:
        return counts

    # one code path: locally one worker (this process, --workers decode threads); on Ray one actor
    # per worker, each building the models once and writing its own manifest parts
    local = engine == "local"
    stage = LabelStage(config, data_root, options, decode_threads=(workers or 1) if local else 1,
                       gpus_per_worker=gpus_per_worker)
    for row in run_stage(stage, pending, engine=engine, workers=1 if local else workers, address=address,
                         manifest=manifest, data_root=None if local else data_root, desc="label",
                         total=len(pending), progress=progress):
        counts["labelled" if row["status"] == "ok" else "failed"] += 1
        counts["crashed"] += is_system_failure(row)
    compact(manifest, "clips")
    return counts
