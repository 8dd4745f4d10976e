"""``c98k validate``: check a manifest against the schema."""

from __future__ import annotations

import sys

import click

from commercial98k.manifest.io import problems_in
from commercial98k.manifest.schema import SCHEMAS


@click.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--kind", type=click.Choice(sorted(SCHEMAS)), default=None,
              help="Manifest kind; default: clips if the file has a clip_id column, else videos.")
@click.option("--max-problems", default=50, show_default=True, help="Stop listing after this many.")
def command(path: str, kind: str | None, max_problems: int) -> None:
    """Check a Parquet manifest: columns and types, unique ids, spans inside the video, value ranges.

    Prints one line per problem (row, column, cause) and exits 1 if there is any.

    \b
    Examples:
      c98k validate manifests/c98k.parquet
      c98k validate manifests/videos.parquet --kind videos --max-problems 10
    """
    problems = problems_in(path, kind)
    for p in problems[:max_problems]:
        click.echo(f"{path}: {p}")
    if problems:
        click.echo(f"{path}: {len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo(f"{path}: ok")
