"""The ``c98k`` command line: a thin Click layer over the stages in ``pipelines``."""

from __future__ import annotations

import importlib
import logging

import click

from pipelines.errors import CliGroup

# Command modules, in the order a user runs them. Each exposes ``command``.
COMMAND_MODULES = ["fetch", "split", "label", "emotion", "build_shards", "stats", "validate", "demo"]


@click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="commercial98k")
def main(verbose: int) -> None:
    """Commercial-98K: build video-to-background-music data sets from e-commerce ads.

    \b
    A typical run:
      c98k fetch --category cosmetics --limit 50   # crawl ads with yt-dlp -> manifests/videos.parquet
      c98k split                                   # shots, music segment, clips -> manifests/c98k.parquet
      c98k label                                   # embeddings, emotion, tags, category confidence
      c98k build-shards                            # WebDataset shards for YuYin -> shards/
      c98k stats                                   # summary + HTML report
    Every stage is resumable: run it again and finished work is skipped.
    """
    logging.basicConfig(level=logging.WARNING - 10 * verbose, format="%(levelname)s %(name)s: %(message)s")


for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"pipelines.commands.{_name}")
    except ModuleNotFoundError as _e:
        if _e.name != f"pipelines.commands.{_name}":
            raise
        continue  # command not built yet
    main.add_command(_mod.command)


if __name__ == "__main__":
    main()
