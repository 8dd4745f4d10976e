"""Reading and writing Parquet manifests: a base file plus parts, compacted incrementally (LSM-like).

This is the entry point callers import. A manifest at ``manifests/c98k.parquet`` (the base) may
have a sibling folder ``manifests/c98k.parts/`` holding parts that stages flush
(``parts.write_part``, the one part writer). Reads merge the base and the parts (``reader``, the
one reader: newest row per key, ``TOMBSTONE`` rows delete their key, rows from before the
per-stage columns upgraded by ``legacy``), so a killed run loses at most the rows it had not yet
flushed. Compaction (``compact``) never rewrites the base per flush. Every file is written
atomically and fsync'd before what it replaces is deleted.

Modules below this one, each with one job, import each other in one direction only:
``schema`` <- ``files`` <- ``parts`` <- ``legacy``/``reader`` <- ``compact`` <- ``writer`` <- ``io``;
``scan`` and ``done_keys`` read through ``reader``; ``status``, ``lock`` and ``corrections`` stand alone.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pyarrow as pa

from commercial98k.manifest.compact import compact
from commercial98k.manifest.files import ManifestError, read_file, write_table
from commercial98k.manifest.parts import drop_parts, list_parts, part_order, parts_dir, write_part
from commercial98k.manifest.reader import dedupe_latest, manifest_exists, read_merged, without_tombstones
from commercial98k.manifest.schema import (
    TOMBSTONE,
    Problem,
    conform,
    guess_kind,
    rows_to_table,
    validate_table,
)
from commercial98k.manifest.writer import ManifestWriter

__all__ = ["TOMBSTONE", "ManifestError", "ManifestWriter", "compact", "dedupe_latest", "drop_parts", "list_parts",
           "manifest_exists", "part_order", "parts_dir", "problems_in", "read_manifest", "without_tombstones",
           "write_manifest", "write_rows_part"]


def read_manifest(path: str | os.PathLike, kind: str | None = None, with_parts: bool = True,
                  validate: bool = True) -> pa.Table:
    """Read a manifest (file plus pending parts), newest row per key, conformed to its schema.

    Raises ``ManifestError`` naming the file for a missing or unreadable file, a manifest of
    the other kind (a videos manifest where clips are expected, or the reverse), one without
    its key or ``status`` column, a column of the wrong type, or (``validate``) the first
    problem ``validate_table`` finds.
    """
    merged = read_merged(path, kind, with_parts)
    if validate:
        problems = validate_table(merged, kind or guess_kind(merged.schema), max_problems=2)
        if problems:
            more = " (and more)" if len(problems) > 1 else ""
            raise ManifestError(f"{path}: {problems[0]}{more}; fix it or write it again "
                                f"(`c98k validate {path}` lists every problem)")
    return merged


def write_manifest(table: pa.Table | list[dict], path: str | os.PathLike, kind: str | None = None,
                   validate: bool = True) -> Path:
    """Write a whole manifest atomically (temp file, then rename), then drop the parts it replaces."""
    path = Path(path)
    stale = list_parts(path)
    if isinstance(table, list):
        if kind is None:
            raise ValueError("kind is required when writing rows")
        table = rows_to_table(table, kind)
    kind = kind or guess_kind(table.schema)
    table = conform(table, kind)
    if validate:
        problems = validate_table(table, kind)
        if problems:
            raise ManifestError(f"{path}: refusing to write an invalid manifest: {problems[0]}"
                                + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    write_table(table, path)
    drop_parts(path, stale)
    return path


def write_rows_part(path: str | os.PathLike, kind: str, rows: list[dict]) -> Path | None:
    """Write ``rows`` as one part that sorts after every existing part, so its rows win (``parts.write_part``)."""
    return write_part(path, kind, rows)


def problems_in(path: str | os.PathLike, kind: str | None = None) -> list[Problem]:
    """Validate a manifest as stored (no conforming): the base file, then each part that outlived
    its run (tombstones aside); a part's problems name the part file."""
    path = Path(path)
    parts = list_parts(path)
    problems = validate_table(read_file(path), kind) if path.exists() or not parts else []
    for part in parts:
        table = without_tombstones(read_file(part))
        problems += [dataclasses.replace(p, message=f"{p.message} (in {part.name})")
                     for p in validate_table(table, kind)]
    return problems
