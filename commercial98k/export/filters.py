"""Filters that empty a data set are errors: ``check_filtered`` after ``build-shards`` filters the rows.

``build-shards`` drops rows with ``shards.filter_reason`` (the first filter a row fails). When no
row is left, or a split that the unfiltered ``ok`` rows would fill is left empty, the build
stops with ``EmptyAfterFilters``: one line naming the filter that dropped the most rows (of that
split) and every filter's drop count, so ``c98k build-shards`` exits non-zero instead of writing
an empty data set. Any other way to end with no sample (unknown or missing categories, missing
feature files, unusable marks) is ``EmptyDataSet`` from ``check_not_empty``: one line with the
count per reason and what would change it.

Also which category each clip trains with (``training_category``, ``training_rows``).
"""

from __future__ import annotations

from collections import Counter

from commercial98k.errors import C98kError
from commercial98k.manifest.corrections import Applied, apply_corrections

SPLIT_NAMES = ("train", "val", "test")


class EmptyAfterFilters(C98kError, ValueError):
    """The filters left no sample, or an empty split."""


def _counts(dropped: Counter) -> str:
    return ", ".join(f"{k} dropped {v}" for k, v in dropped.most_common()) or "nothing dropped"


def _setting(filters, name: str) -> str:
    value = getattr(filters, name, None)
    if isinstance(value, tuple):
        value = ",".join(map(str, value))
    return f"--{name.replace('_', '-')} {value}" if value not in (None, "", ()) else name


def check_filtered(all_rows: list[dict], kept_ids: set[str], dropped_by: dict[str, str], split_of: dict[str, str],
                   filters) -> None:
    """Raise ``EmptyAfterFilters`` when the filters left nothing, or emptied a split.

    ``dropped_by`` maps a dropped clip id to the filter that dropped it; ``split_of`` is the split of
    every clip id (assigned before filtering).
    """
    dropped = Counter(dropped_by.values())
    if not kept_ids:
        if not all_rows:
            raise EmptyAfterFilters("the manifest has no rows")
        worst = dropped.most_common(1)[0][0]
        raise EmptyAfterFilters(f"the filters left no sample of {len(all_rows)} rows: {_setting(filters, worst)} "
                                f"dropped {dropped[worst]} ({_counts(dropped)})")
    for split in SPLIT_NAMES:
        ids = [r["clip_id"] for r in all_rows if split_of.get(r["clip_id"]) == split]
        if not ids or any(i in kept_ids for i in ids):
            continue
        here = Counter(dropped_by[i] for i in ids if i in dropped_by)
        content = Counter({k: v for k, v in here.items() if k != "status"})
        if not content:  # only failed/non-ok rows were there: not the filters' doing
            continue
        worst = content.most_common(1)[0][0]
        raise EmptyAfterFilters(f"the filters left split {split!r} empty: {_setting(filters, worst)} dropped "
                                f"{here[worst]} of its {len(ids)} rows ({_counts(here)}); relax the filter or "
                                f"change --split")


# ---- one training category per clip, with its source ----

#: ``--category-source``: which categories a clip may train with. A user's correction wins in every
#: mode (a person fixed the label); then ``any`` takes the crawl category (search, folder, URL-list
#: column) and, without one, the label's prediction; ``crawl`` and ``predicted`` take only that one.
SOURCE_MODES = ("any", "crawl", "predicted")
CATEGORY_SOURCES = ("corrected", "crawl", "predicted")


class EmptyDataSet(C98kError, ValueError):
    """Nothing would reach the shards: the message gives the count per reason and what to change."""


def _prob(row: dict, category: str | None) -> float | None:
    """The label's calibrated probability of ``category`` (``category_probs`` as a dict or map pairs)."""
    probs = row.get("category_probs")
    if not category or not probs:
        return None
    value = (probs if isinstance(probs, dict) else dict(probs)).get(category)
    return None if value is None else float(value)


