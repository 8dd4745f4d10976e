"""The one definition of the manifest schema (pyarrow) and its validation.

Two kinds of manifest share the columns defined here:

* ``videos`` (``manifests/videos.parquet``): one row per fetched video, written by ``c98k fetch``.
* ``clips`` (``manifests/c98k.parquet``): one row per training clip. It carries the video
  columns, plus those that ``c98k split`` fills (spans, shots, music segment, identity) and
  those that ``c98k label`` fills (emotion, tags, category confidence, feature references).

Every column is declared once, in a group named after the stage that fills it. A manifest
always holds all the columns of its kind; a stage that has not run yet leaves its columns null.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SPAN = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64())])

#: Row status values. ``ok`` rows are usable; the others carry the cause in ``error``.
STATUSES = ("ok", "pending", "failed", "skipped", "duplicate", "no_audio", "no_music", "unsupported", "blocked")
SPLITS = ("train", "val", "test")
#: ``status`` of a part row that deletes its key (dropped by readers and by a full compaction).
TOMBSTONE = "__deleted__"

SOURCE_FIELDS = [
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("platform", pa.string()),  # yt-dlp extractor key, or "local"
    pa.field("platform_id", pa.string()),
    pa.field("url", pa.string()),
    pa.field("title", pa.string()),
    pa.field("description", pa.string()),
    pa.field("uploader", pa.string()),
    pa.field("license", pa.string()),
    pa.field("platform_tags", pa.list_(pa.string())),  # tags and hashtags as the platform gave them
    pa.field("upload_date", pa.string()),
    pa.field("view_count", pa.int64()),
    pa.field("like_count", pa.int64()),
    pa.field("category", pa.string()),  # the crawl category (taxonomy id)
    pa.field("query", pa.string()),  # the search or source that found it
    pa.field("crawled_at", pa.timestamp("us", tz="UTC")),
    pa.field("video_path", pa.string()),  # relative to the data root
    pa.field("content_sha256", pa.string()),
    pa.field("filesize", pa.int64()),
    pa.field("duration_s", pa.float64()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
]

PROBE_FIELDS = [
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("fps", pa.float64()),
    pa.field("has_audio", pa.bool_()),
]

SPLIT_FIELDS = [
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("clip_index", pa.int32()),
    pa.field("clip_start_s", pa.float64()),
    pa.field("clip_end_s", pa.float64()),
    pa.field("clip_start_frame", pa.int64()),
    pa.field("clip_end_frame", pa.int64()),
    pa.field("shots", pa.list_(SPAN)),  # shot spans inside the video, seconds
    pa.field("music_segments", pa.list_(SPAN)),  # spans where background music plays
    pa.field("music_start_s", pa.float64()),  # the main music segment
    pa.field("music_end_s", pa.float64()),
    pa.field("has_music", pa.bool_()),
    pa.field("music_ratio", pa.float32()),  # share of the clip's frames classified as music
    pa.field("speech_segments", pa.list_(SPAN)),  # spans where someone speaks (a voice-over), video time
    pa.field("speech_ratio", pa.float32()),  # share of the clip's frames classified as speech
    pa.field("music_id", pa.string()),  # same track, same id (audio fingerprint)
    pa.field("music_track", pa.string()),  # the reference-library track the clip plays (--music-library)
    pa.field("music_offset_s", pa.float64()),  # where in that track the clip starts
    pa.field("fingerprint", pa.string()),  # Chromaprint, compressed base64 (or "raw:" + base64 uint32, fpcalc -raw)
    pa.field("landmarks", pa.string()),  # spectral-peak constellation ("lm1:" + base64), see identity.landmarks
    pa.field("video_phash", pa.string()),  # perceptual hash of keyframes (hex)
    pa.field("dup_group", pa.string()),  # near-duplicate video group
    pa.field("clip_path", pa.string()),  # relative to the data root
    pa.field("audio_path", pa.string()),
]

LABEL_FIELDS = [
    pa.field("category_confidence", pa.float32()),
    pa.field("predicted_category", pa.string()),
    pa.field("tags", pa.list_(pa.string())),  # normalised text tags
    pa.field("music_tags", pa.list_(pa.string())),  # genre / instrument / mood from the audio model
    pa.field("valence", pa.float32()),  # [-1, 1]
    pa.field("arousal", pa.float32()),  # [-1, 1]
    pa.field("emotion", pa.string()),
    pa.field("emotion_probs", pa.map_(pa.string(), pa.float32())),
    pa.field("audio_embedding", pa.string()),  # feature-store reference (relative .npy path)
    pa.field("frame_embedding", pa.string()),
    pa.field("tag_embedding", pa.string()),
    pa.field("split", pa.string()),
]

#: Which model or tool made which columns: ``"name version sha256[:12]"``.
PROVENANCE_FIELDS = [
    pa.field("fetcher", pa.string()),
    pa.field("shot_detector", pa.string()),
    pa.field("music_detector", pa.string()),
    pa.field("fingerprinter", pa.string()),
    pa.field("audio_model", pa.string()),
    pa.field("frame_model", pa.string()),
    pa.field("emotion_model", pa.string()),
    pa.field("text_model", pa.string()),
]

# ---- on-screen text, category evidence, tag sources (filled by ``c98k label``) ----
LABEL_EVIDENCE_FIELDS = [
    pa.field("ocr_text", pa.string()),  # merged on-screen text lines of a few keyframes, " | "-joined
    pa.field("ocr_model", pa.string()),  # provenance of ocr_text: "name version sha12"
    pa.field("category_probs", pa.map_(pa.string(), pa.float32())),  # calibrated distribution over categories
    pa.field("category_evidence", pa.list_(pa.string())),  # evidence used: page_text, ocr, visual
    # each evidence kind's own distribution (taxonomy order), to refit the calibration on labelled clips
    pa.field("category_evidence_probs", pa.map_(pa.string(), pa.list_(pa.float32()))),
    pa.field("tag_sources", pa.list_(pa.string())),  # per tag (aligned with ``tags``): page, ocr or music
]

# ---- per-stage status ------------------------------------------------------------------------
#: Each stage records its own result (``commercial98k.manifest.status``); ``status``/``error`` are derived:
#: the first stage that did not end ``ok``. A later stage never overwrites an earlier one's result.
STAGE_FIELDS = [
    pa.field("fetch_status", pa.string()),
    pa.field("fetch_error", pa.string()),
    pa.field("split_status", pa.string()),
    pa.field("split_error", pa.string()),
    pa.field("label_status", pa.string()),
    pa.field("label_error", pa.string()),
]
# ---- end of per-stage status -----------------------------------------------------------------

VIDEO_SCHEMA = pa.schema(SOURCE_FIELDS + PROBE_FIELDS + PROVENANCE_FIELDS[:1] + STAGE_FIELDS[:2])
CLIP_SCHEMA = pa.schema(SOURCE_FIELDS + PROBE_FIELDS + SPLIT_FIELDS + LABEL_FIELDS + PROVENANCE_FIELDS
                        + LABEL_EVIDENCE_FIELDS + STAGE_FIELDS)
SCHEMAS = {"videos": VIDEO_SCHEMA, "clips": CLIP_SCHEMA}
_CLIP_ONLY = set(CLIP_SCHEMA.names) - set(VIDEO_SCHEMA.names)
KEYS = {"videos": "video_id", "clips": "clip_id"}

SPAN_TOLERANCE_S = 0.05


def schema_for(kind: str) -> pa.Schema:
    """The schema of a manifest kind (``videos`` or ``clips``)."""
    try:
        return SCHEMAS[kind]
    except KeyError:
        raise ValueError(f"unknown manifest kind {kind!r}; use one of {sorted(SCHEMAS)}") from None


def guess_kind(schema: pa.Schema) -> str:
    """``clips`` when the table has a ``clip_id`` column or any other clips-only column, else ``videos``.

    (A clips manifest that lost its ``clip_id`` is then reported as a clips manifest missing it.)
    """
    names = set(schema.names)
    return "clips" if "clip_id" in names or names & _CLIP_ONLY else "videos"


def rows_to_table(rows: list[dict], kind: str) -> pa.Table:
    """Build a table of the kind's full schema from row dicts; absent columns become null."""
    schema = schema_for(kind)
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)


