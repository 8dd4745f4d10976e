"""Exit 3 when a stage's workers crashed: the one rule the stage commands share."""

from __future__ import annotations

import sys

import click


def exit_if_crashed(crashed: int, items: str) -> None:
    """After a stage's summary: ``crashed`` rows failed because their worker crashed or was killed
    (not their input's fault; a rerun retries them), so say so on one line and exit 3."""
    if crashed:
        click.echo(f"error: {crashed} {items} failed because their worker crashed or was killed; "
                   "run again to retry them", err=True)
        sys.exit(3)
