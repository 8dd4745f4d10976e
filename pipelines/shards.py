"""Stage ``build-shards``: labelled clips manifest -> WebDataset shards + index.json."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from commercial98k.export.report import dropped_lines, split_table
from commercial98k.export.shards import ShardFilters, build_shards
from commercial98k.faults import require_free, shard_bytes, shard_columns
from commercial98k.manifest.io import manifest_exists, read_manifest
from commercial98k.manifest.lock import stage_writes
from commercial98k.manifest.scan import scan_manifest


def run(manifest: str | os.PathLike, out: str | os.PathLike, data_root: str | os.PathLike,
        filters: ShardFilters | None = None, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: int = 0, samples_per_shard: int = 1000, with_media: bool = False,
        min_tag_count: int = 1, verify_sha256: bool = True, progress: bool | None = None,
        min_shards: int = 8, wait: bool = False, on_wait=None) -> dict[str, Any]:
    """Build or update the shards; return the index (see ``commercial98k.export.shards.build_shards``).

    ``<out>/index.json``'s lock is held throughout (``ManifestLocked`` when another build writes
    there, unless ``wait``); the free space under ``out`` is checked first, and a machine fault
    stops the build as one ``EnvironmentFault``."""
    if not manifest_exists(manifest):
        read_manifest(manifest, "clips")  # the usual one-line error, before anything is created
    with stage_writes(Path(out) / "index.json", data_root, wait=wait, manifest_flag="--out", on_wait=on_wait):
        rows = (r for b in scan_manifest(manifest, "clips", shard_columns(with_media)) for r in b.to_pylist())
        require_free(out, shard_bytes(rows, data_root, out, with_media), "build-shards", "--out")
        return build_shards(manifest, out, data_root, filters=filters, fractions=fractions, seed=seed,
                            samples_per_shard=samples_per_shard, with_media=with_media,
                            min_tag_count=min_tag_count, verify_sha256=verify_sha256, progress=progress,
                            min_shards=min_shards)


def summary_lines(index: dict[str, Any], out: str | os.PathLike) -> list[str]:
    """Human summary of a build: samples and shards per split, rebuilt shards, skipped rows."""
    lines = []
    for split, s in index["splits"].items():
        size = sum(sh["bytes"] for sh in s["shards"]) / 1e6
        lines.append(f"{split:5s}: {s['samples']:7d} samples in {len(s['shards']):4d} shard(s), {size:9.1f} MB")
    lines.append(f"rebuilt {len(index['rebuilt_shards'])} shard(s); tag vocabulary {len(index['tag_vocab'])}; "
                 f"dims {index['dims']}")
    lines += split_table(index) + dropped_lines(index)
    lines.append(f"index: {Path(out) / 'index.json'}")
    return lines
