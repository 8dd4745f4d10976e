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
from commercial98k.label.clip_features import (
    DecodedClip,
    LabelConfig,
    LabelModels,
    audio_features,
    decode_clip,
    frame_info,
)
from commercial98k.label.evidence import (
    category_result,
    clip_ocr,
    clip_tags,
    page_texts,
    text_distributions,
    visual_evidence,
)
from commercial98k.label.tags import music_tags
from commercial98k.manifest import compact, manifest_exists, read_manifest
from commercial98k.manifest_scan import row_finished
from commercial98k.ray_engine import is_system_failure
from commercial98k.stage_runner import run_stage
from commercial98k.stages import record, split_result, stage_result
from commercial98k.threads import cores, set_worker_threads
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
        if row.get("clip_path"):
            raise FileNotFoundError(f"{within(data_root, row['clip_path'])}: clip file missing (and the row has no "
                                    "video_path to cut it from); restore it, then run `c98k label --retry-failed`")
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
    if provenance.get("ocr_model") and row.get("ocr_model") != provenance["ocr_model"]:
        return False
    return all(store.has(row.get(col)) for col in FEATURE_COLUMNS.values())


def select_pending(rows: list[dict], store: FeatureStore, provenance: dict[str, str | None], has_emotion: bool,
                   limit: int | None = None, retry_failed: bool = False) -> tuple[list[dict], int]:
    """(rows split made ``ok`` still to label, number already labelled by these models).

    A row whose labelling failed is retried only with ``retry_failed``.
    """
    pending, done = [], 0
    for r in rows:
        if split_result(r) != "ok" or (stage_result(r, "label") == "failed" and row_finished(r, "label", retry_failed)):
            continue  # done keys: the one reader's rule (manifest_scan.row_finished)
        if is_labelled(r, store, provenance, has_emotion):
            done += 1
        else:
            pending.append(r)
    return (pending[:limit] if limit else pending), done


def label_result(row: dict) -> dict:
    """Record the label step's result (the row's ``status``/``error``) as label's own; split's stays."""
    if row.get("split_status") is None:  # a row written before per-stage columns: split made it ok
        row = dict(row, fetch_status=row.get("fetch_status") or "ok", split_status="ok", split_error=None)
    return record(row, "label", row.get("status") or "failed", row.get("error"))


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
    music = {i: (music_tags(audio[i][1], threshold=opts.music_tag_threshold, top_k=opts.music_tag_top_k)
                 if audio[i][1] is not None else None) for i in live}
    try:
        texts = _text_features([rows[i] for i in live], models, [frames[i] for i in live], [music[i] for i in live],
                               store.root)
    except Exception as e:  # the text model failed on the whole batch: fail its clips, keep going
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
    tag_sources: list[str] | None = None
    ocr_text: str | None = None
    category_probs: dict[str, float] | None = None
    category_evidence: list[str] | None = None
    category_evidence_probs: dict[str, list[float]] | None = None


