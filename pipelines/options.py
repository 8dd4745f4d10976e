"""Click options shared by the stage commands."""

from __future__ import annotations

import click

from commercial98k.engine import ENGINES

DEFAULT_VIDEOS_MANIFEST = "manifests/videos.parquet"
DEFAULT_CLIPS_MANIFEST = "manifests/c98k.parquet"


def data_root(f):
    return click.option("--data-root", default="data", show_default=True, type=click.Path(file_okay=False),
                        help="Folder for downloaded videos, clips, audio and features.")(f)


def engine_options(f):
    """--workers, --engine, --address."""
    f = click.option("--address", default=None, help="Ray cluster address (with --engine ray); default: start a local Ray.")(f)
    f = click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
                     help="local: a thread pool on this machine; ray: Ray tasks on a cluster.")(f)
    f = click.option("--workers", "-j", type=click.IntRange(1, 512), default=1, show_default=True,
                     help="Items processed at once.")(f)
    return f


def _check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from commercial98k.models.registry import check_device  # imports torch: only when a command runs

    try:
        return check_device(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def device_option(f):
    """--device, checked before any work starts (an unknown or absent device is a usage error)."""
    return click.option("--device", default="cpu", show_default=True, callback=_check_device,
                        help="Torch device for model inference: cpu, cuda, cuda:1 ...")(f)
