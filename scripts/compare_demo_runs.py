"""Compare two demo work folders: did a change leave the demo's results as they were?

    python scripts/compare_demo_runs.py WORK_A WORK_B [--rel 1e-4] [--metric-tol 1e-3]

Compared, after replacing each folder's own path by ``<work>`` and the loopback shop's port
(it changes per run) by ``PORT``:

* the manifests ``manifests/videos.parquet`` and ``manifests/c98k.parquet``: the same keys, and
  per row every column equal (statuses, music ids, categories, tags, provenance ...), numbers
  within ``--rel`` relative (``crawled_at`` is the clock and is skipped); the feature files a
  row points to (``*_embedding``) equal within float16 rounding;
* ``shards/index.json``: the same splits, sample counts, vocabulary, sizes ... (the shards'
  sha256 differ whenever any feature differs by a bit: listed as notes, not differences);
* the metrics ``eval/report.json``, ``runs/benchmark/benchmark.json`` and
  ``recommend/recommendation.json``: numbers within ``--metric-tol`` (timings skipped).

Prints every difference and exits 1 if there is any (0: the same within the tolerances).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from commercial98k.manifest.io import read_manifest  # noqa: E402

MANIFESTS = (("manifests/videos.parquet", "videos", "video_id"), ("manifests/c98k.parquet", "clips", "clip_id"))
METRIC_FILES = ("eval/report.json", "runs/benchmark/benchmark.json", "recommend/recommendation.json")
SKIPPED_COLUMNS = {"crawled_at"}
SKIPPED_KEYS = {"train_s", "samples_per_s", "seconds", "finished", "built_at"}  # timings and clocks
PORT = re.compile(r"(127\.0\.0\.1|localhost):\d+")


class Diff:
    """Collects (and prints) differences and notes."""

    def __init__(self) -> None:
        self.count = 0
        self.notes = 0

    def add(self, where: str, what: str) -> None:
        self.count += 1
        print(f"DIFF {where}: {what}")

    def note(self, where: str, what: str) -> None:
        self.notes += 1
        print(f"note {where}: {what}")


def normalise(value: Any, roots: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for root in roots:
            value = value.replace(root, "<work>")
        return PORT.sub(r"\1:PORT", value)
    return value


def same(a: Any, b: Any, rel: float, roots_a: tuple[str, ...], roots_b: tuple[str, ...], absolute: float = 0.0) -> bool:
    """Equal after normalising strings; numbers within ``rel`` relative or ``absolute``."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=rel, abs_tol=absolute)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], rel, roots_a, roots_b, absolute) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y, rel, roots_a, roots_b, absolute)
                                        for x, y in zip(a, b, strict=True))
    return normalise(a, roots_a) == normalise(b, roots_b)


