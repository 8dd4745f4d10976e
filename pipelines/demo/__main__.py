"""``python -m pipelines.demo``: the ``c98k demo`` command under its own name (what ``make demo`` runs)."""

from __future__ import annotations

import logging

from pipelines.commands.demo import command


def main() -> None:
    """Entry point of ``python -m pipelines.demo``."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command(prog_name="python -m pipelines.demo")


if __name__ == "__main__":
    main()
