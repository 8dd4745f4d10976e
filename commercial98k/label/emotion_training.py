"""Training data for the ``gems-head``: embed a labelled music-emotion data set, fit the head,
cross-validate it against reference predictors, and report (table, PNG plot).

Embeddings of each excerpt (the whole excerpt; windows are cut later from the sequence) are
cached in ``<cache_dir>/features/audio/<audio model key>/<dataset>-<item>.npy`` (a ``FeatureStore``)
so re-training with other hyper-parameters never decodes audio again. ``c98k emotion``
composes these.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import pearsonr
from sklearn.model_selection import KFold, StratifiedKFold
from tqdm import tqdm

from commercial98k.errors import error_line
from commercial98k.media.ffmpeg_io import MediaError, load_audio
from commercial98k.models.emotion_head import GemsHead, train_head, va_of_gems
from commercial98k.storage.feature_store import FeatureStore
from commercial98k.storage.files import atomic_path, safe_id

from ..models.registry import AUDIO
from .emotion_data import EmotionDataset, load_dataset

log = logging.getLogger(__name__)
DEFAULT_CACHE = "data/emotion_cache"


def item_key(dataset: EmotionDataset, i: int) -> str:
    """Cache id of item ``i``: data set, item id and span."""
    it = dataset[i]
    span = "" if it.start_s is None and it.duration_s is None else f"{it.start_s or 0:g}_{it.duration_s or 0:g}"
    return safe_id(dataset.name, it.item_id, span.replace(".", "p"))


def embed_dataset(dataset: EmotionDataset, model: Any, cache_dir: str | Path = DEFAULT_CACHE,
                  progress: bool = True) -> tuple[EmotionDataset, list[np.ndarray]]:
    """Embedding sequence ``[T, D]`` of every item (cached); items that fail are reported and dropped.

    Returns the data set restricted to the items that have embeddings, and their sequences.
    """
    store, key = FeatureStore(cache_dir), model.info.key()
    kept, seqs = [], []
    bar = tqdm(range(len(dataset)), desc=f"embed {dataset.name} ({model.info.name})", unit="item",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    for i in bar:
        it, rel = dataset[i], store.relpath("audio", key, item_key(dataset, i))
        try:
            if store.has(rel):
                seq = store.get(rel)
            else:
                audio = load_audio(it.audio_path, model.sample_rate, it.start_s, it.duration_s)
                seq = np.asarray(model.embed(audio), dtype=np.float32)
                store.put("audio", key, item_key(dataset, i), seq)
                seq = store.get(rel)  # the stored (float16) values, as the labeller sees them
        except (MediaError, ValueError, RuntimeError, OSError) as e:
            bar.write(f"error: {dataset.name}/{it.item_id}: {error_line(e)}", file=sys.stderr)
            continue
        kept.append(i)
        seqs.append(seq)
    if not seqs:
        raise RuntimeError(f"{dataset.name}: no item could be embedded")
    return dataset.subset(kept), seqs


def window_frames_for(seconds: float | None, hop_s: float) -> int:
    """Window length in embedding frames (0: whole sequence)."""
    return 0 if not seconds else max(1, round(seconds / hop_s))


def fit(dataset: EmotionDataset, seqs: list[np.ndarray], audio_tag: str, window_frames: int, seed: int = 0,
        meta: dict | None = None) -> GemsHead:
    """Train a head on a data set's labels (GEMS and/or VA, whatever it has)."""
    kwargs: dict[str, Any] = {}
    if dataset.has_gems:
        kwargs.update(gems=dataset.gems_matrix(), classes=dataset.classes)
    if dataset.has_va:
        kwargs["va"] = dataset.va_matrix()
    return train_head(seqs, audio_tag, window_frames=window_frames, seed=seed, meta=meta, **kwargs)


def with_excerpt(dataset: EmotionDataset, excerpt: tuple[float, float] | None) -> EmotionDataset:
    """The data set with every item cut to ``(start_s, seconds)`` (None: unchanged)."""
    if excerpt is None:
        return dataset
    items = [dataclasses.replace(it, start_s=float(excerpt[0]), duration_s=float(excerpt[1])) for it in dataset]
    return EmotionDataset(dataset.name, items, dataset.classes, dataset.root, dataset.source)