def compare_json(a: Any, b: Any, where: str, rel: float, roots: tuple[tuple[str, ...], tuple[str, ...]],
                 diff: Diff, skip: set[str] = SKIPPED_KEYS) -> None:
    """Walk two JSON documents and report each leaf that differs."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k in skip:
                continue
            if k not in a or k not in b:
                diff.add(f"{where}.{k}", "only in " + ("A" if k in a else "B"))
            else:
                compare_json(a[k], b[k], f"{where}.{k}", rel, roots, diff, skip)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and any(
            isinstance(x, (dict, list)) for x in a):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            compare_json(x, y, f"{where}[{i}]", rel, roots, diff, skip)
    elif not same(a, b, rel, *roots, absolute=rel):
        diff.add(where, f"{short(a)} != {short(b)}")


def short(value: Any, n: int = 160) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= n else text[:n] + "..."


def compare_features(a_root: Path, b_root: Path, rel_a: str, rel_b: str, where: str, diff: Diff) -> None:
    """Feature arrays equal within float16 rounding (2e-3 relative to the array's scale)."""
    pa_, pb = a_root / "data" / rel_a, b_root / "data" / rel_b
    if not pa_.is_file() or not pb.is_file():
        diff.add(where, f"feature file missing: {pa_ if not pa_.is_file() else pb}")
        return
    x, y = np.load(pa_).astype(np.float64), np.load(pb).astype(np.float64)
    if x.shape != y.shape:
        diff.add(where, f"shape {x.shape} != {y.shape}")
        return
    scale = max(1.0, float(np.abs(x).max(initial=0.0)))
    worst = float(np.abs(x - y).max(initial=0.0))
    if worst > 2e-3 * scale:
        diff.add(where, f"features differ by up to {worst:.3g} (scale {scale:.3g})")


def compare_manifest(a: Path, b: Path, name: str, kind: str, key: str, rel: float,
                     roots: tuple[tuple[str, ...], tuple[str, ...]], diff: Diff) -> None:
    """Keys, then every column of every common row."""
    if not (a / name).exists() or not (b / name).exists():
        diff.add(name, "missing in " + ("A" if not (a / name).exists() else "B"))
        return
    rows_a = {r[key]: r for r in read_manifest(a / name, kind).to_pylist()}
    rows_b = {r[key]: r for r in read_manifest(b / name, kind).to_pylist()}
    for k in sorted(set(rows_a) ^ set(rows_b)):
        diff.add(f"{name}[{k}]", "row only in " + ("A" if k in rows_a else "B"))
    compared = 0
    for k in sorted(set(rows_a) & set(rows_b)):
        ra, rb = rows_a[k], rows_b[k]
        for col in sorted(set(ra) | set(rb)):
            if col in SKIPPED_COLUMNS:
                continue
            va, vb = ra.get(col), rb.get(col)
            if not same(va, vb, rel, *roots, absolute=1e-6):
                diff.add(f"{name}[{k}].{col}", f"{short(va)} != {short(vb)}")
            elif col.endswith("_embedding") and va:
                compare_features(a, b, va, vb, f"{name}[{k}].{col} ({va})", diff)
        compared += 1
    print(f"{name}: {len(rows_a)} rows in A, {len(rows_b)} in B, {compared} compared")


def compare_index(a: Path, b: Path, roots: tuple[tuple[str, ...], tuple[str, ...]], diff: Diff) -> None:
    """``shards/index.json``; shard and manifest sha256 only as notes (any feature bit changes them)."""
    name = "shards/index.json"
    if not (a / name).is_file() or not (b / name).is_file():
        diff.add(name, "missing in " + ("A" if not (a / name).is_file() else "B"))
        return
    ia, ib = (json.loads((p / name).read_text(encoding="utf-8")) for p in (a, b))
    compare_json(ia, ib, "index", 0.0, roots, diff, skip=SKIPPED_KEYS | {"sha256"})
    for split in sorted(set(ia.get("splits", {})) & set(ib.get("splits", {}))):
        for sa, sb in zip(ia["splits"][split]["shards"], ib["splits"][split]["shards"], strict=False):
            if sa.get("sha256") != sb.get("sha256"):
                diff.note(f"index.splits.{split}.{sa['path']}", "sha256 differs (same samples and size)")
    if ia.get("manifest", {}).get("sha256") != ib.get("manifest", {}).get("sha256"):
        diff.note("index.manifest.sha256", "differs (the manifests hold crawl times and the shop's port)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="one demo work folder")
    ap.add_argument("b", type=Path, help="the other")
    ap.add_argument("--rel", type=float, default=1e-4, help="relative tolerance of manifest numbers")
    ap.add_argument("--metric-tol", type=float, default=1e-3, help="tolerance of the evaluation metrics")
    args = ap.parse_args(argv)
    for p in (args.a, args.b):
        if not p.is_dir():
            print(f"error: {p}: no such folder", file=sys.stderr)
            return 2
    roots = tuple((str(p.resolve()), str(p)) for p in (args.a, args.b))
    roots = (tuple(sorted(set(roots[0]), key=len, reverse=True)), tuple(sorted(set(roots[1]), key=len, reverse=True)))
    diff = Diff()
    for name, kind, key in MANIFESTS:
        compare_manifest(args.a, args.b, name, kind, key, args.rel, roots, diff)
    compare_index(args.a, args.b, roots, diff)
    for name in METRIC_FILES:
        fa, fb = args.a / name, args.b / name
        if not fa.is_file() or not fb.is_file():
            diff.add(name, "missing in " + ("A" if not fa.is_file() else "B"))
            continue
        compare_json(json.loads(fa.read_text(encoding="utf-8")), json.loads(fb.read_text(encoding="utf-8")),
                     name, args.metric_tol, roots, diff)
    print(f"{diff.count} difference(s), {diff.notes} note(s)")
    return 1 if diff.count else 0


if __name__ == "__main__":
    sys.exit(main())
