"""What a shard build kept and dropped: samples per split x category, drops by reason, empty splits.

``c98k build-shards`` prints these after a build and ``yuyin train`` before training, so no
split shrinks silently. The counts come from ``index.json`` (``split_categories``, written by
``build_shards``; older indexes only have per-split totals).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from commercial98k.manifest.corrections import Applied

SPLITS = ("train", "val", "test")


def split_category_counts(rows: list[dict], skipped: list[dict], column: str = "category") -> dict[str, dict[str, int]]:
    """{split: {category: samples}} of the rows that became samples (``skipped`` clip ids excluded);
    with ``column="category_source"``: samples per source (crawl, corrected, predicted)."""
    gone = {s["clip_id"] for s in skipped}
    out: dict[str, Counter] = {s: Counter() for s in SPLITS}
    for r in rows:
        if r["clip_id"] not in gone:
            out.setdefault(r["split"], Counter())[r.get(column) or "?"] += 1
    return {s: dict(sorted(c.items())) for s, c in out.items()}


def corrections_summary(applied: Applied) -> dict[str, Any]:
    """What the corrections file changed in a build (index.json ``corrections``)."""
    return {"categories": len(applied.categories), "unusable": dict(Counter(applied.unusable.values())),
            "rejected_joins": applied.rejected, "unknown_clips": applied.unknown_clips}


def split_table(index: dict[str, Any]) -> list[str]:
    """Lines of a samples table: one row per category, one column per split, with totals."""
    per = index.get("split_categories")
    splits = list(index.get("splits", {})) or list(SPLITS)
    if not per:  # an index from before split_categories: totals only
        return ["samples: " + ", ".join(f"{s} {index['splits'][s].get('samples', 0)}" for s in splits)]
    cats = sorted({c for s in splits for c in per.get(s, {})})
    sources = index.get("category_sources") or {}
    names = [f"source {c}" for c in sorted({c for s in splits for c in sources.get(s, {})})]
    width = max([len("category"), len("total")] + [len(c) for c in cats + names])
    lines = [f"{'category':<{width}} " + " ".join(f"{s:>7}" for s in splits)]
    for c in cats:
        lines.append(f"{c:<{width}} " + " ".join(f"{per.get(s, {}).get(c, 0):>7}" for s in splits))
    lines.append(f"{'total':<{width}} " + " ".join(f"{sum(per.get(s, {}).values()):>7}" for s in splits))
    for name in names:  # where each sample's category came from
        src = name.removeprefix("source ")
        lines.append(f"{name:<{width}} " + " ".join(f"{sources.get(s, {}).get(src, 0):>7}" for s in splits))
    return lines


def dropped_lines(index: dict[str, Any]) -> list[str]:
    """Why manifest rows did not become samples: filters (with the flag) and skipped inputs, with totals."""
    lines = []
    flags = {"status": "--status", "category": "--category", "min_duration": "--min-duration",
             "has_music": "--has-music/--any-music", "min_category_confidence": "--min-category-confidence"}
    filtered = index.get("filtered_out") or {}
    if filtered:
        parts = ", ".join(f"{k} {v} ({flags.get(k, '')})".replace(" ()", "") for k, v in sorted(filtered.items()))
        lines.append(f"dropped by filters: {sum(filtered.values())} ({parts})")
    corr = index.get("corrections") or {}
    if corr.get("unusable"):
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(corr["unusable"].items()))
        lines.append(f"dropped, marked unusable in the corrections: {sum(corr['unusable'].values())} ({reasons})")
    if corr.get("categories") or corr.get("rejected_joins") or corr.get("unknown_clips"):
        lines.append(f"corrections applied: {corr.get('categories', 0)} categories, {corr.get('rejected_joins', 0)} "
                     f"clips split off a rejected music join; {corr.get('unknown_clips', 0)} name no clip of the "
                     "manifest")
    skipped = index.get("skipped") or {}
    if skipped.get("count"):
        causes = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.get("by_cause", {}).items()))
        lines.append(f"dropped, inputs missing: {skipped['count']} ({causes})")
    return lines


def empty_split_warnings(index: dict[str, Any]) -> list[str]:
    """A loud line for every empty split, naming the command that needs it and the flag to change."""
    needs = {"train": "yuyin train", "val": "yuyin train --eval-every / yuyin evaluate --split val",
             "test": "yuyin evaluate / yuyin benchmark"}
    out = []
    for split in SPLITS:
        if not index.get("splits", {}).get(split, {}).get("samples"):
            out.append(f"WARNING: split {split!r} is EMPTY: {needs[split]} cannot use it. Give it a share with "
                       "--split-fractions (e.g. 0.7,0.15,0.15) or add clips (the splits are grouped by music_id, "
                       "so a few tracks give few groups)")
    return out
