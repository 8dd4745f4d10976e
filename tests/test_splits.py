"""Grouped, stratified, deterministic splits (commercial98k.export.partition)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pandas as pd
import pytest

from commercial98k.export.partition import assign_splits, components


def _rows(n: int, n_music: int, categories: list[str], seed: int = 0, dup_every: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append({
            "clip_id": f"c{i:05d}",
            "music_id": f"m{rng.randrange(n_music):04d}" if rng.random() < 0.9 else None,
            "dup_group": f"d{i // 3}" if dup_every and i % dup_every == 0 else None,
            "category": categories[rng.randrange(len(categories))],
        })
    return rows


def _groups_in_one_split(rows: list[dict], split: dict[str, str], column: str) -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r[column]:
            seen[r[column]].add(split[r["clip_id"]])
    assert seen, f"no {column} in the test data"
    bad = {k: v for k, v in seen.items() if len(v) > 1}
    assert not bad, f"{column} in several splits: {list(bad.items())[:3]}"


def test_no_music_or_duplicate_group_in_two_splits():
    rows = _rows(1500, 400, ["a", "b", "c"], dup_every=4)
    split = assign_splits(rows)
    assert set(split) == {r["clip_id"] for r in rows}
    assert set(split.values()) == {"train", "val", "test"}
    _groups_in_one_split(rows, split, "music_id")
    _groups_in_one_split(rows, split, "dup_group")


def test_transitive_chain_is_one_component():
    rows = [
        {"clip_id": "a", "music_id": "m1", "dup_group": None, "category": "x"},
        {"clip_id": "b", "music_id": "m1", "dup_group": "d1", "category": "x"},
        {"clip_id": "c", "music_id": "m2", "dup_group": "d1", "category": "y"},
        {"clip_id": "d", "music_id": "m2", "dup_group": None, "category": "y"},
        {"clip_id": "e", "music_id": None, "dup_group": None, "category": "x"},
        {"clip_id": "f", "music_id": None, "dup_group": None, "category": "x"},
    ]
    comps = sorted(sorted(rows[i]["clip_id"] for i in c) for c in components(rows))
    assert comps == [["a", "b", "c", "d"], ["e"], ["f"]]
    for seed in range(5):
        split = assign_splits(rows, seed=seed)
        assert len({split[k] for k in "abcd"}) == 1


def test_stratified_by_category():
    rows = _rows(3000, 2500, ["a", "b", "c", "rare"], seed=1)
    split = assign_splits(rows, fractions=(0.7, 0.2, 0.1), seed=3)
    per_cat: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        per_cat[r["category"]][split[r["clip_id"]]] += 1
    for cat, counts in per_cat.items():
        total = sum(counts.values())
        for name, target in (("train", 0.7), ("val", 0.2), ("test", 0.1)):
            assert abs(counts[name] / total - target) < 0.05, (cat, dict(counts))


def test_deterministic_for_a_seed_and_independent_of_row_order():
    rows = _rows(800, 200, ["a", "b"], seed=2, dup_every=5)
    first = assign_splits(rows, seed=7)
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    assert assign_splits(shuffled, seed=7) == first
    assert assign_splits(pd.DataFrame(shuffled), seed=7) == first
    assert assign_splits(rows, seed=8) != first


def test_appending_rows_moves_few_clips():
    rows = _rows(2000, 1500, ["a", "b", "c"], seed=4)
    before = assign_splits(rows, seed=0)
    more = rows + [dict(r, clip_id=f"new{i}", music_id=f"new-m{i}") for i, r in enumerate(rows[:100])]
    after = assign_splits(more, seed=0)
    moved = sum(before[k] != after[k] for k in before)
    assert moved < 0.05 * len(before), moved


def test_bad_fractions_rejected():
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(_rows(10, 5, ["a"]), fractions=(0.5, 0.5, 0.5))
