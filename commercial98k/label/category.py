"""One calibrated category distribution from all the evidence a clip has.

Evidence kinds (``EVIDENCE``), each a distribution over the taxonomy or absent:

* ``page_text``: the zero-shot text match of title, description and platform tags;
* ``ocr``: the same text match on the clip's on-screen text (``ocr_text``);
* ``visual``: what the frames show (``label.visual``: ImageNet classes mapped to categories, or
  CLIP zero-shot prompts).
* ``brand``: brands of ``commercial98k/data/brands.json`` named in the on-screen text, page text or tags
  (``label.category.BrandMatcher``).

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

from commercial98k.storage.files import atomic_write_json

EVIDENCE = ("page_text", "ocr", "visual", "brand")
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


@dataclass
class CategoryResult:
    probs: np.ndarray  # [C], sums to 1
    present: list[str]  # evidence kinds used
    predicted_category: str | None
    category_confidence: float | None
    evidence: dict[str, list[float]] | None = None  # each present kind's own distribution


def category_result(ids: list[str], evidence: dict[str, np.ndarray | None], crawl: str | None,
                    calibration: CategoryCalibration | None = None) -> CategoryResult:
    """Calibrated distribution; confidence = P(crawl category), or P(predicted) without a crawl category.
    No evidence at all: no prediction (``None``)."""
    probs, present = combine(evidence, len(ids), calibration)
    if not present:
        return CategoryResult(probs, present, None, None)
    pred = ids[int(np.argmax(probs))]
    conf = float(probs[ids.index(crawl)]) if crawl in ids else float(probs.max())
    kept = {e: [float(x) for x in np.asarray(evidence[e], np.float64)] for e in present}
    return CategoryResult(probs, present, pred, conf, kept)


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
    # a kind no labelled clip has (``brand`` on clips labelled before it existed) is not fitted: it
    # keeps the default weight 1 instead of being saved as if fitted
    seen = [any(ev.get(e) is not None for ev in evidence) for e in EVIDENCE]
    return CategoryCalibration(weights={e: float(np.exp(t)) for e, t, s in zip(EVIDENCE, res.x, seen, strict=True)
                                        if s})


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


# ---- calibrating on a user's labels (a corrections file or a truth csv) ----

def row_evidence(row: dict) -> dict[str, np.ndarray]:
    """A manifest row's stored per-kind distributions (``category_evidence_probs``, dict or map pairs)."""
    ev = row.get("category_evidence_probs") or {}
    return {e: np.asarray(v, np.float64) for e, v in (ev if isinstance(ev, dict) else dict(ev)).items()
            if v is not None}


def row_probs(row: dict, ids: list[str]) -> np.ndarray:
    """A row's stored category distribution in ``ids`` order (one-hot prediction, else uniform, without one)."""
    p = row.get("category_probs") or {}
    p = p if isinstance(p, dict) else dict(p)
    if p:
        return np.asarray([p.get(c, 0.0) for c in ids], np.float64)
    out = np.full(len(ids), 1.0 / len(ids))
    if row.get("predicted_category") in ids:
        out[:] = 0.0
        out[ids.index(row["predicted_category"])] = 1.0
    return out


def cv_probs(evidence: list[dict], labels: np.ndarray, n: int, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold calibrated distributions (weights fitted on the other folds)."""
    fold = np.random.default_rng(seed).permutation(len(labels)) % folds
    probs = np.zeros((len(labels), n))
    for k in range(folds):
        tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        cal = fit_calibration([evidence[i] for i in tr], list(np.asarray(labels)[tr]), n)
        for i in te:
            probs[i] = combine(evidence[i], n, cal)[0]
    return probs


def calibrate_on(rows: list[dict], truth: dict[str, str], ids: list[str], source: str = "") -> CategoryCalibration:
    """Weights fitted on the rows whose ``clip_id`` has a true category in ``truth`` (and stored evidence).

    ``ece_before`` is the ECE of their stored distributions; ``ece_after`` that of the refitted
    weights out of sample (5-fold CV; in sample under 10 clips). Raises ``ValueError`` when no
    labelled row has evidence.
    """
    used = [r for r in rows if truth.get(r["clip_id"]) in ids and row_evidence(r)]
    if not used:
        raise ValueError(f"{source or 'the labels'}: no labelled clip has category evidence (run `c98k label` first)")
    labels = np.asarray([ids.index(truth[r["clip_id"]]) for r in used])
    evidence = [row_evidence(r) for r in used]
    cal = fit_calibration(evidence, list(labels), len(ids))
    after = cv_probs(evidence, labels, len(ids)) if len(used) >= 10 else \
        np.stack([combine(e, len(ids), cal)[0] for e in evidence])
    cal.fitted_on = (f"{len(used)} labelled clips" + (f" of {source}" if source else "")
                     + (" (ECE after: 5-fold out of sample)" if len(used) >= 10 else " (ECE after: in sample)"))
    cal.ece_before = expected_calibration_error(np.stack([row_probs(r, ids) for r in used]), labels)
    cal.ece_after = expected_calibration_error(after, labels)
    return cal


def recalibrated(row: dict, ids: list[str], calibration: CategoryCalibration) -> dict | None:
    """The category columns of a labelled row rescored with ``calibration`` from its stored evidence
    (no model runs), or None when it has no evidence."""
    evidence = row_evidence(row)
    if not evidence:
        return None
    res = category_result(ids, evidence, row.get("category"), calibration)
    return {"category_probs": {c: float(p) for c, p in zip(ids, res.probs, strict=True)},
            "predicted_category": res.predicted_category, "category_confidence": res.category_confidence}


def calibration_path(manifest: str | Path) -> Path:
    """Where a calibration fitted on a manifest's corrections is kept: ``<stem>.category_calibration.json``."""
    manifest = Path(manifest)
    return manifest.with_name(f"{manifest.stem}.category_calibration.json")


def calibrate_from_corrections(manifest: str | Path, corrections_file: str | Path,
                               taxonomy=None) -> tuple[CategoryCalibration, Path, int]:
    """Fit the evidence weights on the clips whose category a user corrected, save them beside the
    manifest, and rescore every labelled clip with them (from stored evidence; newest row wins).

    Returns ``(calibration, its path, rows rescored)``.
    """
    from commercial98k.manifest.corrections import latest, read_corrections_file
    from commercial98k.manifest.io import ManifestWriter, read_manifest
    from commercial98k.manifest.lock import manifest_lock
    from commercial98k.taxonomy import load_taxonomy

    taxonomy = taxonomy or load_taxonomy()
    ids = taxonomy.ids()
    truth = {c.clip_id: c.value for c in latest(read_corrections_file(corrections_file, taxonomy)).values()
             if c.kind == "category"}
    if not truth:
        raise ValueError(f"{corrections_file}: no category correction to calibrate on")
    rescored = 0
    with manifest_lock(manifest):  # the rows are rewritten: no other writer in between
        rows = read_manifest(manifest, "clips").to_pylist()
        cal = calibrate_on(rows, truth, ids, str(corrections_file))
        path = cal.save(calibration_path(manifest))
        with ManifestWriter(manifest, "clips", flush_every=4096) as writer:
            for r in rows:
                new = recalibrated(r, ids, cal) if r.get("status") == "ok" else None
                if new is not None:
                    writer.add({**r, **new})
                    rescored += 1
    return cal, path, rescored