def _text_features(rows: list[dict], models: LabelModels, frame_seqs: list[np.ndarray] | None = None,
                   music: list[list[str] | None] | None = None, data_root: Path | None = None) -> list[TextParts]:
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
    ids = models.taxonomy.ids()
    out = []
    for i, r in enumerate(rows):
        res = category_result(ids, {"page_text": page_p[i], "ocr": ocr_p[i], "visual": visual[i]},
                              r.get("category"), models.calibration)
        ts, sources = tagged[i]
        out.append(TextParts(ts, np.stack([tag_emb[t] for t in ts]) if ts else np.zeros((0, models.text.dim), np.float32),
                             res.predicted_category, res.category_confidence, sources, ocr[i],
                             {c: float(p) for c, p in zip(ids, res.probs, strict=True)} if res.present else None,
                             res.present, res.evidence))
    return out


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
    out.update(tag_sources=text.tag_sources, ocr_text=text.ocr_text, category_probs=text.category_probs,
               category_evidence=text.category_evidence, category_evidence_probs=text.category_evidence_probs)
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
              retry_failed: bool = False, gpus_per_worker: float = 0.0) -> Counter:
    """Label the pending clips of ``manifest``; returns counts (``labelled``, ``failed``, ``skipped``,
    ``not_ok``, ``failed_before``: label failures left alone without ``retry_failed``,
    ``crashed``: failed because a Ray worker crashed or was killed)."""
    config, options = config or LabelConfig(), options or LabelOptions()
    data_root = Path(data_root).resolve()
    store = FeatureStore(data_root)
    if not manifest_exists(manifest):
        read_manifest(manifest, "clips")  # the usual one-line error
    if engine == "local":  # this process runs the models: cap its thread pools before they load
        set_worker_threads(cores())
    # builds the models (locally here, on Ray in one cluster task): fails early with a clear error
    prov, started_ray = label_provenance(config, engine, address, gpus_per_worker, options.frame_fps)
    try:
        return _label_pending(manifest, data_root, store, prov, config, options, workers, engine, address,
                              limit, progress, gpus_per_worker, retry_failed)
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def plan_label(manifest: str | os.PathLike, store: FeatureStore, provenance: dict[str, str | None],
               has_emotion: bool, limit: int | None = None,
               retry_failed: bool = False) -> tuple[list[dict], Counter]:
    """(rows to label, counts ``skipped`` (already labelled), ``not_ok`` (split did not make them
    ``ok``), ``failed_before`` (label failed; retried only with ``retry_failed``)).

    The manifest is streamed in batches (``manifest_scan``); only pending rows are kept.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from commercial98k.manifest_scan import scan_manifest

    pending: list[dict] = []
    counts: Counter = Counter(skipped=0, not_ok=0, failed_before=0)
    for batch in scan_manifest(manifest, "clips"):
        # only rows split may have made ok become dicts: split_status ok, or (rows written before
        # the per-stage columns) status ok or failed; split_result decides among those
        status = batch.column("status")
        maybe = pc.is_in(status, pa.array(["ok", "failed"]))
        if "split_status" in batch.schema.names:
            split = batch.column("split_status")
            maybe = pc.or_kleene(pc.equal(split, "ok"), pc.and_kleene(pc.is_null(split), maybe))
        rows = batch.filter(pc.fill_null(maybe, False)).to_pylist()
        split_ok = [r for r in rows if split_result(r) == "ok"]
        counts["not_ok"] += batch.num_rows - len(split_ok)
        if not retry_failed:
            counts["failed_before"] += sum(stage_result(r, "label") == "failed" for r in split_ok)
        chosen, n = select_pending(split_ok, store, provenance, has_emotion, retry_failed=retry_failed)
        pending += chosen
        counts["skipped"] += n
    return (pending[:limit] if limit else pending), counts


def _label_pending(manifest: str | os.PathLike, data_root: Path, store: FeatureStore,
                   prov: dict[str, str | None], config: LabelConfig, options: LabelOptions, workers: int | None,
                   engine: str, address: str | None, limit: int | None, progress: bool | None,
                   gpus_per_worker: float, retry_failed: bool = False) -> Counter:
    pending, counts = plan_label(manifest, store, prov, config.has_emotion, limit, retry_failed)
    log.info("label: %d clips to label, %d already labelled", len(pending), counts["skipped"])
    if not pending:
        return counts

    # one code path: locally one worker (this process, --workers decode threads); on Ray one actor
    # per worker, each building the models once and writing its own manifest parts
    local = engine == "local"
    stage = LabelStage(config, data_root, options, decode_threads=(workers or 1) if local else 1,
                       gpus_per_worker=gpus_per_worker, threads=cores() if local else 1)
    for row in run_stage(stage, pending, engine=engine, workers=1 if local else workers, address=address,
                         manifest=manifest, data_root=None if local else data_root, desc="label",
                         total=len(pending), progress=progress):
        counts["labelled" if row["status"] == "ok" else "failed"] += 1
        counts["crashed"] += is_system_failure(row)
    compact(manifest, "clips")
    return counts
