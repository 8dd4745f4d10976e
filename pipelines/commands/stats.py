"""``c98k stats``: summary of a manifest plus an HTML report with plots."""

from __future__ import annotations

import click

from commercial98k.export.stats import format_summary, write_report
from pipelines.options import DEFAULT_CLIPS_MANIFEST


@click.command("stats")
@click.option("--manifest", default=DEFAULT_CLIPS_MANIFEST, show_default=True, type=click.Path(dir_okay=False),
              help="A clips or videos manifest.")
@click.option("--report", default="reports/stats.html", show_default=True, type=click.Path(dir_okay=False),
              help="Where to write the HTML report.")
@click.option("--no-report", is_flag=True, help="Only print the summary.")
@click.option("--top", "top_n", type=click.IntRange(1), default=20, show_default=True, help="Tags to list.")
def command(manifest: str, report: str, no_report: bool, top_n: int) -> None:
    """Print clips per category and status, durations, music reuse, tags, failures by cause, where each
    clip's training category comes from and the corrections made in `c98k browse` (with the prediction's
    accuracy on them); write an HTML report with plots (categories, durations, valence/arousal, tags, reuse, failures).

    \b
    Examples:
      c98k stats
      c98k stats --manifest manifests/videos.parquet --no-report
      c98k stats --report reports/run2.html --top 50
    """
    summary = write_report(manifest, None if no_report else report, top_n)
    click.echo(format_summary(summary))
    if not no_report:
        click.echo(f"report: {report}")
