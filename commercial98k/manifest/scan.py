"""Stream a manifest in record batches instead of materialising every row.

``scan_manifest`` yields the one reader's pieces (``reader.merged_pieces``: base plus parts, newest
row per key, tombstones dropped, legacy rows upgraded) batch by batch, so a stage can plan a
million-row manifest with a driver of a few hundred MB. ``iter_pending`` turns only the rows a
planner selects into dicts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pyarrow as pa

from commercial98k.manifest.reader import merged_pieces


def scan_manifest(path: str | os.PathLike, kind: str, columns: list[str] | None = None,
                  batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
    """Record batches of the key and ``columns`` (default: all) of the manifest, newest row per key;
    a requested column the manifest lacks is null."""
    for piece in merged_pieces(path, kind, columns, batch_rows):
        yield from piece.to_batches(max_chunksize=batch_rows)


def iter_pending(path: str | os.PathLike, kind: str, columns: list[str],
                 select: Callable[[pa.RecordBatch], pa.Array], batch_rows: int = 65_536) -> Iterator[list[dict]]:
    """Lists of row dicts (``columns`` only) of the rows ``select(batch)`` marks True, batch by batch."""
    for batch in scan_manifest(path, kind, columns, batch_rows):
        picked = batch.filter(select(batch))
        if picked.num_rows:
            yield picked.to_pylist()
