"""yuyin.stats on toy rankers with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from yuyin.evaluate import track_gallery, v2m_ranks
from yuyin.stats import (
    boot_metric,
    bootstrap_intervals,
    fmt_diff,
    metric,
    paired_bootstrap,
    resample_counts,
    seed_summary,
    t_interval,
)


def _ranks(video: np.ndarray, music: np.ndarray, mids: list[str]) -> np.ndarray:
    gallery, _, owner = track_gallery(music, mids)
    return v2m_ranks(video, gallery, owner)


def _toy(n_tracks: int = 40, per_track: int = 3, noise: float = 0.0, seed: int = 0):
    """Clips whose video embedding is their track's music embedding plus ``noise``."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_tracks, 16))
    mids = [f"m{t}" for t in range(n_tracks) for _ in range(per_track)]
    music = np.repeat(base, per_track, 0)
    video = music + noise * rng.normal(size=music.shape)
    norm = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return norm(video), norm(music), mids


def test_perfect_ranker_has_recall_one_and_median_rank_one():
    ranks = _ranks(*_toy())
    assert ranks.tolist() == [1] * 120
    s = seed_summary([ranks, ranks, ranks])
    assert s["R@1"]["mean"] == 1.0 and s["R@1"]["half"] == 0.0
    assert s["MedR"]["mean"] == 1.0


def test_random_ranker_is_near_chance():
    video, music, mids = _toy()
    rng = np.random.default_rng(1)
    shuffled = video[rng.permutation(len(video))]
    ranks = _ranks(shuffled, music, mids)
    assert metric(ranks, "R@10") < 0.5  # chance is 10/40
    assert metric(ranks, "MedR") > 8


def test_identical_methods_interval_contains_zero():
    ranks = [_ranks(*_toy(noise=1.2, seed=s)) for s in range(3)]
    for name in ("R@1", "R@10", "MedR"):
        b = paired_bootstrap(ranks, ranks, name, n_boot=300)
        assert b["diff"] == 0 and b["low"] <= 0 <= b["high"] and not b["significant"]
        assert b["p"] == 1.0


def test_equally_good_methods_are_not_significant():
    """Two rankers with the same noise level (different draws): no significant difference."""
    a = [_ranks(*_toy(noise=1.2, seed=s)) for s in range(3)]
    b = [_ranks(*_toy(noise=1.2, seed=10 + s)) for s in range(3)]
    res = paired_bootstrap(a, b, "R@10", n_boot=1000, groups=[f"m{t}" for t in range(40) for _ in range(3)])
    assert res["low"] <= 0 <= res["high"] and not res["significant"]


def test_clearly_better_ranker_is_significant():
    good = [_ranks(*_toy(noise=0.6, seed=s)) for s in range(3)]
    bad = [_ranks(*_toy(noise=3.0, seed=s)) for s in range(3)]
    groups = [f"m{t}" for t in range(40) for _ in range(3)]
    r10 = paired_bootstrap(good, bad, "R@10", n_boot=1000, groups=groups)
    assert r10["diff"] > 0.2 and r10["low"] > 0 and r10["significant"] and r10["p"] < 0.05
    medr = paired_bootstrap(good, bad, "MedR", n_boot=1000, groups=groups)
    assert medr["diff"] < 0 and medr["high"] < 0 and medr["significant"]
    assert fmt_diff(r10).endswith(" *")


def test_grouped_bootstrap_is_wider_for_correlated_queries():
    """Copies of one query per track are not new evidence: resampling tracks widens the interval."""
    a = [_ranks(*_toy(n_tracks=30, per_track=1, noise=1.0, seed=s)) for s in range(3)]
    b = [_ranks(*_toy(n_tracks=30, per_track=1, noise=1.6, seed=s)) for s in range(3)]
    rep = [np.repeat(r, 5) for r in a], [np.repeat(r, 5) for r in b]
    groups = np.repeat(np.arange(30), 5)
    plain = paired_bootstrap(*rep, "R@5", n_boot=1000)
    grouped = paired_bootstrap(*rep, "R@5", n_boot=1000, groups=groups)
    assert plain["diff"] == pytest.approx(grouped["diff"])
    assert grouped["high"] - grouped["low"] > 1.5 * (plain["high"] - plain["low"])


def test_t_interval_matches_known_value():
    mean, low, half = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-5)
    assert low == pytest.approx(2.0 - half)


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(ValueError, match="same queries"):
        paired_bootstrap([np.array([1, 2])], [np.array([1, 2, 3])])
    with pytest.raises(ValueError, match="unknown metric"):
        metric(np.array([1]), "MAP")


def test_bootstrap_intervals_of_one_model():
    perfect = _ranks(*_toy())
    iv = bootstrap_intervals(perfect, n_boot=200)
    assert iv["R@1"] == {"value": 1.0, "low": 1.0, "high": 1.0} and iv["MedR"]["value"] == 1.0
    video, music, mids = _toy(noise=1.2)
    iv = bootstrap_intervals(_ranks(video, music, mids), n_boot=500, groups=mids)
    assert all(v["low"] <= v["value"] <= v["high"] for v in iv.values())
    assert 0 < iv["R@1"]["value"] < 1 and iv["R@1"]["low"] < iv["R@1"]["high"]


def test_vectorised_bootstrap_equals_explicit_resamples():
    """``boot_metric`` on counts gives what the metric gives on the resampled queries themselves."""
    rng = np.random.default_rng(3)
    ranks = rng.integers(1, 30, 41)
    groups = rng.integers(0, 12, 41)
    counts = resample_counts(41, groups, 50, seed=1)
    assert counts.shape == (50, 41)
    for name in ("R@1", "R@10", "MedR"):
        fast = boot_metric(ranks, counts, name)
        slow = [metric(np.repeat(ranks, c), name) for c in counts]
        assert np.allclose(fast, slow)
    members = {g: (groups == g).sum() for g in set(groups.tolist())}
    for c in counts[:5]:  # whole groups: every clip of a group is drawn equally often
        assert all(len(set(c[groups == g].tolist())) == 1 for g in members)
