"""Grouped, stratified, deterministic train/val/test splits.

Clips that share a ``music_id`` or a near-duplicate ``dup_group`` are joined (union-find) into
one component, and a component goes wholly to one split: no music track and no near-duplicate
video appears in two splits. Within each category (a component's majority category) components
are placed largest first. Each component prefers the split given by a seeded hash of its
smallest ``clip_id`` (so the choice depends only on the seed and the component, not on row
order, and appending rows moves few existing clips); it takes that split unless the split is
already above its target share for the component's categories by more than a small slack, in
which case it goes to the split furthest below target (stratification by category).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import pyarrow as pa

from commercial98k.identity.unionfind import UnionFind
from commercial98k.manifest.schema import SPLITS


def _columns(table_or_df: Any) -> dict[str, list]:
    """The needed columns as Python lists from a pyarrow Table, pandas DataFrame or list of dicts."""
    names = ("clip_id", "music_id", "dup_group", "category")
    if isinstance(table_or_df, pa.Table):
        return {n: table_or_df.column(n).to_pylist() if n in table_or_df.column_names
                else [None] * table_or_df.num_rows for n in names}
    if isinstance(table_or_df, list):
        return {n: [r.get(n) for r in table_or_df] for n in names}
    df = table_or_df  # pandas
    return {n: [None if _isna(v) else v for v in df[n].tolist()] if n in df.columns else [None] * len(df)
            for n in names}


def _isna(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _hash_unit(seed: int, key: str) -> float:
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def check_fractions(fractions: tuple[float, ...]) -> tuple[float, float, float]:
    """Validate (train, val, test) fractions: three non-negative numbers summing to 1."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    return fr  # type: ignore[return-value]


def components(table_or_df: Any) -> list[list[int]]:
    """Row indices grouped into connected components over shared ``music_id`` / ``dup_group``."""
    cols = _columns(table_or_df)
    n = len(cols["clip_id"])
    uf = UnionFind(range(n))
    first: dict[str, int] = {}
    for column in ("music_id", "dup_group"):
        for i, v in enumerate(cols[column]):
            if v is None or v == "":
                continue
            key = f"{column}:{v}"
            if key in first:
                uf.union(first[key], i)
            else:
                first[key] = i
    return list(uf.groups().values())


def assign_splits(table_or_df: Any, fractions: tuple[float, ...] = (0.8, 0.1, 0.1),
                  seed: int = 0, slack: float = 0.01) -> dict[str, str]:
    """Map every ``clip_id`` to ``train``/``val``/``test`` (see the module docstring).

    Accepts a pyarrow Table, a pandas DataFrame or a list of row dicts with ``clip_id`` and
    (optionally) ``music_id``, ``dup_group``, ``category``. Clips lacking both ``music_id`` and
    ``dup_group`` form components of their own. ``slack``: how far (share of a category's
    clips, at least 2 clips) a split may overshoot its target before the hash preference yields.
    """
    fr = check_fractions(fractions)
    cols = _columns(table_or_df)
    clip_ids = cols["clip_id"]
    cats_of = [c or "" for c in cols["category"]]
    totals = Counter(cats_of)
    targets = {c: [f * n for f in fr] for c, n in totals.items()}
    assigned = {c: [0.0, 0.0, 0.0] for c in totals}
    cum = [sum(fr[: k + 1]) for k in range(3)]
    open_splits = [k for k in range(3) if fr[k] > 0]

    comps = []
    for members in components(table_or_df):
        rep = min(str(clip_ids[i]) for i in members)
        comps.append((len(members), _hash_unit(seed, rep), members))
    out: dict[str, str] = {}
    for size, u, members in sorted(comps, key=lambda c: (-c[0], c[1])):
        counts = Counter(cats_of[i] for i in members)
        main = min(counts, key=lambda c: (-counts[c], c))
        deficit = [sum(n * (targets[c][k] - assigned[c][k]) for c, n in counts.items()) / size for k in range(3)]
        preferred = next((k for k in open_splits if u < cum[k]), open_splits[-1])
        room = max(2.0, slack * totals[main])
        if deficit[preferred] - size >= -room:
            k = preferred  # stable choice: depends only on the seed and the component
        else:
            best = max(deficit[j] for j in open_splits)
            tied = [j for j in open_splits if deficit[j] >= best - 1e-9]
            k = tied[min(int(u * len(tied)), len(tied) - 1)]
        for c, n in counts.items():
            assigned[c][k] += n
        for i in members:
            out[str(clip_ids[i])] = SPLITS[k]
    return out
