"""``gems-head``: music emotion (GEMS-9 distribution + valence/arousal) from audio embeddings.

Model
-----
An audio embedding sequence ``[T, D]`` (from an ``AUDIO`` model) is cut into windows of
``window_s`` seconds (half-overlapping; a shorter sequence is one window). Each window is pooled
to ``[mean, std]`` over time (``2D`` features) and standardised with the training statistics.

* **GEMS-9 distribution**: multinomial logistic regression (softmax) trained by L-BFGS on the
  cross-entropy to the *soft* human vote distribution, with an L2 penalty chosen by repeated
  grouped inner cross-validation (windows of one track never straddle folds). Window probabilities
  are averaged per clip; ``emotion`` is the argmax class.
* **Valence/arousal**: on a data set with VA labels (PMEmo, DEAM) a ridge regression trained
  the same way. On Emotify (GEMS votes only) VA is the *expectation* of the circumplex
  coordinates below under the predicted GEMS distribution, clipped to [-1, 1]. A VA-only head
  reports the four circumplex quadrants as its discrete classes (``happy`` V+A+, ``tense``
  V-A+, ``sad`` V-A-, ``calm`` V+A-) with ``P(quadrant)`` from a Gaussian around the predicted
  point whose spread is the cross-validated residual error.

GEMS -> circumplex coordinates (valence, arousal) in [-1, 1]
-----------------------------------------------------------
=================  =======  =======  ==================================================
GEMS (Emotify)     valence  arousal  placement
=================  =======  =======  ==================================================
amazement (wonder)   0.6      0.5    positive, activating ("happy, amazed, dazzled")
solemnity (transc.)  0.2     -0.1    mildly positive, neutral-low activation ("spiritual")
tenderness           0.6     -0.4    positive, low arousal ("affectionate, mellow")
nostalgia            0.1     -0.5    bittersweet: near-neutral valence, low arousal
calmness (peace)     0.5     -0.7    positive, lowest arousal ("relaxed, serene")
power                0.3      0.8    high arousal, mildly positive ("energetic, strong")
joyful_activation    0.8      0.7    highest valence, high arousal ("joyful, animated")
tension              -0.6     0.7    negative, high arousal ("nervous, agitated")
sadness              -0.7    -0.5    most negative, low arousal ("sad, sorrowful")
=================  =======  =======  ==================================================

Rationale: Zentner, Grandjean & Scherer (2008, *Emotion* 8(4)) derive GEMS and group its
factors into Sublimity (wonder, transcendence, tenderness, nostalgia, peacefulness), Vitality
(power, joyful activation) and Unease (tension, sadness), and show that these map onto, but
are not reducible to, Russell's (1980) valence x arousal circumplex. Trost et al. (2012,
*Cerebral Cortex* 22(12)) rated the nine GEMS on arousal and valence: vitality emotions load
high on arousal, sublimity emotions low, unease emotions negative on valence, tension the
most arousing unease emotion. The numbers follow that ordering and Russell's placement of the
adjectives that define each GEMS scale; they are a documented convention (not fitted), so a
derived VA is comparable across clips but not calibrated to a VA data set.

Head file (``.npz``, numpy only, no pickle, written atomically with fixed zip timestamps so
the same training gives the same bytes): classes, the audio model's ``ModelInfo.tag()`` and
dimension, window length in frames, standardisation, softmax weights, VA parameters, and a
JSON ``meta`` (data set, items, hyper-parameters, seed).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, ndtr, softmax
from threadpoolctl import threadpool_limits

from commercial98k.errors import C98kError, error_line
from commercial98k.label.gems import GEMS9, emotion_vector
from commercial98k.models.registry import EMOTION, ModelInfo
from commercial98k.models.weights import WeightsUnavailable
from commercial98k.storage.files import atomic_write_bytes, sha256_bytes, sha256_file

VERSION = "1.0"
FORMAT = 1
GEMS_VA: dict[str, tuple[float, float]] = {
    "amazement": (0.6, 0.5), "solemnity": (0.2, -0.1), "tenderness": (0.6, -0.4),
    "nostalgia": (0.1, -0.5), "calmness": (0.5, -0.7), "power": (0.3, 0.8),
    "joyful_activation": (0.8, 0.7), "tension": (-0.6, 0.7), "sadness": (-0.7, -0.5),
}
QUADRANTS = ("happy", "tense", "sad", "calm")
L2_GRID = tuple(float(x) for x in np.logspace(-2, 2, 13))
BUNDLED = Path(__file__).resolve().parent.parent / "data" / "emotion_gems_musicnn.npz"
REBUILD = ("c98k emotion train --dataset emotify --path ../shared/media/emotify --audio-model musicnn "
           "--excerpt 20:20 --seconds 20 --out commercial98k/data/emotion_gems_musicnn.npz")


class EmotionHeadError(C98kError, ValueError):
    """Embeddings the head cannot take (other model or dimension), or a bad head file."""


def va_of_gems(probs: np.ndarray, classes=GEMS9) -> np.ndarray:
    """Expected circumplex (valence, arousal) of GEMS distributions ``[..., K]`` -> ``[..., 2]``."""
    coords = np.array([GEMS_VA[c] for c in classes], dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    return np.clip((p / p.sum(axis=-1, keepdims=True)) @ coords, -1.0, 1.0)


def pool(seq: np.ndarray) -> np.ndarray:
    """``[T, D]`` -> ``[2D]``: mean and standard deviation over time."""
    seq = np.asarray(seq, dtype=np.float64)
    return np.concatenate([seq.mean(axis=0), seq.std(axis=0)])


def window_starts(n_frames: int, window_frames: int) -> list[int]:
    """Half-overlapping window starts covering ``n_frames`` (one window if it is short)."""
    if window_frames <= 0 or n_frames <= window_frames:
        return [0]
    hop = max(1, window_frames // 2)
    starts = list(range(0, n_frames - window_frames + 1, hop))
    if starts[-1] != n_frames - window_frames:
        starts.append(n_frames - window_frames)
    return starts


def window_features(seq: np.ndarray, window_frames: int) -> np.ndarray:
    """Pooled features of each window of ``seq``: ``[W, 2D]``."""
    w = window_frames if window_frames > 0 else len(seq)
    return np.stack([pool(seq[s:s + w]) for s in window_starts(len(seq), window_frames)])


# ---- fitting -------------------------------------------------------------------------------


def fit_softmax(x: np.ndarray, p: np.ndarray, w: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression on soft targets: min sum_i w_i CE(p_i, q_i) / sum w + l2/2 |W|^2.

    With fewer rows than features the optimum lies in the row space of ``x``, so it is solved
    exactly in the SVD basis (``W = V B``) and mapped back.
    """
    n, f = x.shape
    if n < f:
        u, s, vt = np.linalg.svd(x, full_matrices=False)
        b_weights, bias = fit_softmax(u * s, p, w, l2)
        return vt.T @ b_weights, bias
    k = p.shape[1]
    wn = (w / w.sum())[:, None]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = theta[: f * k].reshape(f, k), theta[f * k:]
        logq = log_softmax(x @ weights + bias, axis=1)
        err = wn * (np.exp(logq) - p)
        value = -float((wn * p * logq).sum()) + 0.5 * l2 * float((weights ** 2).sum())
        grad = np.concatenate([(x.T @ err + l2 * weights).ravel(), err.sum(axis=0)])
        return value, grad

    res = minimize(loss, np.zeros(f * k + k), jac=True, method="L-BFGS-B", options={"maxiter": 1000})
    return res.x[: f * k].reshape(f, k), res.x[f * k:]


