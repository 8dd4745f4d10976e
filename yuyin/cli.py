"""The ``yuyin`` command line: train, evaluate, recommend, benchmark (flags only; work is in ``yuyin.*``)."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import click

from pipelines.errors import CliGroup

DEFAULT_MANIFEST = "manifests/c98k.parquet"

#: seconds a torchrun rank that refuses the run at start waits before it exits (see ``train``)
PEER_GRACE_S = 2.0
#: SIGTERMs held back while a torchrun rank runs its start check (``_hold_sigterm``)
_held: list[int] = []


def _hold_sigterm() -> None:
    """Under torchrun (``WORLD_SIZE`` > 1) hold SIGTERM until ``yuyin train``'s start check has run.

    When one rank refuses the run, torchrun stops the others at once; a rank still starting
    would die silently. Held, it finishes the same check (about a second, no torch) and prints
    the same one-line error, then exits."""
    from .ddp_guard import env_world_size

    if env_world_size() > 1:
        signal.signal(signal.SIGTERM, lambda signum, frame: _held.append(signum))


def _release_sigterm() -> None:
    """Back to the default SIGTERM; exit now if one arrived while held."""
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _held:
        raise SystemExit(128 + signal.SIGTERM)


_hold_sigterm()


def resolve_shards(manifest: str | None, shards: str | None) -> Path:
    """``--shards``, else ``shards/`` beside the manifest's project (``manifests/x.parquet`` -> ``./shards``)."""
    if shards:
        path = Path(shards)
    else:
        m = Path(manifest or DEFAULT_MANIFEST)
        path = (m.parent.parent if m.parent.name == "manifests" else m.parent) / "shards"
    if not (path / "index.json").is_file():
        raise FileNotFoundError(f"no shards at {path} (no index.json): run `c98k build-shards` or pass --shards")
    if manifest and not shards and Path(manifest).is_file():
        from commercial98k.storage.files import sha256_file

        built_from = json.loads((path / "index.json").read_text(encoding="utf-8")).get("manifest", {})
        if built_from.get("sha256") and built_from["sha256"] != sha256_file(manifest):
            click.echo(f"warning: {path} was built from another version of {manifest}; "
                       "run `c98k build-shards` to refresh it", err=True)
    return path


def check_splits(shards: Path, needed: dict[str, str], show_table: bool = False) -> None:
    """Refuse (one line) a needed split that is empty; with ``show_table`` print samples per split x category.

    ``needed``: split -> the flag that asks for it (named in the error).
    """
    from commercial98k.export.report import dropped_lines, split_table

    from .data import load_index

    index = load_index(shards)
    if show_table and int(os.environ.get("RANK", "0")) == 0:
        for line in split_table(index) + dropped_lines(index):
            click.echo(line)
    for split, flag in needed.items():
        if split not in index["splits"]:
            raise ValueError(f"{shards}: no split {split!r} (the index has {', '.join(index['splits'])}); "
                             f"change {flag}")
        if not index["splits"][split].get("samples"):
            raise ValueError(f"{shards}: split {split!r} is empty, but {flag} needs it; rebuild with "
                             "`c98k build-shards --split-fractions` giving it a share, or change " + flag)


def _model_opts(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: use KEY=VALUE", param_hint="--model-opt")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out




@click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="commercial98k")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """YuYin: recommend background music for e-commerce video ads.

    \b
    A typical run, after `c98k build-shards`:
      yuyin train --manifest manifests/c98k.parquet        # -> runs/yuyin/last.pt, metrics.csv
      yuyin evaluate --checkpoint runs/yuyin --split test   # Recall@K, median rank, per category
      yuyin benchmark --steps 300                           # CCA, CBVMR, ablations: one table
      yuyin recommend --video ad.mp4 --library shards/ -k 10
    Multi-process: torchrun --nproc_per_node 2 -m yuyin.cli train ...
    """
    logging.basicConfig(level=logging.WARNING - 10 * verbose, format="%(levelname)s %(name)s: %(message)s")
    if ctx.invoked_subcommand != "train":
        _release_sigterm()


