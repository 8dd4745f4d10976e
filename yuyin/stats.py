"""Honest retrieval statistics: per-query ranks in, intervals and paired significance out.

Inputs are the 1-based ranks of each test query's correct track (``evaluate.v2m_ranks``), one
array per (method, seed), all over the *same* queries in the same order.

* ``seed_summary``: R@K and median rank per seed, then mean ± a 95 % Student-t interval over
  the seeds (training randomness).
* ``paired_bootstrap``: the difference of two methods on the same queries, resampling queries
  with replacement (test-set randomness). Each resample recomputes the metric per seed, averages
  over seeds and takes the difference, so both methods always see the same resampled queries.
  With ``groups`` (e.g. the queries' ``music_id``) whole groups are resampled together: clips
  of one track are not independent queries, and treating them as such would make intervals too
  narrow. A difference is *significant* when its 95 % percentile interval excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

STAT_KS = (1, 5, 10, 25)
METRICS = tuple(f"R@{k}" for k in STAT_KS) + ("MedR",)


def metric(ranks: np.ndarray, name: str) -> float:
    """``R@K`` (share of queries ranked within K) or ``MedR`` (median rank) of 1-based ``ranks``."""
    ranks = np.asarray(ranks)
    if name == "MedR":
        return float(np.median(ranks))
    if name.startswith("R@"):
        return float((ranks <= int(name[2:])).mean())
    raise ValueError(f"unknown metric {name!r}; use R@K or MedR")


def higher_is_better(name: str) -> bool:
    """R@K: higher is better; MedR: lower is better."""
    return name != "MedR"


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the Student-t ``level`` interval half-width over ``values`` (0 width for one value)."""
    from scipy.stats import t

    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, mean, 0.0
    half = float(t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, half


def seed_summary(ranks_per_seed: Sequence[np.ndarray], metrics: Sequence[str] = METRICS,
                 level: float = 0.95) -> dict[str, dict[str, Any]]:
    """Per metric: ``{"mean", "half", "low", "high", "per_seed"}`` over the seeds' rank arrays."""
    out: dict[str, dict[str, Any]] = {}
    for name in metrics:
        per_seed = [metric(r, name) for r in ranks_per_seed]
        mean, low, half = t_interval(per_seed, level)
        out[name] = {"mean": mean, "half": half, "low": low, "high": mean + half, "per_seed": per_seed}
    return out


def resample_counts(n: int, groups: Sequence[Any] | None, n_boot: int, seed: int = 0) -> np.ndarray:
    """``[n_boot, n]``: how often each query is in each bootstrap sample (queries, or whole ``groups``, drawn
    with replacement). The same ``seed`` gives the same samples, so methods are compared on the same ones."""
    if groups is None:
        inverse = np.arange(n)
    else:
        inverse = np.unique(np.asarray([str(x) for x in groups]), return_inverse=True)[1].reshape(-1)
        if len(inverse) != n:
            raise ValueError(f"groups has {len(inverse)} entries for {n} queries")
    n_groups = int(inverse.max()) + 1 if n else 0
    draws = np.random.default_rng(seed).integers(0, n_groups, (n_boot, n_groups))
    counts = np.zeros((n_boot, n_groups), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(n_boot), n_groups), draws.reshape(-1)), 1)
    return counts[:, inverse]


def boot_metric(ranks: np.ndarray, counts: np.ndarray, name: str) -> np.ndarray:
    """``metric`` of every bootstrap sample ``counts`` [B, n] of ``ranks`` [n] at once: [B]."""
    ranks = np.asarray(ranks)
    if name.startswith("R@"):
        return counts @ (ranks <= int(name[2:])).astype(np.float64) / counts.sum(1)
    if name != "MedR":
        raise ValueError(f"unknown metric {name!r}; use R@K or MedR")
    order = np.argsort(ranks, kind="stable")
    values, cum = ranks[order].astype(np.float64), np.cumsum(counts[:, order], axis=1)
    total = cum[:, -1:]
    lo = np.argmax(cum > (total - 1) // 2, axis=1)  # the sample's middle one or two ranks
    hi = np.argmax(cum > total // 2, axis=1)
    return (values[lo] + values[hi]) / 2


def paired_bootstrap(ranks_a: Sequence[np.ndarray], ranks_b: Sequence[np.ndarray], name: str = "R@10",
                     n_boot: int = 2000, seed: int = 0, groups: Sequence[Any] | None = None,
                     level: float = 0.95) -> dict[str, Any]:
    """Bootstrap the difference ``metric(A) - metric(B)`` (each averaged over its seeds) over queries.

    ``ranks_a``/``ranks_b``: one rank array per seed, every array over the same queries in the
    same order. Returns the observed difference, the percentile interval, a two-sided bootstrap
    p-value and ``significant`` (the interval excludes 0). For MedR a negative difference means
    A ranks the right track higher.
    """
    a = np.stack([np.asarray(r) for r in ranks_a])
    b = np.stack([np.asarray(r) for r in ranks_b])
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired bootstrap needs the same queries: {a.shape[1]} vs {b.shape[1]} ranks")
    n = a.shape[1]
    if n == 0:
        raise ValueError("paired bootstrap: no queries")
    counts = resample_counts(n, groups, n_boot, seed)
    observed = float(np.mean([metric(r, name) for r in a]) - np.mean([metric(r, name) for r in b]))
    boots = np.mean([boot_metric(r, counts, name) for r in a], 0) - np.mean([boot_metric(r, counts, name) for r in b], 0)
    low, high = (float(x) for x in np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]))
    p = float(min(1.0, 2 * min((boots <= 0).mean(), (boots >= 0).mean())))
    if np.all(boots == 0):
        p = 1.0
    return {"metric": name, "diff": observed, "low": low, "high": high, "p": p,
            "significant": bool(low > 0 or high < 0), "n_queries": int(n), "n_boot": int(n_boot),
            "resampled": "groups" if groups is not None else "queries"}


def fmt_interval(s: dict[str, Any], name: str) -> str:
    """``0.412 ± 0.031`` (R@K, 3 decimals) or ``7.5 ± 1.2`` (MedR)."""
    d = 1 if name == "MedR" else 3
    return f"{s['mean']:.{d}f} ± {s['half']:.{d}f}"


def fmt_diff(b: dict[str, Any]) -> str:
    """``+0.120 [+0.050, +0.190] *`` with ``*`` when significant."""
    d = 1 if b["metric"] == "MedR" else 3
    star = " *" if b["significant"] else ""
    return f"{b['diff']:+.{d}f} [{b['low']:+.{d}f}, {b['high']:+.{d}f}]{star}"


def bootstrap_intervals(ranks: np.ndarray, metrics: Sequence[str] = METRICS, n_boot: int = 2000, seed: int = 0,
                        groups: Sequence[Any] | None = None, level: float = 0.95) -> dict[str, dict[str, float]]:
    """One model's metrics with bootstrap percentile intervals over its test queries (or ``groups`` of them)."""
    ranks = np.asarray(ranks)
    counts = resample_counts(len(ranks), groups, n_boot, seed)
    out = {}
    for name in metrics:
        boots = boot_metric(ranks, counts, name)
        low, high = (float(x) for x in np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]))
        out[name] = {"value": metric(ranks, name), "low": low, "high": high}
    return out
