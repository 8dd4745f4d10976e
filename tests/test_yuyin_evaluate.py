"""Retrieval metrics on hand-made embeddings, and the analytic random baseline."""

from __future__ import annotations

import numpy as np
import pytest

from yuyin.evaluate import (
    m2v_ranks,
    random_m2v,
    random_v2m,
    report_markdown,
    retrieval_metrics,
    track_gallery,
    v2m_ranks,
    write_report,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_perfect_embeddings_give_recall_one():
    rng = np.random.default_rng(0)
    tracks = _unit(rng.normal(size=(6, 16)))
    ids = ["t0", "t0", "t1", "t2", "t3", "t3", "t3", "t4", "t5"]
    owner = [int(i[1]) for i in ids]
    music = tracks[owner]
    rep = retrieval_metrics(music.copy(), music, ids, categories=["x"] * 5 + ["y"] * 4)
    assert rep["tracks"] == 6 and rep["clips"] == 9
    for d in ("v2m", "m2v"):
        assert rep[d]["R@1"] == 1.0 and rep[d]["median_rank"] == 1.0 and rep[d]["mean_rank"] == 1.0
    assert rep["per_category"]["x"]["queries"] == 5 and rep["per_category"]["y"]["R@1"] == 1.0


def test_known_ranks_give_known_median_and_recalls():
    """Gallery = basis vectors; each video is built to rank its own track at a chosen position."""
    m = 8
    gallery = np.eye(m, dtype=np.float32)
    wanted = [1, 2, 3, 5, 8]  # rank of the true track for each of the 5 videos
    video = []
    for q, r in enumerate(wanted):
        v = np.zeros(m)
        scores = np.linspace(1.0, 0.1, m)  # distinct scores, best first
        order = [t for t in range(m) if t != q]
        order.insert(r - 1, q)
        for pos, t in enumerate(order):
            v[t] = scores[pos]
        video.append(v)
    video = _unit(np.array(video, dtype=np.float32))
    owner = np.arange(5)
    ranks = v2m_ranks(video, gallery, owner)
    assert ranks.tolist() == wanted
    # as a full report over the same 8 tracks (3 of them unused by any video)
    ids = [f"t{i}" for i in range(5)]
    rep = retrieval_metrics(np.vstack([video, gallery[5:]]), gallery, ids + ["t5", "t6", "t7"])
    v2m = rep["v2m"]
    assert v2m["queries"] == 8 and v2m["R@1"] == pytest.approx(4 / 8)  # the 3 extra videos rank 1
    assert v2m["median_rank"] == 1.5 and v2m["mean_rank"] == pytest.approx((sum(wanted) + 3) / 8)
    assert v2m["R@5"] == pytest.approx(7 / 8)


def test_m2v_uses_the_best_of_several_videos():
    gallery = np.eye(3, dtype=np.float32)
    # track 0 is used by videos 0 and 1; video 1 matches it perfectly, video 0 poorly
    video = _unit(np.array([[0.1, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.1], [0.0, 0.1, 1.0]], np.float32))
    owner = np.array([0, 0, 1, 2])
    assert m2v_ranks(video, gallery, owner).tolist() == [1, 2, 1]  # track 1: video 0 scores higher than video 2


def test_track_gallery_averages_per_music_id():
    music = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
    gallery, tracks, owner = track_gallery(music, ["b", "a", "b"])
    assert tracks == ["a", "b"] and owner.tolist() == [1, 0, 1]
    assert np.allclose(gallery, [[0, 1], [1, 0]])


def test_random_baseline_matches_random_embeddings():
    assert random_v2m(20)["R@10"] == 0.5 and random_v2m(20)["median_rank"] == 10.5
    assert random_v2m(4)["R@5"] == 1.0
    rng = np.random.default_rng(0)
    ids = [f"t{i % 30}" for i in range(75)]
    trials = [retrieval_metrics(_unit(rng.normal(size=(75, 32))), _unit(rng.normal(size=(75, 32))), ids)
              for _ in range(60)]
    expect = trials[0]["random"]
    for d in ("v2m", "m2v"):
        for k in ("R@1", "R@5", "R@10"):
            observed = np.mean([t[d][k] for t in trials])
            assert observed == pytest.approx(expect[d][k], abs=0.03), (d, k)
        assert np.mean([t[d]["mean_rank"] for t in trials]) == pytest.approx(expect[d]["mean_rank"], rel=0.05)
    # m2v with p positives among n: R@1 = p / n
    assert random_m2v(10, [2, 1])["R@1"] == pytest.approx((0.2 + 0.1) / 2)


def test_report_files(tmp_path):
    rng = np.random.default_rng(1)
    v = _unit(rng.normal(size=(12, 8)))
    rep = retrieval_metrics(v, v, [f"t{i % 5}" for i in range(12)], categories=["a", "b"] * 6)
    rep["split"] = "test"
    js, md = write_report(rep, tmp_path / "eval-test")
    assert js.is_file() and md.is_file()
    text = md.read_text()
    assert "video→music" in text and "| a (6) |" in text and text == report_markdown(rep)
