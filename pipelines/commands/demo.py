"""``c98k demo``: the whole pipeline offline on a generated mini corpus (flags only; see ``pipelines.demo``)."""

from __future__ import annotations

import click

from commercial98k.demo.corpus import STYLES
from pipelines.demo import demo_steps, make_config, run_benchmark_corpus, run_demo


@click.command("demo")
@click.option("--work-dir", default="demo_work", show_default=True, type=click.Path(file_okay=False),
              help="Folder for everything the demo makes; re-running skips finished steps.")
@click.option("--videos-per-category", type=click.IntRange(2, 500), default=None,
              help="Ads generated per category [default: 14; 6 with --quick].")
@click.option("--categories", default=None,
              help=f"Comma-separated categories [default: 6 of them]; known: {', '.join(STYLES)}.")
@click.option("--quick", is_flag=True, help="A reduced run: 4 categories x 6 short ads, few training steps.")
@click.option("--train-steps", type=click.IntRange(1), default=None, help="YuYin training steps [default: 300; 60 with --quick].")
@click.option("--workers", "-j", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Items processed at once by each stage.")
@click.option("--seed", default=0, show_default=True, help="Seed of the corpus, the splits and training.")
@click.option("--device", default="cpu", show_default=True, help="Torch device for the models.")
@click.option("--step", "steps", multiple=True, type=click.Choice([s.name for s in demo_steps()]),
              help="Run only this step (repeatable); earlier steps must have run.")
@click.option("--force", is_flag=True, help="Run the steps again even if they are done.")
@click.option("--size", type=click.Choice(["demo", "benchmark"]), default="demo", show_default=True,
              help="benchmark: 363 tracks, 12 categories x 170 short ads, up to the shards (hours; "
                   "resumable; prints its estimate); then `yuyin benchmark --seeds 0,1,2` or `make bench-yuyin`.")
def command(work_dir: str, videos_per_category: int | None, categories: str | None, quick: bool,
            train_steps: int | None, workers: int, seed: int, device: str, steps: tuple[str, ...],
            force: bool, size: str) -> None:
    """Build a small Commercial-style corpus and run fetch, split, label, shards, stats and YuYin on it.

    \b
    Offline: the ads are generated here (real music from immich-memories-music and the music21
    corpus rendered with fluidsynth, ffmpeg pictures, espeak-ng voice-overs), served on a loopback
    web shop and crawled with yt-dlp. Every step leaves a marker in WORK_DIR/.steps; a re-run
    skips the steps whose inputs have not changed.
    """
    cats = tuple(c.strip() for c in categories.split(",") if c.strip()) if categories else ()
    unknown = [c for c in cats if c not in STYLES]
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; known: {', '.join(STYLES)}", param_hint="--categories")
    cfg = make_config(work_dir, cats, videos_per_category, quick, train_steps, size=size, workers=workers,
                      seed=seed, device=device)
    if size == "benchmark":
        run_benchmark_corpus(cfg, only=set(steps) or None, force=force)
    else:
        run_demo(cfg, only=set(steps) or None, force=force)
