"""The offline demo: build the generated mini corpus and take it through every stage, in this process.

``python -m pipelines.demo`` (what ``make demo`` runs) and ``c98k demo`` parse the same flags
(``pipelines/commands/demo.py``) and call ``run_demo``. The steps (``steps``, ``stage_steps``,
``model_steps``) call the stages' library functions; ``runner`` skips finished steps by their
``.steps/<step>.completed`` markers. The data (music, ads, the loopback shop) comes from
``commercial98k.demo``, which never imports this package.
"""

from __future__ import annotations

from pathlib import Path

from commercial98k.demo.bench_corpus import BENCHMARK, CORPUS_STEPS, estimate
from commercial98k.demo.corpus import DEFAULT_CATEGORIES

from .config import DemoConfig
from .runner import StepFailed, run_steps
from .steps import demo_steps

__all__ = ["QUICK", "DemoConfig", "StepFailed", "demo_steps", "make_config", "run_benchmark_corpus", "run_demo"]

#: ``--quick``: a reduced run for CI (4 categories x 6 short videos, a few training steps).
QUICK = {"categories": ("sports_outdoor", "cosmetics", "digital", "mother_baby"), "videos_per_category": 6,
         "train_steps": 60, "split_fractions": "0.6,0.1,0.3", "baselines": ("cca", "cbvmr")}


def make_config(work_dir: str | Path = "demo_work", categories: tuple[str, ...] = (),
                videos_per_category: int | None = None, quick: bool = False, train_steps: int | None = None,
                size: str = "demo", **kwargs) -> DemoConfig:
    """The demo configuration: defaults, then ``--quick`` or ``--size benchmark`` presets, then explicit values."""
    cfg = DemoConfig(work_dir=Path(work_dir), categories=DEFAULT_CATEGORIES, quick=quick, **kwargs)
    if quick:
        for key, value in QUICK.items():
            setattr(cfg, key, value)
    if size == "benchmark":
        for key, value in BENCHMARK.items():
            setattr(cfg, key, value)
    if categories:
        cfg.categories = tuple(categories)
    if videos_per_category:
        cfg.videos_per_category = videos_per_category
    if train_steps:
        cfg.train_steps = train_steps
    return cfg


def run_demo(cfg: DemoConfig, only: set[str] | None = None, force: bool = False) -> dict[str, dict]:
    """Run every demo step (skipping finished ones), then print where the results are; returns the markers."""
    markers = run_steps(demo_steps(), cfg, only=only, force=force)
    summary = cfg.path("eval", "summary.md")
    if summary.is_file() and all(m.get("skipped") for m in markers.values()):
        print("\n" + summary.read_text(encoding="utf-8"))  # a re-run still shows the outcome
    print(f"results: {summary} (Recall@K), {cfg.path('report', 'stats.html')} (data set), "
          f"{cfg.path('recommend', 'recommendation.json')} (a held-out ad); start over: rm -r {cfg.root}")
    return markers


def run_benchmark_corpus(cfg: DemoConfig, only: set[str] | None = None, force: bool = False) -> dict[str, dict]:
    """Build the benchmark-size corpus up to its shards (``CORPUS_STEPS``), printing the time estimate first."""
    n_ads = len(cfg.categories) * cfg.videos_per_category
    print(estimate(cfg.root, tuple(cfg.music_sources), n_ads), flush=True)
    markers = run_steps(demo_steps(), cfg, only=only or set(CORPUS_STEPS), force=force)
    print(f"benchmark corpus: shards in {cfg.path('shards')}; next: yuyin benchmark --shards {cfg.path('shards')} "
          "--seeds 0,1,2 (or make bench-yuyin)")
    return markers

