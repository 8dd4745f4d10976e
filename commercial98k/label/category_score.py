"""One calibrated category distribution from all the evidence a clip has.

Evidence kinds (``EVIDENCE``), each a distribution over the taxonomy or absent:

* ``page_text``: the zero-shot text match of title, description and platform tags;
* ``ocr``: the same text match on the clip's on-screen text (``ocr_text``);
* ``visual``: what the frames show (``label.visual``: ImageNet classes mapped to categories, or
  CLIP zero-shot prompts).

They are combined as a weighted product of experts: ``log p(c) = sum_e w_e log p_e(c) + const``
over the evidence present (a clip with no evidence gets the uniform distribution). The weights
``w_e`` act as per-evidence temperatures; ``fit_calibration`` chooses them by minimising the
negative log-likelihood of the true categories of a labelled set, which calibrates the result
(a confidence of 0.7 is right about 70 % of the time on data like it). ``expected_calibration_error``
measures that (top-1 confidence, equal-width bins).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..fsutil import atomic_write_json

EVIDENCE = ("page_text", "ocr", "visual")
FLOOR = 1e-4  # smallest probability an expert may give (a single expert cannot veto a category)
DEFAULT_CALIBRATION = Path(__file__).resolve().parent.parent / "data" / "category_calibration.json"


@dataclass
class CategoryCalibration:
    """Per-evidence weights of the product of experts (1.0 each: uncalibrated)."""

    weights: dict[str, float] = field(default_factory=lambda: {e: 1.0 for e in EVIDENCE})
    fitted_on: str = ""
    ece_before: float | None = None
    ece_after: float | None = None

    def save(self, path: str | Path) -> Path:
        atomic_write_json(Path(path), asdict(self))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path | None = None) -> CategoryCalibration:
        """A calibration file; the bundled one when ``path`` is None (uncalibrated if it is absent)."""
        p = Path(path) if path else DEFAULT_CALIBRATION
        if not p.is_file():
            if path:
                raise FileNotFoundError(f"{p}: no category calibration file")
            return cls()
        doc = json.loads(p.read_text(encoding="utf-8"))
        return cls(weights={e: float(doc.get("weights", {}).get(e, 1.0)) for e in EVIDENCE},
                   fitted_on=str(doc.get("fitted_on", "")), ece_before=doc.get("ece_before"),
                   ece_after=doc.get("ece_after"))

    def tag(self) -> str:
        return ",".join(f"{e}={self.weights.get(e, 1.0):.3g}" for e in EVIDENCE)


def _logits(evidence: dict[str, np.ndarray | None], weights: dict[str, float], n: int) -> tuple[np.ndarray, list[str]]:
    logit = np.zeros(n)
    present = []
    for e in EVIDENCE:
        p = evidence.get(e)
        if p is None:
            continue
        p = np.asarray(p, np.float64)
        if p.shape != (n,) or not np.isfinite(p).all():
            continue
        present.append(e)
        logit += weights.get(e, 1.0) * np.log(np.clip(p / max(p.sum(), 1e-12), FLOOR, None))
    return logit, present


def combine(evidence: dict[str, np.ndarray | None], n_categories: int,
            calibration: CategoryCalibration | None = None) -> tuple[np.ndarray, list[str]]:
    """(calibrated distribution ``[C]`` summing to 1, the evidence kinds present)."""
    weights = (calibration or CategoryCalibration()).weights
    logit, present = _logits(evidence, weights, n_categories)
    p = np.exp(logit - logit.max())
    return p / p.sum(), present


def fit_calibration(evidence: list[dict[str, np.ndarray | None]], labels: list[int], n_categories: int,
                    l2: float = 1e-3) -> CategoryCalibration:
    """Weights minimising the mean NLL of ``labels`` (category indices) under ``combine``."""
    from scipy.optimize import minimize

    feats = np.zeros((len(evidence), len(EVIDENCE), n_categories))
    for i, ev in enumerate(evidence):
        for j, e in enumerate(EVIDENCE):
            p = ev.get(e)
            if p is not None:
                p = np.asarray(p, np.float64)
                feats[i, j] = np.log(np.clip(p / max(p.sum(), 1e-12), FLOOR, None))
    y = np.asarray(labels)

    def loss(theta: np.ndarray) -> float:
        w = np.exp(theta)
        logit = np.einsum("j,ijc->ic", w, feats)
        logit -= logit.max(axis=1, keepdims=True)
        logz = np.log(np.exp(logit).sum(axis=1))
        return float(np.mean(logz - logit[np.arange(len(y)), y]) + l2 * np.sum(theta ** 2))

    res = minimize(loss, np.zeros(len(EVIDENCE)), method="L-BFGS-B", bounds=[(-5.0, 3.0)] * len(EVIDENCE))
    return CategoryCalibration(weights={e: float(np.exp(t)) for e, t in zip(EVIDENCE, res.x, strict=True)})


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Top-1 ECE: sum over confidence bins of |accuracy - confidence| weighted by the bin's share."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    if len(probs) == 0:
        return float("nan")
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    correct = (pred == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose true label is among the ``k`` most probable."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    if len(probs) == 0:
        return float("nan")
    top = np.argsort(-probs, axis=1)[:, :k]
    return float(np.mean([labels[i] in top[i] for i in range(len(labels))]))