def prepare(dataset_name: str, path: str | Path, audio_model: str, device: str = "cpu",
            cache_dir: str | Path = DEFAULT_CACHE, progress: bool = True,
            excerpt: tuple[float, float] | None = None):
    """Load a data set, build the audio model and embed every item: ``(dataset, seqs, model)``."""
    dataset = with_excerpt(load_dataset(dataset_name, path), excerpt)
    model = AUDIO.create(audio_model, device=device)
    dataset, seqs = embed_dataset(dataset, model, cache_dir, progress)
    return dataset, seqs, model


# ---- cross-validation ----------------------------------------------------------------------


@dataclass
class CVResult:
    """Out-of-fold predictions of the head and of the reference predictors, one row per item."""

    dataset: EmotionDataset
    folds: np.ndarray  # [N] fold index
    probs: dict[str, np.ndarray]  # predictor -> [N, K] (GEMS data sets)
    va: dict[str, np.ndarray]  # predictor -> [N, 2]


def cv_folds(dataset: EmotionDataset, n_folds: int, seed: int) -> np.ndarray:
    """Fold per item: stratified by ``group`` (Emotify genre) when groups exist, else plain k-fold."""
    n, groups = len(dataset), dataset.groups()
    folds = np.zeros(n, dtype=int)
    has_groups = all(groups) and np.unique(groups, return_counts=True)[1].min() >= n_folds
    splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed) if has_groups else \
        KFold(n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(n), groups if has_groups else None)):
        folds[test] = k
    return folds


def cross_validate(dataset: EmotionDataset, seqs: list[np.ndarray], audio_tag: str, window_frames: int,
                   n_folds: int = 5, seed: int = 0, progress: bool = True) -> CVResult:
    """k-fold CV of the head against the training-fold mean (and, with groups, the per-group mean)."""
    folds = cv_folds(dataset, n_folds, seed)
    n = len(dataset)
    probs: dict[str, np.ndarray] = {}
    va: dict[str, np.ndarray] = {"head": np.zeros((n, 2)), "mean": np.zeros((n, 2))}
    groups = dataset.groups()
    use_groups = all(groups)
    if use_groups:
        va["group mean"] = np.zeros((n, 2))
    if dataset.has_gems:
        k = len(dataset.classes)
        probs = {name: np.zeros((n, k)) for name in va}
        target = dataset.gems_matrix()
    for f in tqdm(range(n_folds), desc="cross-validate", unit="fold", disable=not progress, file=sys.stderr):
        tr, te = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        head = fit(dataset.subset(tr), [seqs[i] for i in tr], audio_tag, window_frames, seed)
        for i in te:
            pred = head.predict(seqs[i])
            va["head"][i] = pred["valence"], pred["arousal"]
            if probs:
                probs["head"][i] = [pred["probs"][c] for c in dataset.classes]
        for name in va:
            if name == "head":
                continue
            for i in te:
                src = tr if name == "mean" else tr[groups[tr] == groups[i]]
                if probs:
                    probs[name][i] = target[src].mean(axis=0)
                    va[name][i] = va_of_gems(probs[name][i], dataset.classes)
                else:
                    va[name][i] = dataset.va_matrix()[src].mean(axis=0)
    return CVResult(dataset, folds, probs, va)


def human_va(dataset: EmotionDataset) -> np.ndarray:
    """Human VA: the labels, or (GEMS-only data) the circumplex expectation of the human votes."""
    return dataset.va_matrix() if dataset.has_va else va_of_gems(dataset.gems_matrix(), dataset.classes)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return 0.0
    return float(pearsonr(a, b)[0])