def fit_ridge(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted ridge: min sum_i w_i |y_i - x_i W - b|^2 / sum w + l2 |W|^2 (scikit-learn ``Ridge``)."""
    from sklearn.linear_model import Ridge

    model = Ridge(alpha=l2, fit_intercept=True).fit(x, y, sample_weight=w / w.sum())
    return np.asarray(model.coef_, np.float64).T, np.asarray(model.intercept_, np.float64)


def group_folds(groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index per row; all rows of a group share a fold (scikit-learn ``GroupKFold``, shuffled)."""
    from sklearn.model_selection import GroupKFold

    folds = np.zeros(len(groups), dtype=int)
    splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(groups)), groups=groups)):
        folds[test] = k
    return folds


def _select_l2(fit, predict, loss, x, y, w, groups, grid, seed, n_folds=5, repeats=3) -> tuple[float, np.ndarray]:
    """Pick the penalty with the lowest grouped-CV loss, averaged over ``repeats`` fold draws
    (small data sets make one draw noisy); return it and its out-of-fold predictions (first draw)."""
    n_folds = min(n_folds, len(np.unique(groups)))
    draws = [group_folds(groups, n_folds, seed + r) for r in range(repeats if len(grid) > 1 else 1)]
    best: tuple[float, float, np.ndarray] | None = None
    for l2 in grid:
        score, first = 0.0, None
        for folds in draws:
            oof = np.zeros_like(y, dtype=np.float64)
            for k in np.unique(folds):
                tr, va = folds != k, folds == k
                oof[va] = predict(fit(x[tr], y[tr], w[tr], l2), x[va])
            score += loss(y, oof, w)
            first = oof if first is None else first
        if best is None or score < best[0] - 1e-12:
            best = (score, l2, first)
    return best[1], best[2]


