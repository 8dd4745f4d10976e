"""The ``c98k label`` stage: embeddings, music tags, emotion, text tags and category confidence per clip.

Reads ``manifests/c98k.parquet`` and labels every ``ok`` clip that lacks features of the
chosen models: audio-embedding sequence (``features/audio``), frame embeddings at
``frame_fps`` (``features/frames``), tag text embeddings aligned with the ``tags`` column
(``features/tags``), music tags from the audio model's tagger, emotion from the emotion head,
and ``category_probs`` / ``predicted_category`` / ``category_confidence`` from the calibrated
fusion of page text, on-screen text (OCR) and frames (``commercial98k.label.category``). Updated rows
go through ``ManifestWriter`` (same ``clip_id``, newer row wins) with the provenance columns
``audio_model``, ``frame_model``, ``text_model``, ``emotion_model``.

Resumable: a clip is skipped when its feature files exist and its provenance matches the
models of this run. One code path for both engines (``commercial98k.label.stage.LabelStage`` run
by ``engine.runner.run_stage``): clips are labelled in batches (frames and texts of several clips
go through the models together); locally in this process with media decoded by ``workers``
threads, on Ray by ``workers`` actors that each build the models once and write their own
manifest parts.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

from commercial98k.engine.runner import WorkerParts, executor_for, run_stage
from commercial98k.faults import label_bytes, require_free
from commercial98k.label.batch import LabelOptions
from commercial98k.label.extractors import LabelConfig
from commercial98k.label.plan import plan_label
from commercial98k.label.stage import LabelStage, label_provenance
from commercial98k.manifest.io import compact, manifest_exists, read_manifest
from commercial98k.manifest.lock import stage_writes
from commercial98k.storage.feature_store import FeatureStore
from commercial98k.storage.files import DataRoot

__all__ = ["LabelOptions", "run_label"]

log = logging.getLogger(__name__)


def run_label(manifest: str | os.PathLike, data_root: str | os.PathLike, config: LabelConfig | None = None,
              options: LabelOptions | None = None, *, workers: int | None = 1, engine: str = "local",
              address: str | None = None, limit: int | None = None, progress: bool | None = None,
              retry_failed: bool = False, gpus_per_worker: float = 0.0, wait: bool = False,
              on_wait=None) -> Counter:
    """Label the pending clips of ``manifest``; returns counts (``labelled``, ``failed``, ``skipped``,
    ``not_ok``, ``failed_before``: label failures left alone without ``retry_failed``,
    ``crashed``: failed because a Ray worker crashed or was killed).

    The manifest's lock is held throughout (``ManifestLocked`` when another process writes it,
    unless ``wait``); a machine fault stops the run as one ``EnvironmentFault`` (nothing failed)."""
    if not manifest_exists(manifest):
        read_manifest(manifest, "clips")  # the usual one-line error
    with stage_writes(manifest, data_root, wait=wait, on_wait=on_wait):
        return _run_label(manifest, DataRoot(data_root).root, config or LabelConfig(), options or LabelOptions(),
                          workers, engine, address, limit, progress, retry_failed, gpus_per_worker)


def _run_label(manifest: str | os.PathLike, data_root: Path, config: LabelConfig, options: LabelOptions,
               workers: int | None, engine: str, address: str | None, limit: int | None, progress: bool | None,
               retry_failed: bool, gpus_per_worker: float) -> Counter:
    # one code path: locally one worker (this process, --workers decode threads); on Ray one actor
    # per worker, each building the models once and writing its own manifest parts
    local = engine == "local"
    stage = LabelStage(config, data_root, options, decode_threads=(workers or 1) if local else 1,
                       gpus_per_worker=gpus_per_worker)
    executor = executor_for(engine, workers=1 if local else workers, address=address,
                            data_root=None if local else data_root)
    with executor:
        # builds the models where the workers run (on Ray in one cluster task): fails early with a clear error
        prov = label_provenance(stage, executor)
        pending, counts = plan_label(manifest, FeatureStore(data_root), prov, config.has_emotion, limit, retry_failed)
        log.info("label: %d clips to label, %d already labelled", len(pending), counts["skipped"])
        if not pending:
            return counts
        require_free(data_root, label_bytes(pending), f"label ({len(pending)} clips)", "--data-root")
        result = run_stage(stage, pending, executor=executor, sink=WorkerParts(manifest, "clips"), desc="label",
                           progress=progress)
    compact(manifest, "clips")
    counts["labelled"] += result.counts["ok"]
    counts["failed"] += sum(n for status, n in result.counts.items() if status != "ok")
    counts["crashed"] += result.crashed
    return counts
