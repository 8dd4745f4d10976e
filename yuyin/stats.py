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


def _resample_index(n: int, members: list[np.ndarray] | None, rng: np.random.Generator) -> np.ndarray:
    """Query indices of one bootstrap sample: ``n`` queries, or whole groups (``members``) drawn with replacement."""
    if members is None:
        return rng.integers(0, n, n)
    return np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])


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
    members = None
    if groups is not None:
        g = np.asarray([str(x) for x in groups])
        if len(g) != n:
            raise ValueError(f"groups has {len(g)} entries for {n} queries")
        inverse = np.unique(g, return_inverse=True)[1]
        members = [np.flatnonzero(inverse == k) for k in range(int(inverse.max()) + 1)]

    def diff(idx: np.ndarray | slice) -> float:
        return float(np.mean([metric(r[idx], name) for r in a]) - np.mean([metric(r[idx], name) for r in b]))

    rng = np.random.default_rng(seed)
    observed = diff(slice(None))
    boots = np.array([diff(_resample_index(n, members, rng)) for _ in range(n_boot)])
    low, high = (float(x) for x in np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]))
    p = float(min(1.0, 2 * min((boots <= 0).mean(), (boots >= 0).mean())))
    if np.all(boots == 0):
        p = 1.0
    return {"metric": name, "diff": observed, "low": low, "high": high, "p": p,
            "significant": bool(low > 0 or high < 0), "n_queries": int(n), "n_boot": int(n_boot),
            "resampled": "groups" if members is not None else "queries"}


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
    members = None
    if groups is not None:
        inverse = np.unique(np.asarray([str(x) for x in groups]), return_inverse=True)[1]
        members = [np.flatnonzero(inverse == k) for k in range(int(inverse.max()) + 1)]
    rng = np.random.default_rng(seed)
    samples = [_resample_index(len(ranks), members, rng) for _ in range(n_boot)]
    out = {}
    for name in metrics:
        boots = [metric(ranks[idx], name) for idx in samples]
        low, high = (float(x) for x in np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]))
        out[name] = {"value": metric(ranks, name), "low": low, "high": high}
    return out