def _ce(p, q, w):
    return float(np.average(-(p * np.log(np.clip(q, 1e-12, None))).sum(axis=1), weights=w))


def _mse(y, yhat, w):
    return float(np.average(((y - yhat) ** 2).sum(axis=1), weights=w))


# ---- the head ------------------------------------------------------------------------------


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``.npz`` bytes without pickles, deterministic (fixed zip timestamps, sorted members): the
    same arrays give the same bytes, so a file's sha256 names its content."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in sorted(arrays.items()):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arr), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue(),
                        compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()



@dataclass
class GemsHead:
    """A trained emotion head; see the module docstring. Build with ``train_head`` or ``load``."""

    classes: tuple[str, ...]
    audio_model: str  # ModelInfo.tag() of the audio model it was trained on
    audio_dim: int
    window_frames: int
    feat_mean: np.ndarray
    feat_std: np.ndarray
    weight: np.ndarray | None  # [2D, K] softmax (None: VA-only head)
    bias: np.ndarray | None
    va_weight: np.ndarray | None  # [2D, 2] ridge (None: circumplex VA)
    va_bias: np.ndarray | None
    va_sigma: np.ndarray | None  # [2] CV residual std of the ridge
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    file_sha256: str | None = field(default=None, repr=False)  # of the file it was loaded from / saved to

    # -- serialisation
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"format": np.array(FORMAT), "classes": np.array(self.classes, dtype=str),
                  "audio_model": np.array(self.audio_model), "audio_dim": np.array(self.audio_dim),
                  "window_frames": np.array(self.window_frames), "feat_mean": self.feat_mean,
                  "feat_std": self.feat_std, "meta": np.array(json.dumps(self.meta, sort_keys=True))}
        for name in ("weight", "bias", "va_weight", "va_bias", "va_sigma"):
            if getattr(self, name) is not None:
                arrays[name] = np.asarray(getattr(self, name), dtype=np.float64)
        return arrays

    def to_bytes(self) -> bytes:
        """The ``.npz`` bytes: deterministic (``npz_bytes``)."""
        return npz_bytes(self._arrays())

    def save(self, path: str | Path) -> Path:
        """Write the head atomically; returns the path."""
        path, data = Path(path), self.to_bytes()
        atomic_write_bytes(path, data)
        self.path, self.file_sha256 = path, sha256_bytes(data)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GemsHead:
        """Read a head file written by ``save``."""
        path = Path(path)
        if not path.is_file():
            raise WeightsUnavailable(f"{path}: no emotion head file (rebuild: {REBUILD})")
        try:
            with np.load(path, allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
            if int(a["format"]) != FORMAT:
                raise EmotionHeadError(f"{path}: head format {int(a['format'])}, this code reads {FORMAT}")
            opt = {k: a.get(k) for k in ("weight", "bias", "va_weight", "va_bias", "va_sigma")}
            return cls(classes=tuple(str(c) for c in a["classes"]), audio_model=str(a["audio_model"]),
                       audio_dim=int(a["audio_dim"]), window_frames=int(a["window_frames"]),
                       feat_mean=a["feat_mean"], feat_std=a["feat_std"], meta=json.loads(str(a["meta"])),
                       path=path, file_sha256=sha256_file(path), **opt)
        except (KeyError, ValueError, zipfile.BadZipFile, OSError) as e:
            if isinstance(e, EmotionHeadError):
                raise
            raise EmotionHeadError(f"{path}: not an emotion head file ({error_line(e)})") from e

    @property
    def info(self) -> ModelInfo:
        """Provenance: the sha256 of the head file (of its bytes if it was never saved)."""
        return ModelInfo("gems-head", VERSION, self.file_sha256 or sha256_bytes(self.to_bytes()))

    # -- inference
    def check_audio_model(self, audio_model: str | ModelInfo) -> None:
        """Refuse embeddings of another audio model (compares ``ModelInfo.tag()``)."""
        tag = audio_model.tag() if isinstance(audio_model, ModelInfo) else str(audio_model)
        if tag != self.audio_model:
            raise EmotionHeadError(f"emotion head {self.path or '(in memory)'} was trained on audio model "
                                   f"{self.audio_model!r}, not {tag!r}; retrain it with `c98k emotion train`")

    def check_sequence(self, seq: np.ndarray) -> np.ndarray:
        """``seq`` as float64 ``[T, D]``, refused (``EmotionHeadError``) when empty or of another dimension."""
        seq = np.asarray(seq, dtype=np.float64)
        if seq.ndim != 2 or seq.shape[0] == 0:
            raise EmotionHeadError(f"audio embedding must be [T, D] with T > 0, got shape {seq.shape}")
        if seq.shape[1] != self.audio_dim:
            raise EmotionHeadError(f"audio embedding has dim {seq.shape[1]}, but emotion head "
                                   f"{self.path or '(in memory)'} expects dim {self.audio_dim} "
                                   f"({self.audio_model}); retrain it with `c98k emotion train`")
        return seq

    def predict_features(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pooled window features ``[N, 2D]`` -> (class probabilities ``[N, K]``, VA ``[N, 2]``)."""
        z = (np.asarray(feats, dtype=np.float64) - self.feat_mean) / self.feat_std
        va = None
        if self.va_weight is not None:
            va = np.clip(z @ self.va_weight + self.va_bias, -1.0, 1.0)
        if self.weight is not None:
            probs = softmax(z @ self.weight + self.bias, axis=1)
            if va is None:
                va = va_of_gems(probs, self.classes)
        else:  # VA-only: quadrant probabilities under a Gaussian around the predicted point
            pv, pa = ndtr(va[:, 0] / self.va_sigma[0]), ndtr(va[:, 1] / self.va_sigma[1])
            probs = np.stack([pv * pa, (1 - pv) * pa, (1 - pv) * (1 - pa), pv * (1 - pa)], axis=1)
        return probs, va

    def predict(self, audio_seq: np.ndarray, audio_model: str | ModelInfo | None = None) -> dict[str, Any]:
        """``[T, D]`` embeddings -> ``dict(valence, arousal, emotion, probs)`` (windows averaged)."""
        if audio_model is not None:
            self.check_audio_model(audio_model)
        probs, va = self.predict_features(window_features(self.check_sequence(audio_seq), self.window_frames))
        p, v = probs.mean(axis=0), va.mean(axis=0)
        return {"valence": float(v[0]), "arousal": float(v[1]), "emotion": self.classes[int(np.argmax(p))],
                "probs": {c: float(x) for c, x in zip(self.classes, p, strict=True)}}

    def predict_batch(self, audio_seqs: list[np.ndarray], audio_model: str | ModelInfo | None = None) -> list[dict]:
        """``predict`` for each sequence."""
        return [self.predict(s, audio_model) for s in audio_seqs]

    def to_vector(self, pred: dict[str, Any]) -> np.ndarray:
        """float32 ``[2 + K]``: valence, arousal, then the class probabilities (the shard layout)."""
        return emotion_vector(pred["valence"], pred["arousal"], pred["probs"], self.classes)


def train_head(sequences: list[np.ndarray], audio_model: str, *, gems: np.ndarray | None = None,
               va: np.ndarray | None = None, classes: tuple[str, ...] = GEMS9, window_frames: int = 0,
               seed: int = 0, l2: float | None = None, meta: dict[str, Any] | None = None) -> GemsHead:
    """Fit a head on per-item embedding sequences and their soft GEMS labels and/or VA labels.

    Every window of an item gets the item's label, weighted so each item counts once; the L2
    penalty (``l2=None``) is chosen from ``L2_GRID`` by 3 x 5-fold CV grouped by item (deterministic
    from ``seed``).
    BLAS runs single-threaded: the matrices are small and threads only add contention.
    """
    with threadpool_limits(1):
        return _train_head(sequences, audio_model, gems, va, classes, window_frames, seed, l2, meta)


def _train_head(sequences, audio_model, gems, va, classes, window_frames, seed, l2, meta) -> GemsHead:
    if gems is None and va is None:
        raise ValueError("train_head needs GEMS labels, VA labels or both")
    dims = {np.asarray(s).shape[1] for s in sequences}
    if len(dims) != 1:
        raise EmotionHeadError(f"embedding sequences have mixed dims {sorted(dims)}")
    per_item = [window_features(np.asarray(s, dtype=np.float64), window_frames) for s in sequences]
    x = np.concatenate(per_item)
    item = np.repeat(np.arange(len(per_item)), [len(f) for f in per_item])
    w = 1.0 / np.bincount(item)[item]
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    z = (x - mean) / std
    grid = (l2,) if l2 is not None else L2_GRID
    info: dict[str, Any] = {"seed": seed, "items": len(sequences), "windows": int(len(x)), **(meta or {})}
    weight = bias = va_weight = va_bias = va_sigma = None
    if gems is not None:
        if np.shape(gems) != (len(sequences), len(classes)):
            raise ValueError(f"gems labels have shape {np.shape(gems)}, expected ({len(sequences)}, {len(classes)})")
        p = np.asarray(gems, dtype=np.float64)[item]
        best, _ = _select_l2(fit_softmax, lambda m, xv: softmax(xv @ m[0] + m[1], axis=1), _ce, z, p, w, item,
                             grid, seed)
        weight, bias = fit_softmax(z, p, w, best)
        info["l2_gems"] = best
    if va is not None:
        y = np.asarray(va, dtype=np.float64)[item]
        best, oof = _select_l2(fit_ridge, lambda m, xv: xv @ m[0] + m[1], _mse, z, y, w, item, grid, seed)
        va_weight, va_bias = fit_ridge(z, y, w, best)
        va_sigma = np.maximum(np.sqrt(np.average((y - oof) ** 2, axis=0, weights=w)), 1e-3)
        info["l2_va"] = best
        if gems is None:
            classes = QUADRANTS
    return GemsHead(tuple(classes), audio_model, int(dims.pop()), int(window_frames), mean, std, weight, bias,
                    va_weight, va_bias, va_sigma, info)


@EMOTION.register("gems-head")
def _gems_head(path: str | Path | None = None, device: str = "cpu",
               audio_model: str | ModelInfo | None = None) -> GemsHead:
    """The emotion head in ``path`` (default: the bundled Emotify/musicnn head).

    ``device`` is accepted for a uniform model interface; the head runs in numpy. With
    ``audio_model``, refuse at once a head trained on another audio model.
    """
    head = GemsHead.load(path or BUNDLED)
    if audio_model is not None:
        head.check_audio_model(audio_model)
    return head
