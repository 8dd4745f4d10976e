"""The demo's steps: music, corpus, emotion head, fetch, split, label, shards, stats, YuYin.

Work folder layout (``DemoConfig.work_dir``)::

    music/            library.json, tracks/*.wav; emotion_set/ (mood labels in Emotify's format)
    catalog/          the generated ads (*.mp4) and corpus.json (plans and ground truth)
    models/           emotion_head.npz
    data/             the data root: videos/, clips/, audio/, features/
    manifests/        videos.parquet, c98k.parquet
    shards/           WebDataset shards and index.json
    report/           c98k stats output
    runs/yuyin/       YuYin checkpoints; runs/benchmark/ the baselines
    eval/             report.json / report.md of ``yuyin evaluate``
    recommend/        the recommendation for one held-out video
    .steps/           <step>.completed markers
"""

from __future__ import annotations

import dataclasses
import json

from .corpus import DEFAULT_CATEGORIES, PLAN_VERSION, STYLES, plan_corpus
from .music import ARRANGEMENTS, LIBRARY_VERSION, build_library, write_emotion_set
from .render import generate_corpus, load_corpus
from .runner import DemoConfig, Step, StepFailed, capture_python_module, run_python_module

C98K = "pipelines.cli"
YUYIN = "yuyin.cli"


def categories(cfg: DemoConfig) -> tuple[str, ...]:
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
    tracks = build_library(cfg.path("music"), tuple(cfg.music_sources), progress=cfg.progress)
    write_emotion_set(cfg.path("music"), cfg.path("music", "emotion_set"), tracks)
    moods: dict[str, int] = {}
    for t in tracks:
        moods[t.mood] = moods.get(t.mood, 0) + 1
    print(f"  {len(tracks)} tracks: " + ", ".join(f"{m} {n}" for m, n in sorted(moods.items())))


# --- 2. corpus -----------------------------------------------------------------------------------
def run_corpus(cfg: DemoConfig) -> None:
    from .music import load_library

    tracks = load_library(cfg.path("music"))
    plans = plan_corpus(tracks, categories(cfg), cfg.videos_per_category, cfg.seed, cfg.quick, cfg.playlist_size)
    doc = generate_corpus(plans, cfg.path("music"), cfg.path("catalog"), workers=cfg.workers,
                          progress=cfg.progress, meta={"config": _common(cfg)})
    if doc["failed"]:
        raise StepFailed(f"{len(doc['failed'])} video(s) failed to render, e.g. {doc['failed'][0]['error']}")
    seconds = sum(v["duration_s"] for v in doc["videos"])
    print(f"  {len(doc['videos'])} ads, {seconds / 60:.1f} min, {len(doc['tracks'])} distinct tracks")


# --- 3. emotion head -----------------------------------------------------------------------------
def run_emotion(cfg: DemoConfig) -> None:
    run_python_module(C98K, ["emotion", "train", "--dataset", "emotify", "--path", cfg.path("music", "emotion_set"),
                             "--out", cfg.path("models", "emotion_head.npz"),
                             "--cache-dir", cfg.path("emotion_cache"), "--seconds", "10",
                             "--device", cfg.device, "--seed", cfg.seed])


# --- 4. fetch ------------------------------------------------------------------------------------
def catalog_pages(doc: dict) -> tuple[dict[str, list[str]], dict]:
    """Pages (category -> file names) and per-file page metadata for the catalog server."""
    from ..testing.catalog_server import VideoMeta

    pages: dict[str, list[str]] = {}
    meta = {}
    for i, v in enumerate(doc["videos"]):
        pages.setdefault(v["category"], []).append(v["file"])
        meta[v["file"]] = VideoMeta(title=v["title"], description=v["description"], tags=list(v["tags"]),
                                    uploader=f"{STYLES[v['category']].nouns[0].split()[-1]} Store",
                                    view_count=1000 + 37 * i, like_count=20 + i)
    return pages, meta


