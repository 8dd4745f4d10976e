"""Click options shared by the stage commands."""

from __future__ import annotations

import click

from commercial98k.engine.runner import ENGINES

DEFAULT_VIDEOS_MANIFEST = "manifests/videos.parquet"
DEFAULT_CLIPS_MANIFEST = "manifests/c98k.parquet"


def data_root(f):
    return click.option("--data-root", default="data", show_default=True, type=click.Path(file_okay=False),
                        help="Folder for downloaded videos, clips, audio and features (made absolute before "
                             "work is dispatched; with --engine ray on several machines it must be on a "
                             "filesystem every node mounts at the same path).")(f)


def engine_options(f):
    """--workers, --engine, --address."""
    f = click.option("--address", default=None,
                     help="Ray cluster address (with --engine ray); default: $RAY_ADDRESS, else start a local Ray. "
                          "Every node must see --data-root at the same path (checked before work starts).")(f)
    f = click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True, is_eager=True,
                     help="local: a thread pool on this machine; ray: a pool of Ray actors on a cluster (one per --workers).")(f)
    f = click.option("--workers", "-j", type=click.IntRange(1, 4096), default=None,
                     help="Items processed at once [local: 1; ray: the cluster's CPUs, or its GPUs / "
                          "--gpus-per-worker for GPU stages].")(f)
    return f


def gpu_option(f):
    """--gpus-per-worker: GPUs (fractions allowed) each Ray worker (actor) reserves; its device comes from Ray."""
    return click.option("--gpus-per-worker", type=click.FloatRange(0), default=0.0, show_default=True, is_eager=True,
                        help="With --engine ray: GPUs each worker reserves (e.g. 0.25: four workers share one GPU); "
                             "the worker's device is the GPU Ray assigned.")(f)


def _check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from commercial98k.models.registry import check_device  # imports torch: only when a command runs

    if ctx.params.get("engine") == "ray" and (ctx.params.get("gpus_per_worker") or 0) > 0:
        return value  # the device is the GPU Ray assigns each worker, not one of this machine's
    try:
        return check_device(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def device_option(f):
    """--device, checked before any work starts (an unknown or absent device is a usage error)."""
    return click.option("--device", default="cpu", show_default=True, callback=_check_device,
                        help="Torch device for model inference: cpu, cuda, cuda:1 ...")(f)
