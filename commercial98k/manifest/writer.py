"""``ManifestWriter``: rows appended to a manifest as parts while a stage runs."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from commercial98k.manifest.compact import compact, merge_parts
from commercial98k.manifest.parts import write_part


class ManifestWriter:
    """Appends rows to a manifest as parts, flushed every ``flush_every`` rows or seconds.

    Use as a context manager; each flush merges similar-size parts, and a clean exit runs
    ``compact`` (the base is rewritten only when the parts outweigh it).
    Rows with an existing key replace the old row (newest wins).
    """

    def __init__(self, path: str | os.PathLike, kind: str, flush_every: int = 64, flush_seconds: float = 30.0):
        self.path = Path(path)
        self.kind = kind
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self._rows: list[dict] = []
        self._last_flush = time.monotonic()
        self._tag = uuid.uuid4().hex[:8]

    def add(self, row: dict) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.flush_every or time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def extend(self, rows: Iterable[dict]) -> None:
        for r in rows:
            self.add(r)

    def flush(self) -> None:
        """Write buffered rows as one part file (``parts.write_part``), then merge similar-size parts."""
        self._last_flush = time.monotonic()
        if not self._rows:
            return
        write_part(self.path, self.kind, self._rows, writer=self._tag)
        self._rows = []
        merge_parts(self.path, self.kind)

    def close(self) -> None:
        self.flush()
        compact(self.path, self.kind)

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Flush what finished even on error or Ctrl-C; compact only on a clean exit.
        self.flush()
        if exc_type is None:
            compact(self.path, self.kind)
