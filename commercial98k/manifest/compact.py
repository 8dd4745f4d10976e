"""Incremental (LSM-like) compaction of a manifest's parts (``<name>.parts/``).

* ``merge_parts``: adjacent parts of one size tier (rows within a factor ``FANOUT``) are merged,
  ``FANOUT`` or more at a time, into one part named after the newest input plus a generation
  (``parts.merged_name``), so it sorts exactly where its inputs did. A flush therefore costs O(log n) amortised row rewrites, never the base.
* ``compact_parts``: merges, and folds every part into the base only when the parts hold at
  least ``FOLD_RATIO`` times the base's rows (amortised O(1) base rewrites per row), or ``full``.

Crash safety: an output is written atomically (temp file, rename) before any input is deleted.
A crash in between leaves the inputs beside the output; they sort before it (merge) or are a
newest suffix of what the base already holds (fold, inputs deleted oldest first), so readers'
newest-wins gives the same rows, and the next compaction removes the duplicates.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pyarrow as pa

from commercial98k.manifest.files import check_file, read_file, write_table
from commercial98k.manifest.parts import drop_parts, list_parts, part_order, part_rows, write_part
from commercial98k.manifest.reader import dedupe_latest, read_merged
from commercial98k.manifest.schema import KEYS, conform, guess_kind, schema_for

#: parts merged together once this many adjacent ones share a size tier
FANOUT = 8
#: the parts are folded into the base once they hold this fraction of its rows
FOLD_RATIO = 0.5
#: with more parts than this (tiers interleaved), all parts are merged into one
MAX_PARTS = 64


def _tier(rows: int) -> int:
    return int(math.log(max(rows, 1), FANOUT) + 1e-9)


def _find_run(parts: list[Path], rows: list[int]) -> tuple[int, int] | None:
    """The smallest-tier maximal run of >= FANOUT adjacent same-tier parts (start, end), or None.

    A run never ends at a part whose merged output already exists (same name base right after
    it: a crash left both), so a new output never overwrites an old one.
    """
    tiers = [_tier(r) for r in rows]
    best: tuple[int, int] | None = None
    i = 0
    while i < len(parts):
        j = i
        while j < len(parts) and tiers[j] == tiers[i]:
            j += 1
        end = j
        while end > i and end < len(parts) and part_order(parts[end])[0] == part_order(parts[end - 1])[0]:
            end -= 1
        if end - i >= FANOUT and (best is None or tiers[i] < tiers[best[0]]):
            best = (i, end)
        i = j
    if best is None and len(parts) > MAX_PARTS:
        return (0, len(parts))
    return best


def merge_run(path: Path, run: list[Path], kind: str | None) -> Path | None:
    """Merge adjacent parts ``run`` (oldest first) into one part; delete the inputs after it is written.

    Returns the new part, or None when a part appeared inside the run meanwhile (then nothing changes).
    """
    tables = []
    for p in run:
        t = read_file(p)
        kind = kind or guess_kind(t.schema)
        if not t.schema.equals(schema_for(kind)):  # a writer's part already has the schema: skip the checks
            check_file(t.schema, p, kind)
            t = conform(t, kind)
        tables.append(t)
    merged = dedupe_latest(pa.concat_tables(tables, promote_options="permissive"), KEYS[kind])  # keeps tombstones
    out = write_part(path, kind, merged, after=run[-1])
    if out is None:  # a crash left an earlier merge's output under this name: never overwrite it
        return None
    lo, hi = part_order(run[0]), part_order(run[-1])
    inputs = set(run)
    if any(lo < part_order(p) < hi and p not in inputs for p in list_parts(path)):
        out.unlink()  # a part written meanwhile sorts inside the run: merging would reorder it
        return None
    for p in run:
        p.unlink(missing_ok=True)
    return out


def merge_parts(path: str | os.PathLike, kind: str | None = None) -> int:
    """Merge same-tier runs of parts until none is left; returns how many merges ran."""
    path = Path(path)
    merges = 0
    while True:
        parts = list_parts(path)
        if len(parts) < FANOUT:
            return merges
        run = _find_run(parts, [part_rows(p) for p in parts])
        if run is None or merge_run(path, parts[run[0]:run[1]], kind) is None:
            return merges
        merges += 1


def fold_into_base(path: Path, kind: str | None) -> None:
    """Rewrite the base with every part folded in (tombstoned rows dropped), then delete those parts."""
    parts = list_parts(path)
    write_table(read_merged(path, kind), path)
    drop_parts(path, parts)  # oldest first: a crash leaves a newest suffix, which the base agrees with


def compact_parts(path: Path, kind: str | None = None, full: bool = False) -> None:
    """Fold the parts into the base when they outweigh it (or ``full``); else merge similar-size parts."""
    parts = list_parts(path)
    if not parts:
        return
    base_rows = part_rows(path) if path.exists() else 0
    if full or sum(part_rows(p) for p in parts) >= FOLD_RATIO * base_rows:
        fold_into_base(path, kind)
    else:
        merge_parts(path, kind)


def compact(path: str | os.PathLike, kind: str | None = None, full: bool = False) -> Path:
    """Compact incrementally: merge similar-size parts, fold them into the base only when they
    outweigh it (or ``full``). Never rewrites the base for a few new rows."""
    compact_parts(Path(path), kind, full=full)
    return Path(path)