def conform(table: pa.Table, kind: str) -> pa.Table:
    """Add the kind's missing columns as nulls, order and cast columns to the schema.

    Extra columns are kept at the end, so stages and users may add their own.
    """
    schema = schema_for(kind)
    arrays, fields = [], []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            arrays.append(col if col.type == f.type else col.cast(f.type))
        else:
            arrays.append(pa.nulls(table.num_rows, f.type))
        fields.append(f)
    for name in table.column_names:
        if name not in schema.names:
            arrays.append(table.column(name))
            fields.append(table.schema.field(name))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest. ``row`` is None for whole-column problems."""

    column: str
    message: str
    row: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = f"row {self.row}" + (f" ({self.key})" if self.key else "") if self.row is not None else "all rows"
        return f"{where}, column {self.column}: {self.message}"


def validate_table(table: pa.Table, kind: str | None = None, max_problems: int = 100) -> list[Problem]:
    """Check a manifest table against the schema and its invariants; return the problems found.

    Checks: every column present with its type; keys present and unique; status known;
    clip, music and shot spans ordered and inside the video; valence/arousal in [-1, 1];
    ``category_confidence`` in [0, 1]; ``split`` known.
    """
    kind = kind or guess_kind(table.schema)
    schema = schema_for(kind)
    problems: list[Problem] = []
    for f in schema:
        if f.name not in table.column_names:
            problems.append(Problem(f.name, f"missing column (expected {f.type})"))
        elif table.schema.field(f.name).type != f.type:
            problems.append(Problem(f.name, f"wrong type {table.schema.field(f.name).type}, expected {f.type}"))
    if problems:  # row checks need the right columns
        return problems[:max_problems]

    key = KEYS[kind]
    keys = table.column(key).to_pylist()
    seen: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k is None or k == "":
            problems.append(Problem(key, "empty key", i))
        elif k in seen:
            problems.append(Problem(key, f"duplicate {key} {k!r} (first at row {seen[k]})", i, k))
        else:
            seen[k] = i
    for f in schema:
        if not f.nullable and f.name != key:
            nulls = pc.is_null(table.column(f.name)).to_pylist()
            problems += [Problem(f.name, "null in a required column", i, keys[i]) for i, n in enumerate(nulls) if n]
    suspect = np.flatnonzero(_suspect_rows(table))  # vectorised pre-check; only these rows can have problems
    for i, r in zip(suspect.tolist(), _checked_rows(table.take(pa.array(suspect, pa.int64()))), strict=True):
        problems += _row_problems(i, r, keys[i])
        if len(problems) >= max_problems:
            break
    return problems[:max_problems]


#: The columns ``_row_problems`` reads; rows are built from these alone, a batch at a time,
#: so validating a large manifest does not turn all of it into Python objects at once.
_ROW_CHECK_COLUMNS = ("status", "duration_s", "clip_start_s", "clip_end_s", "music_start_s", "music_end_s",
                      "shots", "music_segments", "speech_segments", "valence", "arousal", "category_confidence", "split")


def _checked_rows(table: pa.Table, batch_rows: int = 4096) -> Iterator[dict]:
    columns = [c for c in _ROW_CHECK_COLUMNS if c in table.column_names]
    for batch in table.select(columns).to_batches(max_chunksize=batch_rows):
        yield from batch.to_pylist()


def _suspect_rows(table: pa.Table) -> np.ndarray:
    """Rows that may fail ``_row_problems`` (a superset), found with Arrow compute, not Python loops.

    Reading a manifest validates it, so this keeps that cheap: ``_row_problems`` runs on these rows only.
    """
    n, tol, eps = table.num_rows, SPAN_TOLERANCE_S, 1e-6
    bad = np.zeros(n, bool)
    names = set(table.column_names)

    def mark(expr) -> None:
        bad[:] |= np.asarray(pc.fill_null(expr, False).to_numpy(zero_copy_only=False), bool)

    def col(name: str):
        return table.column(name) if name in names else pa.nulls(n, pa.float64())

    if "status" in names:
        mark(pc.invert(pc.is_in(table.column("status"), pa.array(STATUSES))) if n else pa.array([], pa.bool_()))
    dur = col("duration_s")
    mark(pc.less(dur, 0))
    if "clip_start_s" not in names:
        return bad

    def spans(start, end, duration) -> pa.Array:
        return pc.or_kleene(pc.or_kleene(pc.xor(pc.is_null(start), pc.is_null(end)),
                             pc.or_kleene(pc.less(start, -tol), pc.less(end, start))),
                      pc.greater(end, pc.add(duration, tol)))

    mark(spans(col("clip_start_s"), col("clip_end_s"), dur))
    mark(spans(col("music_start_s"), col("music_end_s"), dur))
    for name in ("shots", "music_segments", "speech_segments"):
        if name not in names or not n:
            continue
        lists = table.column(name).combine_chunks()
        flat = pc.list_flatten(lists)
        if not len(flat):
            continue
        parents = pc.list_parent_indices(lists)
        elem_bad = spans(pc.struct_field(flat, "start_s"), pc.struct_field(flat, "end_s"),
                         pc.take(dur.combine_chunks() if isinstance(dur, pa.ChunkedArray) else dur, parents))
        rows = np.asarray(parents.to_numpy())[np.asarray(pc.fill_null(elem_bad, False).to_numpy(zero_copy_only=False),
                                                         bool)]
        bad[rows] = True
    for name in ("valence", "arousal"):
        c = col(name)
        mark(pc.or_kleene(pc.less(c, -1.0 - eps), pc.greater(c, 1.0 + eps)))
    c = col("category_confidence")
    mark(pc.or_kleene(pc.less(c, 0.0), pc.greater(c, 1.0 + eps)))
    if "split" in names and n:
        mark(pc.invert(pc.is_in(table.column("split"), pa.array(SPLITS))))
    return bad


def _row_problems(i: int, r: dict, key: str | None) -> list[Problem]:
    out: list[Problem] = []

    def bad(column: str, message: str) -> None:
        out.append(Problem(column, message, i, key))

    if r.get("status") is not None and r["status"] not in STATUSES:
        bad("status", f"unknown status {r['status']!r}; expected one of {', '.join(STATUSES)}")
    dur = r.get("duration_s")
    if dur is not None and dur < 0:
        bad("duration_s", f"negative duration {dur}")
    tol = SPAN_TOLERANCE_S

    def check_span(column: str, start: float | None, end: float | None) -> None:
        if start is None and end is None:
            return
        if start is None or end is None:
            bad(column, f"half-open span {start}-{end}")
        elif start < -tol or end < start:
            bad(column, f"span {start:.3f}-{end:.3f} s is not ordered")
        elif dur is not None and end > dur + tol:
            bad(column, f"span {start:.3f}-{end:.3f} s ends after the video ({dur:.3f} s)")

    if "clip_start_s" in r:
        check_span("clip_end_s", r.get("clip_start_s"), r.get("clip_end_s"))
        check_span("music_end_s", r.get("music_start_s"), r.get("music_end_s"))
        for column in ("shots", "music_segments", "speech_segments"):
            for s in r.get(column) or []:
                check_span(column, s.get("start_s"), s.get("end_s"))
        for column in ("valence", "arousal"):
            v = r.get(column)
            if v is not None and not -1.0 - 1e-6 <= v <= 1.0 + 1e-6:
                bad(column, f"{v} outside [-1, 1]")
        c = r.get("category_confidence")
        if c is not None and not 0.0 <= c <= 1.0 + 1e-6:
            bad("category_confidence", f"{c} outside [0, 1]")
        if r.get("split") is not None and r["split"] not in SPLITS:
            bad("split", f"unknown split {r['split']!r}")
    return out
