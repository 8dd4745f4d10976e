"""The ``c98k`` command line: a thin Click layer over the stages in ``pipelines``."""

from __future__ import annotations

import importlib
import logging

import click

from pipelines.errors import CliGroup

# Command modules, in the order a user runs them. Each exposes ``command``.
COMMAND_MODULES = ["fetch", "split", "label", "emotion", "build_shards", "stats", "browse", "validate", "demo", "doctor"]


class LazyGroup(CliGroup):
    """Imports a command's module only when that command runs (``c98k fetch`` never loads torch)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n.replace("_", "-") for n in COMMAND_MODULES]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = cmd_name.replace("-", "_")
        return self._load(name) if name in COMMAND_MODULES else None

    @staticmethod
    def _load(name: str) -> click.Command:
        """The command of ``pipelines/commands/<name>.py``; a module that fails to import raises."""
        return importlib.import_module(f"pipelines.commands.{name}").command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


if __name__ == "__main__":
    main()