def training_category(row: dict, corrected: str | None = None,
                      mode: str = "any") -> tuple[str | None, str | None, float | None]:
    """``(category, source, confidence)`` a clip trains with; ``(None, None, None)`` when it has none.

    ``confidence`` is the label's probability of that category: the manifest's ``category_confidence``
    for a crawl category (its probability of the crawl category), ``category_probs`` of the predicted
    one (``category_confidence`` when the crawl category is unknown, which is the same number).
    """
    if mode not in SOURCE_MODES:
        raise ValueError(f"--category-source {mode!r}: one of {', '.join(SOURCE_MODES)}")
    if corrected:
        return corrected, "corrected", _prob(row, corrected)
    crawl, pred = row.get("category"), row.get("predicted_category")
    if mode in ("any", "crawl") and crawl:
        return crawl, "crawl", row.get("category_confidence")
    if mode in ("any", "predicted") and pred:
        conf = _prob(row, pred)
        if conf is None and (not crawl or crawl == pred):
            conf = row.get("category_confidence")
        return pred, "predicted", conf
    return None, None, None


def with_categories(rows: list[dict], corrected: dict[str, str], mode: str) -> list[dict]:
    """Rows with their training ``category``, ``category_source`` and that category's
    ``category_confidence``; the crawl category is kept in ``crawl_category``."""
    out = []
    for r in rows:
        cat, source, conf = training_category(r, corrected.get(r["clip_id"]), mode)
        out.append({**r, "crawl_category": r.get("category"), "category": cat, "category_source": source,
                    "category_confidence": conf})
    return out


def training_rows(rows: list[dict], corrections: list, mode: str) -> tuple[list[dict], list[dict], Applied]:
    """``(rows for the split, rows to build from, what the corrections apply)``: the split sees the
    categories of mode ``any`` (another ``--category-source`` moves no clip to another split); the
    build rows have ``mode``'s categories, rejected joins split off and unusable clips left out."""
    if mode not in SOURCE_MODES:
        raise ValueError(f"--category-source {mode!r}: one of {', '.join(SOURCE_MODES)}")
    rows, applied = apply_corrections(rows, corrections)
    usable = [r for r in with_categories(rows, applied.categories, mode) if r["clip_id"] not in applied.unusable]
    return with_categories(rows, applied.categories, "any"), usable, applied


#: what would change each reason a row did not become a sample (named in the empty-data-set line)
REMEDIES = {
    "status": "--status", "category": "--category", "min_duration": "--min-duration",
    "has_music": "--any-music", "min_category_confidence": "--min-category-confidence",
    "no category": "--category-source any, or run `c98k label` to predict one",
    "unknown category": "add it to commercial98k/data/categories.json, or --category-source predicted",
    "unusable": "the unusable marks in the corrections file",
    "no music_id": "run `c98k split` again",
    "no frame_embedding": "run `c98k label`", "no audio_embedding": "run `c98k label`",
    "frame_embedding": "--data-root, or `c98k label --retry-failed`",
    "audio_embedding": "--data-root, or `c98k label --retry-failed`",
    "tag_embedding": "--data-root, or `c98k label --retry-failed`",
    "clip_path": "--data-root, or drop --with-media", "audio_path": "--data-root, or drop --with-media",
}


def reason_kind(cause: str) -> str:
    """The kind of a skip cause: ``unknown category 'x'`` -> ``unknown category``, ``audio_embedding file
    missing: p`` -> ``audio_embedding``, ``no music_id (...)`` -> ``no music_id``."""
    kind = cause.split(":")[0].split(" file missing")[0].split(" (")[0]
    return "unknown category" if kind.startswith("unknown category") else kind


def check_not_empty(rows: int, reasons: Counter, mode: str = "any") -> None:
    """Raise ``EmptyDataSet`` (one line: count per reason, each with what would change it) when
    ``reasons`` (kind -> rows) account for every one of ``rows`` manifest rows."""
    if sum(reasons.values()) < rows:
        return
    if not rows:
        raise EmptyDataSet("no sample for the shards: the manifest has no rows")
    parts = []
    for kind, n in reasons.most_common():
        if not n:
            continue
        fix = REMEDIES.get(kind)
        if kind == "no category" and mode == "any":
            fix = "run `c98k label` to predict one, or correct it in `c98k browse`"
        parts.append(f"{kind} {n}" + (f" [{fix}]" if fix else ""))
    raise EmptyDataSet(f"no sample for the shards (0 of {rows} rows, --category-source {mode}): " + "; ".join(parts))