def _train_options(f):
    opts = [
        click.option("--manifest", default=DEFAULT_MANIFEST, show_default=True,
                     help="Clips manifest; its shards are looked up in shards/ beside the project."),
        click.option("--shards", default=None, help="Shards folder (with index.json); overrides the lookup."),
        click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="JSON or TOML file with training options (flags override it)."),
        click.option("--steps", type=click.IntRange(1), default=None, help="Optimizer steps [400]."),
        click.option("--batch-size", type=click.IntRange(2), default=None, help="Clips per batch per process [32]."),
        click.option("--lr", type=click.FloatRange(0, min_open=True), default=None, help="Peak learning rate [1e-3]."),
        click.option("--seed", type=int, default=None, help="Seed for weights and data order [0]."),
        click.option("--device", default=None, help="cpu, cuda or cuda:N [cpu]."),
        click.option("--amp", type=click.Choice(["off", "auto", "bf16", "fp16"]), default=None,
                     help="Mixed precision; auto = bf16/fp16 on CUDA, off on CPU [auto]."),
        click.option("--num-workers", type=click.IntRange(0), default=None, help="Loader worker processes [0]."),
        click.option("--threads", type=click.IntRange(0), default=None,
                     help="Torch CPU threads per process; 0 = torch default [1, fastest for this model size]."),
        click.option("--global-negatives/--local-negatives", default=None,
                     help="Under torchrun: contrast against every rank's batch (all-gather) or only this rank's [global]."),
        click.option("--w-video-music", type=click.FloatRange(0), default=None, help="Video-music InfoNCE weight [1]."),
        click.option("--w-video-tag", type=click.FloatRange(0), default=None, help="Video-tag InfoNCE weight [0.5]."),
        click.option("--w-music-tag", type=click.FloatRange(0), default=None, help="Music-tag InfoNCE weight [0.5]."),
        click.option("--w-category", type=click.FloatRange(0), default=None, help="Category cross-entropy weight [0.2]."),
        click.option("--model-opt", "model_opts", multiple=True, metavar="KEY=VALUE",
                     help="Model option (repeatable), e.g. video_encoder=gru, use_wfm=false, hidden=256, "
                          "temperature=0.05, learn_temperature=false."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _config(config_path, shards_path, **flags) -> Any:
    from .config import load_config  # torch-free: `yuyin train` refuses bad shard counts before torch loads

    weights = {"video_music": flags.pop("w_video_music"), "video_tag": flags.pop("w_video_tag"),
               "music_tag": flags.pop("w_music_tag"), "category": flags.pop("w_category")}
    model = _model_opts(flags.pop("model_opts"))
    return load_config(config_path, shards=str(shards_path), weights=weights, model=model, **flags)


@main.command()
@_train_options
@click.option("--checkpoint-dir", default=None, help="Where checkpoints and metrics.csv go [runs/yuyin].")
@click.option("--checkpoint-every", type=click.IntRange(1), default=None, help="Checkpoint every N steps [100].")
@click.option("--eval-every", type=click.IntRange(0), default=None,
              help="Validation Recall@K every N steps into val_metrics.csv [0: never].")
@click.option("--resume", is_flag=False, flag_value="last", default=None, metavar="[PATH]",
              help="Continue from a checkpoint: alone, the last one in --checkpoint-dir.")
def train(manifest, shards, config_path, checkpoint_dir, checkpoint_every, eval_every, resume, **flags) -> None:
    """Train YuYin on the shards of a manifest (exactly resumable; DDP under torchrun)."""
    cfg = _config(config_path, resolve_shards(manifest, shards), checkpoint_dir=checkpoint_dir,
                  checkpoint_every=checkpoint_every, eval_every=eval_every, **flags)
    from .ddp_guard import env_world_size, refuse_at_start

    try:
        refuse_at_start(cfg.shards, cfg.num_workers)  # every rank, before torch and the process group
    except ValueError:
        if env_world_size() > 1:
            time.sleep(PEER_GRACE_S)  # let a rank that started later reach the same check before torchrun stops it
        raise
    _release_sigterm()
    needed = {"train": "yuyin train"}
    if cfg.eval_every:
        needed[cfg.eval_split] = "--eval-every (pass --eval-every 0 to train without validation)"
    check_splits(Path(cfg.shards), needed, show_table=True)
    if resume == "last":
        resume = cfg.checkpoint_dir
    from .train import train as run

    summary = run(cfg, resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"trained {summary['steps']} steps ({summary['samples_per_s']:.0f} samples/s): "
                   f"loss {summary['last'].get('loss', float('nan')):.4f}; checkpoint {summary['checkpoint']}")


@main.command()
@click.option("--checkpoint", default="runs/yuyin", show_default=True, help="Checkpoint file or folder (last.pt).")
@click.option("--manifest", default=DEFAULT_MANIFEST, show_default=True, help="Manifest whose shards to use.")
@click.option("--shards", default=None, help="Shards folder; overrides the lookup.")
@click.option("--split", default="test", show_default=True, help="Split to evaluate.")
@click.option("--out", default=None, help="Write <out>.json and <out>.md (default: next to the checkpoint).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--bootstrap", "n_boot", type=click.IntRange(0), default=2000, show_default=True,
              help="Bootstrap resamples (of test tracks) for the 95 % intervals of v2m R@K and MedR; 0: none.")
def evaluate(checkpoint, manifest, shards, split, out, device, batch_size, n_boot) -> None:
    """Video->music and music->video Recall@1/5/10/25/50 and ranks over unique tracks, per category."""
    from .checkpoint import find_checkpoint
    from .evaluate import evaluate_checkpoint, report_markdown, write_report
    from .stats import METRICS, bootstrap_intervals

    shards_path = resolve_shards(manifest, shards)
    check_splits(shards_path, {split: "--split"})
    report = evaluate_checkpoint(checkpoint, shards_path, split, batch_size, device)
    q = report.get("queries")
    if n_boot and q:
        report["v2m_intervals"] = bootstrap_intervals(q["v2m_rank"], METRICS, n_boot, groups=q["music_id"])
    out = out or str(find_checkpoint(checkpoint).parent / f"eval-{split}")
    write_report(report, out)
    click.echo(report_markdown(report))
    if report.get("v2m_intervals"):
        click.echo("video→music, 95 % bootstrap interval over test tracks (one model; for seeds and "
                   "significance use `yuyin benchmark --seeds`): " + ", ".join(
                       f"{k} {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]"
                       for k, v in report["v2m_intervals"].items()))
    click.echo(f"wrote {out}.json and {out}.md")


@main.command()
@click.option("--video", required=True, type=click.Path(exists=True, dir_okay=False), help="The new ad video.")
@click.option("--library", default="shards", show_default=True, help="Shard library to recommend from.")
@click.option("-k", "--top-k", "k", type=click.IntRange(1), default=10, show_default=True)
@click.option("--checkpoint", default="runs/yuyin", show_default=True, help="Checkpoint file or folder.")
@click.option("--index-dir", default=None, help="Where the music index is saved [<library>/.yuyin-index].")
@click.option("--frame-model", default=None, help="Frame model registry name (default: the training features').")
@click.option("--start", "start_s", type=float, default=None, help="Span start, seconds.")
@click.option("--end", "end_s", type=float, default=None, help="Span end, seconds.")
@click.option("--whole", is_flag=True, help="Use the whole video instead of the planner's main clip.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def recommend(video, library, k, checkpoint, index_dir, frame_model, start_s, end_s, whole, device, as_json) -> None:
    """Rank the library's tracks for a new video (the music index is built once and saved)."""
    from .recommend import recommend_video

    resolve_shards(None, library)  # one line when the library has no index.json
    result = recommend_video(video, checkpoint, library, k, device, index_dir, frame_model,
                             start_s, end_s, whole)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    click.echo(f"{video} [{result['start_s']}..{result['end_s']} s]:")
    for r in result["results"]:
        click.echo(f"{r['rank']:>3}  {r['score']:.3f}  {r['music_id']}  {r['category']}  {r.get('emotion') or ''}")


@main.command()
@_train_options
@click.option("--methods", default=None, help="Comma-separated subset (default: all).")
@click.option("--split", default="test", show_default=True, help="Split every method is evaluated on.")
@click.option("--out", default="runs/benchmark", show_default=True, help="Folder for models and the table.")
@click.option("--seeds", default=None, metavar="0,1,2",
              help="Train every method once per seed and report mean ± 95 % interval over seeds, with a paired "
                   "bootstrap against the best baseline (stats.md); finished runs are reused.")
@click.option("--loco-methods", default=None,
              help="With --seeds: methods of the leave-one-category-out test "
                   "[cbvmr,contrastive,yuyin,yuyin-no-category]; 'none' skips it.")
@click.option("--loco-seeds", default=None, metavar="0,1,2", help="With --seeds: seeds of the leave-one-category-out "
              "test [the same as --seeds].")
@click.option("--bootstrap", "n_boot", type=click.IntRange(100), default=2000, show_default=True,
              help="With --seeds: bootstrap resamples.")
@click.option("--corpus-name", default="", help="With --seeds: the corpus named in the table's title.")
@click.option("--budget", type=click.Choice(["small", "full", "smoke"]), default=None,
              help="With --seeds: tune every method alike on the validation split first (yuyin.tuning; smoke: "
                   "seconds, checks the machinery only). Without it every method runs --steps untuned.")
@click.option("--track-moods", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --seeds: the tracks' true moods for the oracle-emotion run: the demo catalog's "
                   "corpus.json (bench_work/catalog/corpus.json) or a {music_id: mood} JSON.")
@click.option("--estimate", "estimate_only", is_flag=True,
              help="With --seeds --budget: print the measured cost of each budget and stop.")
def benchmark(manifest, shards, config_path, methods, split, out, seeds, loco_methods, loco_seeds, n_boot,
              corpus_name, budget, track_moods, estimate_only, **flags) -> None:
    """CCA, CBVMR, plain contrastive and YuYin ablations on the same data and seed: one table.

    With --seeds: every method and ablation over several seeds, intervals, significance, the
    oracle and shuffled emotion runs and a leave-one-category-out test (yuyin.bench); with
    --budget each method is tuned alike on the validation split first; stats.md, r10.png and
    method_card.md go to --out.
    """
    from .baselines import METHODS, run_benchmark

    cfg = _config(config_path, resolve_shards(manifest, shards), **flags)
    check_splits(Path(cfg.shards), {"train": "yuyin benchmark", split: "--split"})
    if seeds:
        if budget:
            check_splits(Path(cfg.shards), {"val": "--budget (the search chooses on the validation split)"})
        _stat_benchmark(cfg, out, seeds, methods, loco_methods, loco_seeds, split, n_boot, corpus_name,
                        {"budget": budget, "track_moods": track_moods, "estimate_only": estimate_only})
        return
    chosen = tuple(m.strip() for m in methods.split(",")) if methods else METHODS
    run_benchmark(cfg, out, chosen, split)
    click.echo(Path(out, "benchmark.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {out}/benchmark.md and benchmark.csv")


def _csv_list(text: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (text or "").split(",") if x.strip())


def _seed_list(text: str | None, hint: str) -> list[int]:
    try:
        return [int(x) for x in _csv_list(text)]
    except ValueError:
        raise click.BadParameter(f"{text!r}: use comma-separated integers, e.g. 0,1,2", param_hint=hint) from None


def _stat_benchmark(cfg, out, seeds, methods, loco_methods, loco_seeds, split, n_boot, corpus_name,
                    tuning: dict[str, Any]) -> None:
    from .bench import LOCO_METHODS, STAT_METHODS, run_stat_benchmark
    from .emotion_input import EMOTION_INPUTS

    seed_list, loco_list = _seed_list(seeds, "--seeds"), _seed_list(loco_seeds, "--loco-seeds")
    loco = () if loco_methods == "none" else (_csv_list(loco_methods) or LOCO_METHODS)
    chosen = _csv_list(methods)
    if not chosen:
        oracle = [m for m in EMOTION_INPUTS if EMOTION_INPUTS[m] == "oracle"]
        chosen = tuple(m for m in STAT_METHODS if tuning["track_moods"] or m not in oracle)
        if not tuning["track_moods"]:
            click.echo(f"note: no --track-moods, so no {', '.join(oracle)} run", err=True)
    md = run_stat_benchmark(cfg, out, seed_list, chosen, loco, split, n_boot, corpus_name, loco_list or None,
                            say=click.echo, **tuning)
    if tuning["estimate_only"]:
        return
    click.echo(md)
    click.echo(f"wrote {out}/stats.md, stats.json, r10.png and method_card.md")


if __name__ == "__main__":
    main()
