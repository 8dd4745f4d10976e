"""Filters that empty a data set are errors: ``check_filtered`` after ``build-shards`` filters the rows.

``build-shards`` drops rows with ``shards.filter_reason`` (the first filter a row fails). When no
row is left, or a split that the unfiltered ``ok`` rows would fill is left empty, the build
stops with ``EmptyAfterFilters``: one line naming the filter that dropped the most rows (of that
split) and every filter's drop count, so ``c98k build-shards`` exits non-zero instead of writing
an empty data set.
"""

from __future__ import annotations

from collections import Counter

SPLIT_NAMES = ("train", "val", "test")


class EmptyAfterFilters(ValueError):
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
