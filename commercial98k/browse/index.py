"""The in-memory clip index of ``c98k browse``: the columns a page shows or filters on, built by
streaming the manifest (``manifest.scan.scan_manifest``) batch by batch.

The heavy columns never stay in memory: a batch's ``category_probs`` map becomes one float
(the probability of the predicted category) and ``emotion_probs`` one row of a float32 matrix;
fingerprints, shots and embeddings are never read. Repeated strings (categories, statuses,
paths of one video) are dictionary-encoded. The index is rebuilt when the manifest or one of
its parts changes (a stage still writing), checked by file stats on each request.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from commercial98k.export.stats import _error_cause
from commercial98k.manifest.io import list_parts
from commercial98k.manifest.scan import scan_manifest
from commercial98k.manifest.status import STAGES

from ..label.gems import GEMS9

#: read from the manifest; the maps are reduced per batch (``_reduce``)
READ_COLUMNS = ["clip_id", "video_id", "title", "url", "category", "predicted_category", "category_confidence",
                "category_probs", "emotion", "emotion_probs", "valence", "arousal", "tags", "tag_sources",
                "ocr_text", "music_id", "has_music", "dup_group", "status", "error", "video_path", "clip_path",
                "clip_start_s", "clip_end_s", "duration_s",
                *(f"{s}_{w}" for s in STAGES for w in ("status", "error"))]
SEPARATOR = "\x1f"
#: index columns that no page shows
HIDDEN = ("search",)
_DICTIONARY = ("video_id", "category", "predicted_category", "emotion", "status", "video_path", "stopped",
               "cause")


@dataclass(frozen=True)
class IndexData:
    """One build of the index: ``table`` (a row per clip, manifest order), ``emotions`` [rows, classes]."""

    table: pa.Table
    emotions: np.ndarray
    emotion_classes: tuple[str, ...]


def _signature(manifest: Path) -> tuple:
    """What changes when a stage writes the manifest: size and mtime of the base and of every part."""
    files = [manifest, *list_parts(manifest)]
    out = []
    for f in files:
        try:
            st = f.stat()
        except FileNotFoundError:
            continue
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _flat_children(arr: pa.Array, child: str = "values") -> tuple[np.ndarray, pa.Array]:
    """(parent row of each child, children) of a list or map array, slices honoured
    (``list_parent_indices`` does not take maps)."""
    offsets = arr.offsets.to_numpy()
    start, stop = int(offsets[0]), int(offsets[-1])
    parents = np.repeat(np.arange(len(arr)), np.diff(offsets))
    return parents, getattr(arr, child).slice(start, stop - start)


def _uniform(probs: pa.Array) -> tuple[int, pa.Array, pa.Array] | None:
    """(k, keys, items) when every row of map ``probs`` holds the same ``k`` keys in the same order
    (what a stage writes): then a map column is a [rows, k] matrix and needs no per-child parent index.
    Checked on the key bytes (a reshape and compare), not by hashing millions of strings."""
    offsets = probs.offsets.to_numpy()
    steps = np.diff(offsets)
    n = len(steps)
    if probs.null_count or not n or steps[0] == 0 or (steps != steps[0]).any():
        return None
    k = int(steps[0])
    keys = probs.keys.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    if keys.null_count or not pa.types.is_string(keys.type):
        return None
    _, key_offsets, data = keys.buffers()
    ko = np.frombuffer(key_offsets, np.int32)[keys.offset:keys.offset + len(keys) + 1]
    lengths = np.diff(ko).reshape(n, k)
    if (lengths != lengths[0]).any():
        return None
    raw = np.frombuffer(data, np.uint8)[ko[0]:ko[-1]].reshape(n, -1)
    if (raw != raw[0]).any():
        return None
    return k, keys.slice(0, k), probs.items.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def _map_value(probs: pa.Array, wanted: pa.Array) -> pa.Array:
    """Per row, the value of map ``probs`` at key ``wanted`` (null where absent)."""
    n = len(probs)
    if isinstance(probs, pa.ChunkedArray):
        probs = probs.combine_chunks()
    if probs.null_count == n:
        return pa.nulls(n, pa.float32())
    uniform = _uniform(probs)
    if uniform is not None:
        k, keys, items = uniform
        col = pc.fill_null(pc.index_in(wanted, value_set=keys), -1).to_numpy(zero_copy_only=False)
        mat = items.cast(pa.float32()).to_numpy(zero_copy_only=False).reshape(n, k)
        out = np.where(col >= 0, mat[np.arange(n), np.maximum(col, 0)], np.nan).astype(np.float32)
        return pa.array(out, mask=np.isnan(out))
    parents, keys = _flat_children(probs, "keys")
    values = _flat_children(probs, "items")[1].cast(pa.float32())
    hit = pc.fill_null(pc.equal(keys, pc.take(wanted, pa.array(parents))), False).to_numpy(zero_copy_only=False)
    out = np.full(n, np.nan, np.float32)
    out[parents[hit]] = values.to_numpy(zero_copy_only=False)[hit]
    return pa.array(out, mask=np.isnan(out))


def _emotion_matrix(probs: pa.Array, classes: list[str]) -> np.ndarray:
    """``emotion_probs`` maps as a [rows, len(classes)] float32 matrix; unknown classes extend ``classes``."""
    n = len(probs)
    if isinstance(probs, pa.ChunkedArray):
        probs = probs.combine_chunks()
    if probs.null_count == n:
        return np.zeros((n, len(classes)), np.float32)
    uniform = _uniform(probs)
    if uniform is not None:
        k, keys, items = uniform
        names = keys.to_pylist()
        classes.extend(c for c in names if c not in classes)
        out = np.zeros((n, len(classes)), np.float32)
        out[:, [classes.index(c) for c in names]] = items.cast(pa.float32()).to_numpy(
            zero_copy_only=False).reshape(n, k)
        return out
    parents, keys = _flat_children(probs, "keys")
    for k in pc.unique(keys).to_pylist():
        if k is not None and k not in classes:
            classes.append(k)
    col = pc.index_in(keys, value_set=pa.array(classes)).to_numpy(zero_copy_only=False)
    out = np.zeros((n, len(classes)), np.float32)
    items = _flat_children(probs, "items")[1].cast(pa.float32())
    out[parents, col.astype(np.int64)] = items.to_numpy(zero_copy_only=False)
    return out


def _stopped(batch: pa.RecordBatch) -> pa.Array:
    """Where each row stopped (``"split no_music"``): the first stage not ``ok`` (the reader gave rows
    from before the per-stage columns theirs)."""
    out = pa.nulls(batch.num_rows, pa.string())
    for stage in reversed(STAGES):  # the first failing stage wins: apply it last
        s = batch.column(f"{stage}_status")
        bad = pc.fill_null(pc.not_equal(s, "ok"), False)
        out = pc.if_else(bad, pc.binary_join_element_wise(pa.scalar(stage), pc.cast(s, pa.string()), " "), out)
    return out


def _causes(error: pa.Array) -> pa.Array:
    """``error`` with ids, paths and numbers normalised out (the one cause text of ``c98k stats``)."""
    enc = pc.dictionary_encode(error)
    causes = pa.array([_error_cause(e) if e else None for e in enc.dictionary.to_pylist()], pa.string())
    return pc.take(causes, enc.indices)


def _search_text(batch: pa.RecordBatch) -> pa.Array:
    """Title, on-screen text and tags of each row, lower-cased, in one string (``queries.text_rows``
    searches its bytes at once). Fields are joined by a unit separator, which no search contains."""
    tags = pc.fill_null(pc.binary_join(batch.column("tags"), " "), "")
    fields = [pc.fill_null(pc.cast(batch.column(c), pa.string()), "") for c in ("title", "ocr_text")]
    return pc.utf8_lower(pc.binary_join_element_wise(*fields, tags, SEPARATOR)).cast(pa.large_string())


def _reduce(batch: pa.RecordBatch, classes: list[str]) -> tuple[pa.RecordBatch, np.ndarray]:
    """A manifest batch as index columns plus its emotion matrix."""
    p_pred = _map_value(batch.column("category_probs"), batch.column("predicted_category"))
    stopped = _stopped(batch)
    cause = pc.if_else(pc.is_valid(stopped), _causes(batch.column("error")), pa.nulls(batch.num_rows, pa.string()))
    keep = [c for c in READ_COLUMNS if c not in ("category_probs", "emotion_probs")
            and not c.endswith(("_status", "_error"))]
    arrays = [batch.column(c) for c in keep] + [p_pred, stopped, cause, _search_text(batch)]
    names = keep + ["p_predicted", "stopped", "cause", "search"]
    return pa.RecordBatch.from_arrays(arrays, names=names), _emotion_matrix(batch.column("emotion_probs"), classes)


def manifest_batches(manifest: str | os.PathLike, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """``READ_COLUMNS`` of the manifest in record batches, newest row per clip (``scan_manifest``)."""
    yield from scan_manifest(Path(manifest), "clips", READ_COLUMNS, batch_rows)


def iter_index_batches(manifest: str | os.PathLike, batch_rows: int = 131_072) -> Iterator[IndexData]:
    """The manifest (parts included, newest row per clip) as index pieces of ``batch_rows`` rows."""
    classes = list(GEMS9)
    for batch in manifest_batches(manifest, batch_rows):
        b, m = _reduce(batch, classes)
        yield IndexData(pa.Table.from_batches([b]), m, tuple(classes))


def build_index(manifest: str | os.PathLike, batch_rows: int = 131_072) -> IndexData:
    """Stream ``manifest`` into one ``IndexData`` (repeated strings dictionary-encoded)."""
    pieces = list(iter_index_batches(manifest, batch_rows))
    if not pieces:
        empty = pa.RecordBatch.from_pylist([], schema=_reduce_schema())
        return IndexData(pa.Table.from_batches([empty]), np.zeros((0, len(GEMS9)), np.float32), tuple(GEMS9))
    classes = pieces[-1].emotion_classes  # every class seen (later pieces extend the list)
    emotions = np.concatenate([np.pad(p.emotions, ((0, 0), (0, len(classes) - p.emotions.shape[1])))
                               for p in pieces])
    table = pa.concat_tables([p.table for p in pieces])
    del pieces
    columns = [pc.dictionary_encode(table.column(n)).combine_chunks() if n in _DICTIONARY
               else table.column(n).combine_chunks() for n in table.column_names]
    out = IndexData(pa.table(columns, names=table.column_names), emotions, classes)
    del table, columns
    pa.default_memory_pool().release_unused()  # the maps read on the way: half the RSS otherwise
    return out


def _reduce_schema() -> pa.Schema:
    """The index schema (for an empty manifest)."""
    from commercial98k.manifest.schema import CLIP_SCHEMA

    empty = pa.RecordBatch.from_pylist([], schema=pa.schema([CLIP_SCHEMA.field(c) for c in READ_COLUMNS]))
    return _reduce(empty, list(GEMS9))[0].schema


class ClipIndex:
    """The index of one manifest, shared between request threads.

    The first build runs in a background thread (``start``), begun after the first page was
    streamed (both read the manifest; together each takes as long as the whole build). Until it is
    done, ``current()`` is None and the grid streams the manifest instead. When the manifest
    changes, the old index keeps serving while the new one builds.
    """

    def __init__(self, manifest: str | os.PathLike):
        self.manifest = Path(manifest)
        self._lock = threading.Lock()
        self._data: IndexData | None = None
        self._signature: tuple | None = None
        self._building: tuple | None = None
        self._done = threading.Condition(self._lock)
        self.error: Exception | None = None

    def _build(self, sig: tuple) -> None:
        try:
            data, error = build_index(self.manifest), None
        except Exception as e:  # reported to the requests that wait (one error line each)
            data, error = None, e
        with self._lock:
            if data is not None:
                self._data, self._signature = data, sig
            self.error = error
            self._building = None
            self._done.notify_all()

    def start(self) -> None:
        """Build (again) in the background if the manifest changed since the last build."""
        sig = _signature(self.manifest)
        with self._lock:
            if sig == self._signature or sig == self._building:
                return
            self._building = sig
        threading.Thread(target=self._build, args=(sig,), name="browse-index", daemon=True).start()

    def current(self) -> IndexData | None:
        """The latest finished index (None before the first build ends); starts a rebuild when the
        manifest changed since a finished build (the first build is the caller's to ``start``)."""
        if self._data is not None:
            self.start()
        return self._data

    @property
    def indexing(self) -> bool:
        return self._building is not None

    def wait(self) -> IndexData:
        """The index of the manifest as it is now (waits for a running build); raises a failed build's error."""
        self.start()
        with self._lock:
            while self._building is not None:
                self._done.wait()
            if self.error is not None:
                raise self.error
            assert self._data is not None
            return self._data