def run_fetch(cfg: DemoConfig) -> None:
    """Serve the catalog on loopback and crawl every category page with ``c98k fetch`` (one run)."""
    import csv
    import io

    from ..fsutil import atomic_write_bytes
    from ..testing.catalog_server import CatalogServer

    doc = load_corpus(cfg.path("catalog"))
    pages, meta = catalog_pages(doc)
    with CatalogServer(cfg.path("catalog"), pages, meta=meta, site_name="C98K Demo Shop") as shop:
        print(f"  catalog served at {shop.base_url}/")
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["url", "category"])
        writer.writerows([shop.category_url(c), c] for c in pages)
        sources = cfg.path("catalog", "sources.csv")  # this run's URLs (the port changes per run)
        atomic_write_bytes(sources, buf.getvalue().encode("utf-8"))
        run_python_module(C98K, ["fetch", "--source", sources, "--limit", max(len(v) for v in pages.values()),
                                 "--data-root", cfg.path("data"), "--manifest", cfg.path("manifests", "videos.parquet"),
                                 "--workers", cfg.workers, "--retries", "2"])


# --- 5-8. split, label, shards, stats -----------------------------------------------------------
def run_split(cfg: DemoConfig) -> None:
    run_python_module(C98K, ["split", "--videos-manifest", cfg.path("manifests", "videos.parquet"),
                             "--manifest", cfg.path("manifests", "c98k.parquet"),
                             "--data-root", cfg.path("data"), "--workers", cfg.workers])


def run_label(cfg: DemoConfig) -> None:
    run_python_module(C98K, ["label", "--manifest", cfg.path("manifests", "c98k.parquet"),
                             "--data-root", cfg.path("data"), "--workers", cfg.workers, "--device", cfg.device,
                             "--emotion-model", "gems-head",
                             "--weights", f"emotion={cfg.path('models', 'emotion_head.npz')}"])


def run_shards(cfg: DemoConfig) -> None:
    run_python_module(C98K, ["build-shards", "--manifest", cfg.path("manifests", "c98k.parquet"),
                             "--out", cfg.path("shards"), "--data-root", cfg.path("data"),
                             "--seed", cfg.seed, "--split-fractions", cfg.split_fractions])


def run_stats(cfg: DemoConfig) -> None:
    run_python_module(C98K, ["stats", "--manifest", cfg.path("manifests", "c98k.parquet"),
                             "--report", cfg.path("report", "stats.html")])


# --- 9-12. YuYin ---------------------------------------------------------------------------------
def batch_size(cfg: DemoConfig) -> int:
    """``cfg.batch_size``, or fewer when the training split is smaller (a full batch is needed)."""
    index = json.loads(cfg.path("shards", "index.json").read_text(encoding="utf-8"))
    n_train = int(index["splits"].get("train", {}).get("samples", 0))
    if n_train < 2:
        raise StepFailed(f"the training split has {n_train} clip(s); generate more videos (--videos-per-category)")
    return min(cfg.batch_size, n_train)


def run_train(cfg: DemoConfig) -> None:
    run_python_module(YUYIN, ["train", "--shards", cfg.path("shards"), "--steps", cfg.train_steps,
                              "--batch-size", batch_size(cfg), "--checkpoint-dir", cfg.path("runs", "yuyin"),
                              "--device", cfg.device, "--seed", cfg.seed])




def run_benchmark(cfg: DemoConfig) -> None:
    run_python_module(YUYIN, ["benchmark", "--shards", cfg.path("shards"), "--steps", cfg.train_steps,
                              "--batch-size", batch_size(cfg), "--out", cfg.path("runs", "benchmark"),
                              "--methods", ",".join(cfg.baselines), "--device", cfg.device, "--seed", cfg.seed])