def cv_metrics(res: CVResult) -> list[tuple[str, str, dict[str, float]]]:
    """Rows ``(metric, better, {predictor: value})`` with better = "higher" or "lower"."""
    rows: list[tuple[str, str, dict[str, float]]] = []
    ds = res.dataset
    if res.probs:
        human = ds.gems_matrix()
        for j, c in enumerate(ds.classes):
            rows.append((f"r share {c}", "higher", {n: _pearson(p[:, j], human[:, j]) for n, p in res.probs.items()}))
        rows.append(("r share (mean of 9)", "higher",
                     {n: float(np.mean([r[2][n] for r in rows])) for n in res.probs}))
        h = np.clip(human, 1e-12, None)
        for n, p in res.probs.items():
            q = np.clip(p, 1e-12, None)
            _put(rows, "KL(human || pred)", "lower", n, float(np.mean((human * (np.log(h) - np.log(q))).sum(axis=1))))
            _put(rows, "cross-entropy", "lower", n, float(np.mean(-(human * np.log(q)).sum(axis=1))))
            _put(rows, "top-1 = majority emotion", "higher", n,
                 float(np.mean(p.argmax(axis=1) == human.argmax(axis=1))))
        human_spread = spread(human)
        for n, p in res.probs.items():
            _put(rows, "spread / human spread", "higher", n, spread(p) / human_spread if human_spread > 0 else 0.0)
            _put(rows, "distinct top-1 emotions", "higher", n, float(len(np.unique(p.argmax(axis=1)))))
    hva = human_va(ds)
    for j, name in enumerate(("valence", "arousal")):
        rows.append((f"r {name}", "higher", {n: _pearson(v[:, j], hva[:, j]) for n, v in res.va.items()}))
        rows.append((f"RMSE {name}", "lower",
                     {n: float(np.sqrt(np.mean((v[:, j] - hva[:, j]) ** 2))) for n, v in res.va.items()}))
    return rows


def spread(probs: np.ndarray) -> float:
    """How much distributions vary across items: the mean over classes of the std across items."""
    return float(np.asarray(probs, np.float64).std(axis=0).mean())


def _put(rows: list, metric: str, better: str, predictor: str, value: float) -> None:
    for m, _, vals in rows:
        if m == metric:
            vals[predictor] = value
            return
    rows.append((metric, better, {predictor: value}))


def format_table(rows: list[tuple[str, str, dict[str, float]]], ref: str = "mean") -> str:
    """Plain-text table: each metric for every predictor and the head/reference ratio."""
    names = list(rows[0][2])
    head = f"{'metric':<28}{'better':>7}" + "".join(f"{n:>12}" for n in names) + f"{'head/' + ref:>12}"
    lines = [head, "-" * len(head)]
    for metric, better, vals in rows:
        r = vals[ref]
        ratio = "n/a" if (better == "higher" and r <= 1e-3) or abs(r) < 1e-12 else f"{vals['head'] / r:.2f}x"
        lines.append(f"{metric:<28}{better:>7}" + "".join(f"{vals[n]:>12.3f}" for n in names) + f"{ratio:>12}")
    return "\n".join(lines)


def plot_shares(res: CVResult, path: str | Path) -> Path:
    """Scatter of predicted vs human vote share per emotion (out-of-fold), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds, human = res.dataset, res.dataset.gems_matrix()
    k = len(ds.classes)
    cols = 3
    fig, axes = plt.subplots((k + cols - 1) // cols, cols, figsize=(4 * cols, 3.6 * ((k + cols - 1) // cols)))
    groups = ds.groups()
    for j, (ax, c) in enumerate(zip(axes.ravel(), ds.classes, strict=False)):
        for g in sorted(set(groups)):
            m = groups == g
            ax.scatter(human[m, j], res.probs["head"][m, j], s=14, label=g or None)
        hi = max(human[:, j].max(), res.probs["head"][:, j].max()) * 1.05
        ax.plot([0, hi], [0, hi], "k:", lw=0.8)
        ax.set_title(f"{c}  r={_pearson(res.probs['head'][:, j], human[:, j]):.2f}", fontsize=10)
        ax.set_xlabel("human share")
        ax.set_ylabel("predicted")
    for ax in axes.ravel()[k:]:
        ax.axis("off")
    if any(groups):
        axes.ravel()[0].legend(fontsize=7)
    fig.suptitle(f"{ds.name}: gems-head out-of-fold predictions vs human vote shares")
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)  # also when saving fails: pyplot keeps every open figure alive
    return path
