"""The demo's ``c98k`` stages, in this process: emotion train, fetch, split, label, build-shards, stats.

Every call passes the values of the demo's flags (named in each docstring) and leaves the rest to
the library's defaults (``SplitConfig``, ``LabelConfig``, ``YtdlpOptions``, ...), which are the
commands' defaults, so the results equal a command-line run.
"""

from __future__ import annotations

from commercial98k.demo.render import load_corpus
from commercial98k.demo.shop import catalog_pages, sources_csv
from commercial98k.storage.files import atomic_write_bytes

from .config import DemoConfig
from .runner import StepFailed


def _say(command: str) -> None:
    print(f"  > {command} (in-process)", flush=True)


def _crashed(what: str, n: int) -> None:
    if n:
        raise StepFailed(f"{n} {what} failed because their worker crashed or was killed; run again to retry them")


def run_emotion(cfg: DemoConfig) -> None:
    """``c98k emotion train --dataset emotify --path music/emotion_set --out models/emotion_head.npz
    --cache-dir emotion_cache --seconds 10 --device D --seed S``."""
    from pipelines import emotion

    _say("c98k emotion train")
    out = cfg.path("models", "emotion_head.npz")
    head = emotion.train("emotify", str(cfg.path("music", "emotion_set")), "musicnn", str(out), 10.0, cfg.device,
                         str(cfg.path("emotion_cache")), cfg.seed, None)
    m = head.meta
    print(f"{out}: {head.info.tag()} trained on {m['items']} emotify items ({m['windows']} windows) "
          f"with {head.audio_model}; classes: {', '.join(head.classes)}")


def run_fetch(cfg: DemoConfig) -> None:
    """Serve the catalog on loopback and crawl every category page, as ``c98k fetch --source sources.csv
    --limit N --data-root data --manifest manifests/videos.parquet --workers W --retries 2`` does."""
    from commercial98k.sources import YtdlpOptions
    from commercial98k.testing.catalog_server import CatalogServer
    from pipelines.fetch import fetch

    doc = load_corpus(cfg.path("catalog"))
    pages, meta = catalog_pages(doc)
    with CatalogServer(cfg.path("catalog"), pages, meta=meta, site_name="C98K Demo Shop") as shop:
        print(f"  catalog served at {shop.base_url}/")
        sources = cfg.path("catalog", "sources.csv")  # this run's URLs (the port changes per run)
        atomic_write_bytes(sources, sources_csv({c: shop.category_url(c) for c in pages}))
        _say("c98k fetch")
        result = fetch(None, (str(sources),), manifest=str(cfg.path("manifests", "videos.parquet")),
                       data_root=str(cfg.path("data")), limit=max(len(v) for v in pages.values()),
                       options=YtdlpOptions(retries=2), workers=cfg.workers)
    if result.no_source_read:
        raise StepFailed(result.failure_line())
    print(result.summary())
    _crashed("video(s)", result.crashed)


def run_split(cfg: DemoConfig) -> None:
    """``c98k split --videos-manifest manifests/videos.parquet --manifest manifests/c98k.parquet
    --data-root data --workers W`` (the other flags at their defaults)."""
    from pipelines.split import SplitConfig
    from pipelines.split import run_split as split

    _say("c98k split")
    manifest = str(cfg.path("manifests", "c98k.parquet"))
    counts = split(str(cfg.path("manifests", "videos.parquet")), manifest, SplitConfig(data_root=str(cfg.path("data"))),
                   workers=cfg.workers)
    print(f"{manifest}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    _crashed("video(s)", counts.get("crashed", 0))


def run_label(cfg: DemoConfig) -> None:
    """``c98k label --manifest manifests/c98k.parquet --data-root data --workers W --device D
    --emotion-model gems-head --weights emotion=models/emotion_head.npz`` (the other flags at their defaults)."""
    from commercial98k.label.extractors import LabelConfig
    from commercial98k.models.registry import check_device
    from pipelines.label import LabelOptions
    from pipelines.label import run_label as label

    _say("c98k label")
    manifest = str(cfg.path("manifests", "c98k.parquet"))
    config = LabelConfig(emotion_model="gems-head", device=check_device(cfg.device),
                         weights=(("emotion", str(cfg.path("models", "emotion_head.npz"))),))
    counts = label(manifest, str(cfg.path("data")), config, LabelOptions(), workers=cfg.workers)
    print(f"{manifest}: labelled {counts['labelled']}, failed {counts['failed']}, "
          f"already labelled {counts['skipped']}, not ok (left alone) {counts['not_ok']}")
    _crashed("clip(s)", counts["crashed"])


TRUE_TRACKS_MANIFEST = "c98k.true_tracks.parquet"


def run_truth(cfg: DemoConfig) -> None:
    """Compare the clips' ``music_id`` with the tracks the corpus played, and write the manifest copy
    whose ``music_id`` is the true track (``commercial98k.demo.truth``; the benchmark's shards use it)."""
    from commercial98k.demo.render import load_corpus
    from commercial98k.demo.truth import identity_agreement, true_track_ids
    from commercial98k.manifest.io import read_manifest, write_manifest

    clips = read_manifest(cfg.path("manifests", "c98k.parquet"), "clips")
    corpus = load_corpus(cfg.path("catalog"))
    a = identity_agreement(clips, corpus)
    print(f"  music identity vs the true tracks: {a['ids']} music_ids for {a['tracks']} tracks; "
          f"{a['mixed_ids']} id(s) hold clips of two or more tracks, {a['split_tracks']} track(s) have several ids")
    write_manifest(true_track_ids(clips, corpus), cfg.path("manifests", TRUE_TRACKS_MANIFEST), "clips")


def shards_manifest(cfg: DemoConfig) -> str:
    """The clips manifest the shards are built from: the pipeline's, or its true-track copy."""
    return str(cfg.path("manifests", TRUE_TRACKS_MANIFEST if cfg.shards_on_true_tracks else "c98k.parquet"))


def run_shards(cfg: DemoConfig) -> None:
    """``c98k build-shards --manifest manifests/c98k.parquet --out shards --data-root data --seed S
    --split-fractions F`` (the other flags at their defaults); the benchmark corpus builds from the
    true-track copy (``shards_manifest``)."""
    from commercial98k.export.report import empty_split_warnings
    from commercial98k.export.shards import ShardFilters
    from pipelines import shards

    _say("c98k build-shards")
    out = str(cfg.path("shards"))
    index = shards.run(shards_manifest(cfg), out, str(cfg.path("data")), filters=ShardFilters(),
                       fractions=cfg.fractions(), seed=cfg.seed)
    for line in shards.summary_lines(index, out) + empty_split_warnings(index):
        print(line)


def run_stats(cfg: DemoConfig) -> None:
    """``c98k stats --manifest manifests/c98k.parquet --report report/stats.html``."""
    from commercial98k.export.stats import format_summary, write_report

    _say("c98k stats")
    report = str(cfg.path("report", "stats.html"))
    print(format_summary(write_report(str(cfg.path("manifests", "c98k.parquet")), report, 20)))
    print(f"report: {report}")
