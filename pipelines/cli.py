"""The ``c98k`` command line: a thin Click layer over the stages in ``pipelines``."""

from __future__ import annotations

import importlib
import logging

import click

# Command modules, in the order a user runs them. Each exposes ``command``.
COMMAND_MODULES = ["fetch", "split", "label", "emotion", "build_shards", "stats", "validate", "demo"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


for _name in COMMAND_MODULES:  # a command module that fails to import is a bug: let it raise
    main.add_command(importlib.import_module(f"pipelines.commands.{_name}").command)


if __name__ == "__main__":
    main()