def run_evaluate(cfg: DemoConfig) -> None:
    run_python_module(YUYIN, ["evaluate", "--checkpoint", cfg.path("runs", "yuyin"), "--shards", cfg.path("shards"),
                              "--split", "test", "--out", cfg.path("eval", "report")])
    report = json.loads(cfg.path("eval", "report.json").read_text(encoding="utf-8"))
    baselines = json.loads(cfg.path("runs", "benchmark", "benchmark.json").read_text(encoding="utf-8"))
    table = recall_table(report, baselines)
    from ..fsutil import atomic_write_bytes

    atomic_write_bytes(cfg.path("eval", "summary.md"), table.encode("utf-8"))
    print("\n" + table)


def recall_table(report: dict, baselines: list[dict], ks: tuple[int, ...] = (1, 5, 10, 25)) -> str:
    """Video->music Recall@K and median rank of YuYin, the baselines and the random ranker."""
    rows = [("YuYin", report["v2m"])] + [(b["method"], b["v2m"]) for b in baselines]
    rows.append(("random (expected)", report["random"]["v2m"]))
    head = "| method | " + " | ".join(f"R@{k}" for k in ks) + " | MedR |"
    lines = [f"Held-out split `{report.get('split', 'test')}`: {report['clips']} clips, "
             f"{report['tracks']} tracks (video->music).", "", head, "|---" * (len(ks) + 2) + "|"]
    for name, m in rows:
        cells = [f"{m.get(f'R@{k}', float('nan')):.3f}" for k in ks] + [f"{m.get('median_rank', float('nan')):.1f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def held_out_clip(cfg: DemoConfig) -> dict:
    """A test-split clip's manifest row: an ad (and a track) the model never trained on."""
    from ..manifest import read_manifest

    test_ids = split_clip_ids(cfg, "test")
    for r in read_manifest(cfg.path("manifests", "c98k.parquet"), "clips").to_pylist():
        if r["clip_id"] in test_ids and r.get("video_path"):
            return r
    raise StepFailed("no test-split clip found in the shards")


def split_clip_ids(cfg: DemoConfig, split: str) -> set[str]:
    import tarfile

    ids: set[str] = set()
    for tar_path in sorted(cfg.path("shards", split).glob(f"{split}-*.tar")):
        with tarfile.open(tar_path) as tar:
            ids |= {m.name.split(".", 1)[0] for m in tar.getmembers() if m.isfile()}
    return ids


def run_recommend(cfg: DemoConfig) -> None:
    clip = held_out_clip(cfg)
    video = cfg.path("data", clip["video_path"])
    out = capture_python_module(YUYIN, ["recommend", "--video", video, "--checkpoint", cfg.path("runs", "yuyin"),
                                        "--library", cfg.path("shards"), "--top-k", "1000", "--json"])
    doc = json.loads(out)
    from ..fsutil import atomic_write_json

    truth = clip.get("music_id")
    ranked = doc.get("results", [])
    own = next((r["rank"] for r in ranked if r.get("music_id") == truth), None)
    doc["results"] = ranked[:5]
    atomic_write_json(cfg.path("recommend", "recommendation.json"),
                      {"video": str(video), "category": clip.get("category"), "true_music_id": truth,
                       "true_music_rank": own, "library_tracks": len(ranked), "result": doc})
    print(f"  {clip.get('title')!r} ({clip.get('category')}): its own track {truth} ranks "
          f"{own if own else '-'} of {len(ranked)}; top 5:")
    for r in doc["results"]:
        mark = "  <- the ad's own track" if r.get("music_id") == truth else ""
        title = (r.get("titles") or [""])[0]
        print(f"  {r['rank']:>2}. {r['music_id']}  score {r['score']:.3f}  {r.get('category')}, "
              f"{r.get('emotion')}  e.g. {title!r}{mark}")


def demo_steps() -> list[Step]:
    """The demo's steps in order (each runs the real code path of its stage)."""

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
        Step("shards", "c98k build-shards", run_shards, p("shards", "index.json"),
             lambda cfg: {"seed": cfg.seed, "fractions": cfg.split_fractions},
             after=("label",)),
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
