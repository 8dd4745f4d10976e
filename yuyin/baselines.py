"""Baselines and ablations in one harness: same shards, same seed, same evaluation, one table.

Methods (``METHODS``):

* ``cca``: linear CCA (scikit-learn) between mean-pooled frame features and mean-pooled audio +
  emotion features, after standardisation and PCA fitted on the training split.
* ``cbvmr``: a two-branch model (per-step MLP + mean pooling on each side) trained with a
  bidirectional hardest-negative triplet loss, after Hong et al.'s CBVMR.
* ``contrastive``: the YuYin encoders with InfoNCE on video-music only: no emotion, tags or category.
* ``yuyin``: the full model; ``yuyin-no-wfm`` (audio and emotion concatenated and projected),
  ``yuyin-no-emotion`` (audio only), ``yuyin-no-tags``, ``yuyin-no-category``, and one contrastive pair
  removed each (``yuyin-no-video-music``, ``yuyin-no-video-tag``, ``yuyin-no-music-tag``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from commercial98k.storage.files import atomic_write_bytes, atomic_write_json

from .evaluate import KS, embed_batches, retrieval_metrics
from .train import TrainConfig, Trainer

#: method -> (model overrides, loss-weight overrides, loss kind)
NEURAL: dict[str, tuple[dict[str, Any], dict[str, float], str]] = {
    "cbvmr": ({"video_encoder": "mean", "music_encoder": "mean", "use_emotion": False, "use_tags": False,
               "use_category": False}, {"video_tag": 0.0, "music_tag": 0.0, "category": 0.0}, "triplet"),
    "contrastive": ({"use_emotion": False, "use_tags": False, "use_category": False},
                    {"video_tag": 0.0, "music_tag": 0.0, "category": 0.0}, "infonce"),
    "yuyin": ({}, {}, "infonce"),
    "yuyin-no-wfm": ({"use_wfm": False, "fusion": "concat"}, {}, "infonce"),
    "yuyin-no-emotion": ({"use_emotion": False}, {}, "infonce"),
    "yuyin-no-tags": ({"use_tags": False}, {"video_tag": 0.0, "music_tag": 0.0}, "infonce"),
    "yuyin-no-category": ({"use_category": False}, {"category": 0.0}, "infonce"),
    "yuyin-no-video-music": ({}, {"video_music": 0.0}, "infonce"),
    "yuyin-no-video-tag": ({}, {"video_tag": 0.0}, "infonce"),
    "yuyin-no-music-tag": ({}, {"music_tag": 0.0}, "infonce"),
}
METHODS = ("cca", *NEURAL)


def _pooled(batches: Any) -> dict[str, Any]:
    """Mean-pooled frames, audio (+ emotion) and ids of every clip in ``batches``."""
    video, music, mids, cats = [], [], [], []
    for b in batches:
        fm, am = b["frames_mask"].unsqueeze(-1).float(), b["audio_mask"].unsqueeze(-1).float()
        video.append(((b["frames"] * fm).sum(1) / fm.sum(1).clamp_min(1)).numpy())
        audio = ((b["audio"] * am).sum(1) / am.sum(1).clamp_min(1)).numpy()
        music.append(np.concatenate([audio, b["emotion"].numpy()], 1))
        mids += list(b["music_id"])
        cats += [int(c) for c in b["category"]]
    return {"video": np.concatenate(video), "music": np.concatenate(music), "music_id": mids, "category": cats}


class CCABaseline:
    """Standardise -> PCA -> CCA on mean-pooled features; embeddings are the L2-normalised CCA scores."""

    def __init__(self, n_components: int = 16, pca_dim: int = 64, seed: int = 0):
        self.n_components, self.pca_dim, self.seed = n_components, pca_dim, seed

    def fit(self, video: np.ndarray, music: np.ndarray) -> CCABaseline:
        from sklearn.cross_decomposition import CCA
        from sklearn.decomposition import PCA
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        n = len(video)
        k_v, k_m = (min(self.pca_dim, x.shape[1], n - 1) for x in (video, music))
        self.pre_v = make_pipeline(StandardScaler(), PCA(k_v, random_state=self.seed)).fit(video)
        self.pre_m = make_pipeline(StandardScaler(), PCA(k_m, random_state=self.seed)).fit(music)
        self.cca = CCA(min(self.n_components, k_v, k_m), max_iter=2000)
        self.cca.fit(self.pre_v.transform(video), self.pre_m.transform(music))
        return self

    def embed(self, video: np.ndarray, music: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v, m = self.cca.transform(self.pre_v.transform(video), self.pre_m.transform(music))

        def norm(x: np.ndarray) -> np.ndarray:
            return (x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)

        return norm(v), norm(m)


def method_config(method: str, base: TrainConfig, out_dir: str | os.PathLike) -> TrainConfig:
    """``base`` with the model/loss changes of a neural ``method`` and its own checkpoint folder."""
    if method not in NEURAL:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    model_over, weight_over, kind = NEURAL[method]
    weights = dataclasses.replace(base.weights, **weight_over)
    return dataclasses.replace(base, model={**base.model, **model_over}, weights=weights, loss=kind,
                               checkpoint_dir=str(Path(out_dir) / method))


def _loader(cfg: TrainConfig, split: str) -> Any:
    from .data import make_loader

    return make_loader(cfg.shards, split, 64, shuffle=False, drop_last=False, max_frames=cfg.max_frames,
                       max_audio=cfg.max_audio, max_tags=cfg.max_tags)


def run_method(method: str, base: TrainConfig, out_dir: str | os.PathLike, split: str = "test") -> dict[str, Any]:
    """Train (or fit) one method on the train split and evaluate it on ``split``."""
    start = time.perf_counter()
    if method == "cca":
        train = _pooled(_loader(base, "train"))
        test = _pooled(_loader(base, split))
        model = CCABaseline(seed=base.seed).fit(train["video"], train["music"])
        video, music = model.embed(test["video"], test["music"])
        mids, steps = test["music_id"], 0
    else:
        cfg = method_config(method, base, out_dir)
        trainer = Trainer(cfg)
        trainer.fit()
        emb = embed_batches(trainer.model, _loader(cfg, split), trainer.device, progress=False)
        video, music, mids, steps = emb["video"], emb["music"], emb["music_id"], cfg.steps
    report = retrieval_metrics(video, music, mids)
    report.update(method=method, steps=steps, train_s=time.perf_counter() - start, split=split)
    return report


def run_benchmark(base: TrainConfig, out_dir: str | os.PathLike, methods: tuple[str, ...] = METHODS,
                  split: str = "test") -> list[dict[str, Any]]:
    """Run ``methods`` on the same shards and seed; write ``benchmark.md``/``.csv``/``.json`` to ``out_dir``."""
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}")
    out_dir = Path(out_dir)
    reports = [run_method(m, base, out_dir, split) for m in methods]
    rows = [table_row(r) for r in reports]
    atomic_write_json(out_dir / "benchmark.json", reports)
    atomic_write_bytes(out_dir / "benchmark.csv", _csv(rows).encode("utf-8"))
    atomic_write_bytes(out_dir / "benchmark.md", benchmark_markdown(rows, reports).encode("utf-8"))
    return reports


def table_row(report: dict[str, Any]) -> dict[str, Any]:
    """One flat table row: v2m R@K, MedR, MeanR, m2v R@10 and MedR, training time."""
    row: dict[str, Any] = {"method": report["method"]}
    row.update({f"v2m_R@{k}": round(report["v2m"][f"R@{k}"], 4) for k in KS})
    row.update({"v2m_MedR": report["v2m"]["median_rank"], "v2m_MeanR": round(report["v2m"]["mean_rank"], 2),
                "m2v_R@10": round(report["m2v"]["R@10"], 4), "m2v_MedR": report["m2v"]["median_rank"],
                "steps": report["steps"], "train_s": round(report["train_s"], 1)})
    return row


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def benchmark_markdown(rows: list[dict[str, Any]], reports: list[dict[str, Any]]) -> str:
    """The benchmark table in Markdown, with the random ranker's expected v2m scores as the last row."""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    rnd = reports[0]["random"]
    cells = {"method": "random (expected)", **{f"v2m_R@{k}": round(rnd["v2m"][f"R@{k}"], 4) for k in KS},
             "v2m_MedR": rnd["v2m"]["median_rank"], "v2m_MeanR": round(rnd["v2m"]["mean_rank"], 2),
             "m2v_R@10": round(rnd["m2v"]["R@10"], 4), "m2v_MedR": rnd["m2v"]["median_rank"]}
    lines.append("| " + " | ".join(str(cells.get(c, "")) for c in cols) + " |")
    first = reports[0]
    head = (f"Split `{first['split']}`: {first['clips']} clips, {first['tracks']} unique tracks; "
            f"every method trained on the same shards with the same seed.\n\n")
    return head + "\n".join(lines) + "\n"
