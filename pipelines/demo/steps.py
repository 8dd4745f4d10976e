"""The demo's steps: music, corpus, emotion head, fetch, split, label, shards, stats, YuYin.

Each step calls the function its command calls (``pipelines.fetch.fetch``, ``pipelines.split.run_split``,
``yuyin.train.train`` ...) in this process, with the values the command's flags would give.
The data (music, ads, the loopback shop) comes from ``commercial98k.demo``.

Work folder layout (``DemoConfig.work_dir``)::

    music/            library.json, tracks/*.wav; emotion_set/ (mood labels in Emotify's format)
    catalog/          the generated ads (*.mp4) and corpus.json (plans and ground truth)
    models/           emotion_head.npz
    data/             the data root: videos/, clips/, audio/, features/
    manifests/        videos.parquet, c98k.parquet (and c98k.true_tracks.parquet: music_id = the true track)
    shards/           WebDataset shards and index.json
    report/           c98k stats output
    runs/yuyin/       YuYin checkpoints; runs/benchmark/ the baselines
    eval/             report.json / report.md of ``yuyin evaluate``
    recommend/        the recommendation for one held-out video
    .steps/           <step>.completed markers
"""

from __future__ import annotations

import dataclasses

from commercial98k.demo.corpus import DEFAULT_CATEGORIES, PLAN_VERSION, plan_corpus
from commercial98k.demo.music import (
    ARRANGEMENTS,
    LIBRARY_VERSION,
    build_library,
    load_library,
    write_emotion_set,
)
from commercial98k.demo.render import generate_corpus

from .config import DemoConfig
from .model_steps import run_benchmark, run_evaluate, run_recommend, run_train
from .runner import Step, StepFailed
from .stage_steps import (
    TRUE_TRACKS_MANIFEST,
    run_emotion,
    run_fetch,
    run_label,
    run_shards,
    run_split,
    run_stats,
    run_truth,
)


def categories(cfg: DemoConfig) -> tuple[str, ...]:
    """The demo's categories (the default six when none are set)."""
    return tuple(cfg.categories) or DEFAULT_CATEGORIES


def _common(cfg: DemoConfig) -> dict:
    return {"categories": list(categories(cfg)), "videos_per_category": cfg.videos_per_category,
            "seed": cfg.seed, "quick": cfg.quick, "plan_version": PLAN_VERSION,
            **({"playlist_size": cfg.playlist_size} if cfg.playlist_size else {})}


def _music_params(cfg: DemoConfig) -> dict:
    return {"sources": list(cfg.music_sources), "version": LIBRARY_VERSION,
            "arrangements": [dataclasses.astuple(a) for a in ARRANGEMENTS]}


# --- 1. music ------------------------------------------------------------------------------------
def run_music(cfg: DemoConfig) -> None:
    """The music library and its mood labels (an Emotify-format emotion set)."""
    tracks = build_library(cfg.path("music"), tuple(cfg.music_sources), progress=cfg.progress)
    write_emotion_set(cfg.path("music"), cfg.path("music", "emotion_set"), tracks)
    moods: dict[str, int] = {}
    for t in tracks:
        moods[t.mood] = moods.get(t.mood, 0) + 1
    print(f"  {len(tracks)} tracks: " + ", ".join(f"{m} {n}" for m, n in sorted(moods.items())))


# --- 2. corpus -----------------------------------------------------------------------------------
def run_corpus(cfg: DemoConfig) -> None:
    """Plan and render the ads over the library."""
    tracks = load_library(cfg.path("music"))
    plans = plan_corpus(tracks, categories(cfg), cfg.videos_per_category, cfg.seed, cfg.quick, cfg.playlist_size)
    doc = generate_corpus(plans, cfg.path("music"), cfg.path("catalog"), workers=cfg.workers,
                          progress=cfg.progress, meta={"config": _common(cfg)})
    if doc["failed"]:
        raise StepFailed(f"{len(doc['failed'])} video(s) failed to render, e.g. {doc['failed'][0]['error']}")
    seconds = sum(v["duration_s"] for v in doc["videos"])
    print(f"  {len(doc['videos'])} ads, {seconds / 60:.1f} min, {len(doc['tracks'])} distinct tracks")


def demo_steps() -> list[Step]:
    """The demo's steps in order (each runs the real code path of its stage, in this process)."""

    def p(*parts):
        return lambda cfg: [cfg.path(*parts)]

    return [
        Step("music", "music library (immich-memories-music + music21 via fluidsynth)", run_music,
             p("music", "emotion_set", "ratings.csv"), _music_params),
        Step("corpus", "generate the ad corpus (ffmpeg, espeak-ng)", run_corpus, p("catalog", "corpus.json"),
             _common, after=("music",)),
        Step("emotion", "c98k emotion train (on the library's mood labels)", run_emotion,
             p("models", "emotion_head.npz"), lambda cfg: {"seed": cfg.seed}, after=("music",)),
        Step("fetch", "c98k fetch (yt-dlp on a loopback catalog server)", run_fetch,
             p("manifests", "videos.parquet"), lambda cfg: {"workers": cfg.workers}, after=("corpus",)),
        Step("split", "c98k split (shots, music segment, clips, fingerprints)", run_split,
             p("manifests", "c98k.parquet"), lambda cfg: {}, after=("fetch",)),
        Step("label", "c98k label (embeddings, emotion, tags, category)", run_label,
             p("manifests", "c98k.parquet"), lambda cfg: {"device": cfg.device}, after=("split", "emotion")),
        Step("truth", "music identity vs the true tracks", run_truth, p("manifests", TRUE_TRACKS_MANIFEST),
             lambda cfg: {}, after=("label",)),
        Step("shards", "c98k build-shards", run_shards, p("shards", "index.json"),
             lambda cfg: {"seed": cfg.seed, "fractions": cfg.split_fractions, **(
                 {"true_tracks": True} if cfg.shards_on_true_tracks else {})},
             after=("label", "truth")),
        Step("stats", "c98k stats", run_stats, p("report", "stats.html"), lambda cfg: {}, after=("shards",)),
        Step("train", "yuyin train", run_train, p("runs", "yuyin"),
             lambda cfg: {"steps": cfg.train_steps, "batch": cfg.batch_size}, after=("shards",)),
        Step("benchmark", "yuyin benchmark (baselines)", run_benchmark, p("runs", "benchmark", "benchmark.json"),
             lambda cfg: {"steps": cfg.train_steps, "batch": cfg.batch_size, "methods": list(cfg.baselines)},
             after=("shards",)),
        Step("evaluate", "yuyin evaluate (Recall@K vs random and baselines)", run_evaluate, p("eval", "summary.md"),
             lambda cfg: {}, after=("train", "benchmark")),
        Step("recommend", "yuyin recommend (one held-out video)", run_recommend,
             p("recommend", "recommendation.json"), lambda cfg: {}, after=("train",)),
    ]
