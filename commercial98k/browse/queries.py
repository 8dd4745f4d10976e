"""Filters, sort and paging over the clip index (``browse.index``), and the failures view.

Every filter is an Arrow compute kernel over the whole index column (no Python loop over rows);
only the rows of the requested page become dicts.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from commercial98k.errors import C98kError
from commercial98k.manifest.corrections import Correction

from .index import HIDDEN, IndexData, iter_index_batches

SORTS = ("manifest", "confidence", "-confidence", "p_predicted", "-p_predicted", "clip_id", "music_id")
MAX_LIMIT = 500
TOP_EMOTIONS = 3


class QueryError(C98kError, ValueError):
    """A malformed query parameter; the message names it."""


@dataclass(frozen=True)
class Query:
    """One grid request: filters (None: any), sort and page."""

    category: str | None = None  # the crawl category
    predicted: str | None = None
    disagree: bool = False  # predicted category differs from the crawl category
    conf_min: float | None = None
    conf_max: float | None = None
    emotion: str | None = None
    status: str | None = None
    stopped: str | None = None  # "split no_music": where a row stopped (failures view)
    cause: str | None = None  # the normalised error cause (failures view)
    music_id: str | None = None
    text: str | None = None  # free text over title, on-screen text and tags
    corrected: bool = False  # only clips with a correction
    sort: str = "manifest"
    offset: int = 0
    limit: int = 60


def _flag(name: str, raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("", "0", "false", "no", "off"):
        return False
    raise QueryError(f"{name}: expected true or false, got {raw!r}")


def _number(name: str, raw: str, cast: type, low: float, high: float) -> float | int:
    try:
        value = cast(raw)
    except ValueError:
        raise QueryError(f"{name}: not a number: {raw!r}") from None
    if not (low <= value <= high) or (isinstance(value, float) and math.isnan(value)):
        raise QueryError(f"{name}: {raw} is outside {low:g}..{high:g}")
    return value


def parse_query(params: Mapping[str, str]) -> Query:
    """A ``Query`` from URL parameters; an unknown or malformed one raises ``QueryError`` naming it."""
    known = {f.name for f in fields(Query)}
    kw: dict[str, object] = {}
    for name, raw in params.items():
        if name not in known:
            raise QueryError(f"{name}: unknown parameter; known: {', '.join(sorted(known))}")
        if name in ("disagree", "corrected"):
            kw[name] = _flag(name, raw)
        elif name in ("conf_min", "conf_max"):
            kw[name] = None if raw == "" else _number(name, raw, float, 0.0, 1.0)
        elif name == "offset":
            kw[name] = _number(name, raw, int, 0, 10**12)
        elif name == "limit":
            kw[name] = _number(name, raw, int, 1, MAX_LIMIT)
        elif name == "sort":
            if raw not in SORTS:
                raise QueryError(f"sort: unknown {raw!r}; one of {', '.join(SORTS)}")
            kw[name] = raw
        else:
            kw[name] = raw.strip() or None
    return Query(**kw)


def _eq(column: pa.Array, value: str) -> pa.Array:
    return pc.fill_null(pc.equal(column, pa.scalar(value)), False)


def text_rows(search: pa.Array, text: str) -> np.ndarray:
    """Boolean per row: whether its lower-cased search string (``index._search_text``) contains
    ``text``. Vectorised over all the rows' bytes at once: candidates where the first three bytes
    match, narrowed byte by byte (Arrow's per-string matcher is several times slower here)."""
    if isinstance(search, pa.ChunkedArray):
        search = search.combine_chunks()
    needle = np.frombuffer(text.lower().encode("utf-8"), np.uint8)
    out = np.zeros(len(search), bool)
    _, offsets_buf, data_buf = search.buffers()
    if not len(needle) or data_buf is None or not len(search):
        return out
    offsets = np.frombuffer(offsets_buf, np.int64)[search.offset:search.offset + len(search) + 1]
    hay = np.frombuffer(data_buf, np.uint8)[offsets[0]:offsets[-1]]
    span = len(hay) - len(needle) + 1
    if span <= 0:
        return out
    head = min(3, len(needle))  # whole-array compares for the first bytes: few candidates to gather
    hit = hay[:span] == needle[0]
    for i in range(1, head):
        hit &= hay[i:span + i] == needle[i]
    pos = np.flatnonzero(hit)
    for i in range(head, len(needle)):
        pos = pos[hay[pos + i] == needle[i]]
    ends = offsets - offsets[0]
    rows = np.searchsorted(ends, pos, side="right") - 1
    inside = pos + len(needle) <= ends[rows + 1]  # not across two rows
    out[rows[inside]] = True
    return out


def _mask(data: IndexData, q: Query, corrected_ids: set[str]) -> pa.Array | None:
    """The boolean row mask of the query's filters (None: every row)."""
    t = data.table
    masks = []
    for field, column in (("category", "category"), ("predicted", "predicted_category"), ("emotion", "emotion"),
                          ("status", "status"), ("stopped", "stopped"), ("cause", "cause"),
                          ("music_id", "music_id")):
        value = getattr(q, field)
        if value is not None:
            masks.append(_eq(t.column(column), value))
    if q.disagree:
        pred, crawl = t.column("predicted_category").cast(pa.string()), t.column("category").cast(pa.string())
        masks.append(pc.fill_null(pc.not_equal(pred, crawl), False))
    conf = t.column("category_confidence")
    if q.conf_min is not None:
        masks.append(pc.fill_null(pc.greater_equal(conf, q.conf_min), False))
    if q.conf_max is not None:
        masks.append(pc.fill_null(pc.less_equal(conf, q.conf_max), False))
    if q.corrected:
        masks.append(pc.is_in(t.column("clip_id"), value_set=pa.array(sorted(corrected_ids), pa.string())))
    mask = masks[0] if masks else None
    for m in masks[1:]:
        mask = pc.and_(mask, m)
    if q.text:
        text = pa.array(text_rows(t.column("search"), q.text))
        mask = text if mask is None else pc.and_(mask, text)
    return mask


def _order(table: pa.Table, rows: pa.Array, sort: str, stop: int) -> pa.Array:
    """The first ``stop`` of ``rows`` (row numbers) in ``sort`` order; ties keep manifest order."""
    if sort == "manifest":
        return rows[:stop]
    name, order = (sort[1:], "descending") if sort.startswith("-") else (sort, "ascending")
    keys = pc.take(table.column({"confidence": "category_confidence"}.get(name, name)), rows)
    if pa.types.is_dictionary(keys.type):
        keys = keys.cast(pa.string())
    keyed = pa.table({"k": keys, "r": rows})
    sort_keys = [("k", order), ("r", "ascending")]
    if stop < len(rows) // 4:  # a top-k selection beats sorting every matching row
        idx = pc.select_k_unstable(keyed, k=stop, sort_keys=sort_keys)
        keyed = keyed.take(idx)
    idx = pc.sort_indices(keyed, sort_keys=[(*k, "at_end") for k in sort_keys])
    return pc.take(keyed.column("r"), idx)[:stop]


def _top_emotions(row: np.ndarray, classes: tuple[str, ...]) -> list[list]:
    order = np.argsort(-row, kind="stable")[:TOP_EMOTIONS]
    return [[classes[i], round(float(row[i]), 3)] for i in order if row[i] > 0]


def _page(data: IndexData, picked: pa.Array, corrections: Mapping[str, list[Correction]]) -> list[dict]:
    """The rows ``picked`` (row numbers) as dicts, with their top emotions and corrections."""
    page = data.table.drop_columns(list(HIDDEN)).take(picked).to_pylist()
    for i, row in zip(picked.to_pylist(), page, strict=True):
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                row[k] = None  # JSON has no NaN
        row["top_emotions"] = _top_emotions(data.emotions[i], data.emotion_classes)
        row["corrections"] = [_correction_dict(c) for c in corrections.get(row["clip_id"], [])]
    return page


def _matching(data: IndexData, q: Query, corrected: set[str]) -> pa.Array:
    """Row numbers of the rows that pass the query's filters, in manifest order."""
    mask = _mask(data, q, corrected)
    return pa.array(np.arange(data.table.num_rows, dtype=np.int64)) if mask is None else \
        pc.indices_nonzero(mask).cast(pa.int64())


class MatchCache:
    """The matching rows of the last few filters over one index, so that paging through a filter,
    or sorting it another way, does not filter a million rows again."""

    def __init__(self, size: int = 16):
        self._size = size
        self._data: IndexData | None = None
        self._rows: OrderedDict[tuple, pa.Array] = OrderedDict()
        self._lock = threading.Lock()

    def rows(self, data: IndexData, q: Query, corrected: set[str]) -> pa.Array:
        key = (replace(q, sort="manifest", offset=0, limit=1), frozenset(corrected) if q.corrected else None)
        with self._lock:
            if self._data is not data:
                self._data, self._rows = data, OrderedDict()
            if key in self._rows:
                self._rows.move_to_end(key)
                return self._rows[key]
        rows = _matching(data, q, corrected)
        with self._lock:
            if self._data is data:
                self._rows[key] = rows
                while len(self._rows) > self._size:
                    self._rows.popitem(last=False)
        return rows


def run_query(data: IndexData, q: Query, corrections: Mapping[str, list[Correction]] | None = None,
              cache: MatchCache | None = None) -> dict:
    """``{"total", "offset", "rows"}``: the query's page; each row carries its ``corrections``."""
    corrections = corrections or {}
    rows = cache.rows(data, q, set(corrections)) if cache else _matching(data, q, set(corrections))
    picked = _order(data.table, rows, q.sort, min(len(rows), q.offset + q.limit))[q.offset:]
    return {"total": len(rows), "offset": q.offset, "rows": _page(data, picked, corrections)}


def stream_query(manifest: str | os.PathLike, q: Query, corrections: Mapping[str, list[Correction]] | None = None,
                 batch_rows: int = 8192) -> dict:
    """``run_query`` in manifest order without an index: reads batches only until the page is full
    (``total`` is None: not counted). For the first seconds of a large manifest, while the index builds."""
    if q.sort != "manifest":
        raise QueryError(f"sort: {q.sort!r} needs the index (only manifest order streams)")
    corrections = corrections or {}
    need, skipped, rows = q.offset + q.limit, 0, []
    for batch in iter_index_batches(manifest, batch_rows):
        mask = _mask(batch, q, set(corrections))
        hits = pa.array(np.arange(batch.table.num_rows, dtype=np.int64)) if mask is None else \
            pc.indices_nonzero(mask).cast(pa.int64())
        drop = min(len(hits), q.offset - skipped)
        skipped += drop
        rows += _page(batch, hits[drop:drop + need - skipped - len(rows)], corrections)
        if skipped + len(rows) >= need:
            break
    return {"total": None, "offset": q.offset, "rows": rows}


def _correction_dict(c: Correction) -> dict:
    return {f.name: getattr(c, f.name) for f in fields(c)}


def failures(data: IndexData, examples: int = 3) -> list[dict]:
    """Rows that stopped, grouped by (where they stopped, normalised cause), largest group first."""
    t = data.table
    rows = pc.indices_nonzero(pc.is_valid(t.column("stopped")))
    if not len(rows):
        return []
    small = pa.table({"stopped": pc.take(t.column("stopped"), rows).cast(pa.string()),
                      "cause": pc.fill_null(pc.take(t.column("cause"), rows).cast(pa.string()), ""),
                      "clip_id": pc.take(t.column("clip_id"), rows)})
    grouped = small.group_by(["stopped", "cause"]).aggregate([("clip_id", "count"), ("clip_id", "list")])
    out = []
    for g in grouped.to_pylist():
        stage, _, status = g["stopped"].partition(" ")
        out.append({"stopped": g["stopped"], "stage": stage if status else "", "status": status or stage,
                    "cause": g["cause"] or None, "count": g["clip_id_count"],
                    "examples": g["clip_id_list"][:examples]})
    out.sort(key=lambda g: (-g["count"], g["stopped"], g["cause"] or ""))
    return out


def facets(data: IndexData) -> dict:
    """Values (with counts) of the filterable columns, for the filter menus."""
    t = data.table
    out: dict[str, object] = {"rows": t.num_rows, "emotion_classes": list(data.emotion_classes)}
    for name in ("category", "predicted_category", "emotion", "status"):
        counts = pc.value_counts(t.column(name).cast(pa.string())).to_pylist()
        out[name] = sorted(([c["values"], c["counts"]] for c in counts if c["values"] is not None),
                           key=lambda vc: (-vc[1], vc[0]))
    return out


def find_clip(data: IndexData, clip_id: str) -> dict | None:
    """The index row of one clip (None when absent)."""
    i = pc.index(data.table.column("clip_id"), clip_id).as_py()
    if i < 0:
        return None
    row = data.table.drop_columns(list(HIDDEN)).slice(i, 1).to_pylist()[0]
    row["top_emotions"] = _top_emotions(data.emotions[i], data.emotion_classes)
    return row
