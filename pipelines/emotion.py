"""``c98k emotion``: embed a labelled music-emotion data set, train the ``gems-head``, cross-validate it.

Composition only: the work is ``commercial98k.label.emotion_training``; this module saves the
head and builds the report.
"""

from __future__ import annotations

from pathlib import Path

from commercial98k.label.emotion_training import (
    DEFAULT_CACHE,
    CVResult,
    cross_validate,
    cv_metrics,
    fit,
    format_table,
    plot_shares,
    prepare,
    window_frames_for,
)
from commercial98k.models.emotion_head import GemsHead

__all__ = ["DEFAULT_CACHE", "evaluate", "train"]


def train(dataset_name: str, path: str | Path, audio_model: str, out: str | Path, seconds: float | None = 30.0,
          device: str = "cpu", cache_dir: str | Path = DEFAULT_CACHE, seed: int = 0,
          excerpt: tuple[float, float] | None = None) -> GemsHead:
    """``c98k emotion train``: embed the data set, fit the head on all of it, save it atomically."""
    dataset, seqs, model = prepare(dataset_name, path, audio_model, device, cache_dir, excerpt=excerpt)
    meta = {"dataset": dataset_name, "audio_model_name": audio_model, "window_s": seconds,
            "hop_s": float(model.hop_s), "excerpt": list(excerpt) if excerpt else None}
    head = fit(dataset, seqs, model.info.tag(), window_frames_for(seconds, model.hop_s), seed, meta)
    head.save(out)
    return head


def evaluate(dataset_name: str, path: str | Path, audio_model: str, seconds: float | None = 30.0,
             n_folds: int = 5, seed: int = 0, device: str = "cpu", cache_dir: str | Path = DEFAULT_CACHE,
             plot: str | Path | None = None, excerpt: tuple[float, float] | None = None) -> tuple[CVResult, str]:
    """``c98k emotion evaluate``: CV report (table text) and optional PNG plot."""
    dataset, seqs, model = prepare(dataset_name, path, audio_model, device, cache_dir, excerpt=excerpt)
    res = cross_validate(dataset, seqs, model.info.tag(), window_frames_for(seconds, model.hop_s), n_folds, seed)
    table = format_table(cv_metrics(res))
    if plot and res.probs:
        plot_shares(res, plot)
    return res, table
