"""WebDataset export of a labelled clips manifest (see ``docs/ARCHITECTURE.md``, "Shards").

``build_shards`` filters the manifest, assigns grouped splits (``partition.assign_splits``),
builds the tag vocabulary from the train split, and writes ``<out>/<split>/<split>-%06d.tar``
plus ``<split>-%06d_stats.json`` (written last: the done marker) and ``<out>/index.json``.

A shard is rebuilt only when its stats file is missing, its input fingerprint changed (other
clips, feature files, models, vocabulary ...), or its tar is missing or does not match the
size/sha256 recorded in the stats (a truncated or corrupt tar). Tars are byte-reproducible.

Each clip trains with one category (``filters.training_category``): a user's correction
(``corrections.py``), else the crawl category, else the label's prediction, as
``ShardFilters.category_source`` allows; the sample's json names it in ``category_source``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from commercial98k.errors import error_line
from commercial98k.export.filters import check_filtered, check_not_empty, reason_kind, training_rows
from commercial98k.export.partition import assign_splits, check_fractions
from commercial98k.export.report import corrections_summary, split_category_counts
from commercial98k.faults import raise_if_environment
from commercial98k.label.gems import emotion_classes, row_emotion_vector
from commercial98k.manifest.corrections import load_corrections
from commercial98k.manifest.io import ManifestError, read_manifest
from commercial98k.manifest.schema import guess_kind
from commercial98k.storage.feature_store import FeatureStore
from commercial98k.storage.files import atomic_path, atomic_write_json, sha256_bytes, sha256_file
from commercial98k.taxonomy import Taxonomy, UnknownCategory, load_taxonomy

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODEL_COLUMNS = ("audio_model", "frame_model", "emotion_model", "text_model")
JSON_FIELDS = ("clip_id", "video_id", "music_id", "category", "category_id", "split", "duration_s", "title",
               "tags", "valence", "arousal", "emotion", "dup_group", "clip_start_s", "clip_end_s",
               "has_music", "category_confidence", "emotion_model")
JSON_FIELDS += ("ocr_text", "tag_sources", "predicted_category", "category_evidence", "category_source", "crawl_category")
TAR_MTIME = 0  # fixed integer mtime: byte-identical tars, and no PAX header per member (a float would add one)


@dataclass(frozen=True)
class ShardFilters:
    """Which manifest rows become samples. Empty/None means "no constraint"."""

    categories: tuple[str, ...] = ()
    min_duration: float | None = None
    has_music: bool | None = True
    min_category_confidence: float | None = None
    statuses: tuple[str, ...] = ("ok",)
    category_source: str = "any"  # filters.SOURCE_MODES; min_category_confidence applies to that category
    use_corrections: bool = True  # apply <manifest>.corrections.json (corrections.py)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def clip_duration(row: dict) -> float | None:
    """Clip length in seconds (``clip_end_s - clip_start_s``), else the row's ``duration_s``."""
    if row.get("clip_start_s") is not None and row.get("clip_end_s") is not None:
        return float(row["clip_end_s"]) - float(row["clip_start_s"])
    return row.get("duration_s")


def filter_reason(row: dict, f: ShardFilters) -> str | None:
    """The first filter a manifest row fails (``status``, ``category`` ...), or None if it passes."""
    if f.statuses and row.get("status") not in f.statuses:
        return "status"
    if f.categories and row.get("category") not in f.categories:
        return "category"
    if f.min_duration is not None and (clip_duration(row) or 0.0) < f.min_duration:
        return "min_duration"
    if f.has_music is not None and bool(row.get("has_music")) != f.has_music:
        return "has_music"
    conf = row.get("category_confidence")
    if (f.min_category_confidence is not None and row.get("category_source") != "corrected"
            and (conf is None or conf < f.min_category_confidence)):  # a person's label needs no confidence
        return "min_category_confidence"
    return None


def build_tag_vocab(rows: Iterable[dict], min_count: int = 1, max_size: int | None = None) -> list[str]:
    """Tags sorted by frequency (then alphabetically), those seen at least ``min_count`` times."""
    counts = Counter(t for r in rows for t in (r.get("tags") or []))
    vocab = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return vocab[:max_size] if max_size else vocab


def _sha(obj: Any) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode("utf-8"))


def _order_key(seed: int, clip_id: str) -> str:
    return sha256_bytes(f"{seed}:{clip_id}".encode())


@dataclass
class _Context:
    """Everything a sample needs besides its row."""

    store: FeatureStore
    taxonomy: Taxonomy
    vocab_index: dict[str, int]
    classes: list[str]
    with_media: bool
    dims: dict[str, int] = field(default_factory=dict)


def sample_meta(row: dict, ctx: _Context) -> dict[str, Any]:
    """The sample's ``json`` member."""
    meta = {k: row.get(k) for k in JSON_FIELDS}
    meta["duration_s"] = clip_duration(row)
    meta["category_id"] = ctx.taxonomy.index(row["category"])
    meta["tags"] = list(row.get("tags") or [])
    return meta


def make_sample(row: dict, ctx: _Context) -> dict[str, Any]:
    """Load a row's features (and media) and return the WebDataset sample dict."""
    frames = ctx.store.get(row["frame_embedding"], dtype="float16")
    audio = ctx.store.get(row["audio_embedding"], dtype="float16")
    tags_list = list(row.get("tags") or [])
    if row.get("tag_embedding"):
        tags = ctx.store.get(row["tag_embedding"], dtype="float32")
    else:
        tags = np.zeros((0, ctx.dims.get("tags", 0)), dtype=np.float32)
    for name, arr in (("frames", frames), ("audio", audio), ("tags", tags)):
        if arr.ndim != 2:
            raise ValueError(f"{name} features have shape {arr.shape}, expected 2-D")
        if name in ctx.dims and arr.shape[1] != ctx.dims[name] and not (name == "tags" and arr.shape[0] == 0):
            raise ValueError(f"{name} features have dim {arr.shape[1]}, expected {ctx.dims[name]}")
    if tags.shape[0] == 0:
        tags = np.zeros((0, ctx.dims.get("tags", tags.shape[1])), dtype=np.float32)
    # tag_ids align with the rows of tags.npy; a tag outside the vocabulary (or a count mismatch) is -1
    if len(tags_list) == tags.shape[0]:
        tag_ids = np.asarray([ctx.vocab_index.get(t, -1) for t in tags_list], dtype=np.int64)
    else:
        tag_ids = np.full((tags.shape[0],), -1, dtype=np.int64)
    sample: dict[str, Any] = {
        "__key__": row["clip_id"],
        "frames.npy": frames,
        "audio.npy": audio,
        "emotion.npy": row_emotion_vector(row, ctx.classes),  # layout: label/gems.py
        "tags.npy": tags,
        "tag_ids.npy": tag_ids,
        "json": sample_meta(row, ctx),
    }
    if ctx.with_media:
        sample["mp4"] = ctx.store.data_root.resolve(row["clip_path"]).read_bytes()
        sample["wav"] = ctx.store.data_root.resolve(row["audio_path"]).read_bytes()
    return sample


def missing_inputs(row: dict, store: FeatureStore, with_media: bool, taxonomy: Taxonomy) -> str | None:
    """Why a row cannot become a sample (one line), or None."""
    if not row.get("category"):
        return "no category (no crawl category, correction or prediction allowed by --category-source)"
    try:
        taxonomy.index(row["category"])
    except UnknownCategory:
        return f"unknown category {row['category']!r}"
    if not row.get("music_id"):
        return "no music_id (run `c98k split` again: every ok clip gets one)"
    for column in ("frame_embedding", "audio_embedding"):
        if not row.get(column):
            return f"no {column} (not labelled yet)"
    refs = [("frame_embedding", row["frame_embedding"]), ("audio_embedding", row["audio_embedding"])]
    if row.get("tag_embedding"):
        refs.append(("tag_embedding", row["tag_embedding"]))
    if with_media:
        refs += [("clip_path", row.get("clip_path")), ("audio_path", row.get("audio_path"))]
    for column, rel in refs:
        try:
            if not rel or not store.data_root.resolve(rel).is_file():
                return f"{column} file missing: {rel}"
        except ValueError as e:
            return f"{column}: {e}"
    return None


def _row_fingerprint(row: dict, ctx: _Context) -> dict[str, Any]:
    keys = ("frame_embedding", "audio_embedding", "tag_embedding", "emotion_probs") + MODEL_COLUMNS
    fp = {k: row.get(k) for k in keys}
    fp["meta"] = sample_meta(row, ctx)
    if ctx.with_media:
        fp["media"] = [row.get("clip_path"), row.get("audio_path")]
    return fp


def shard_fingerprint(rows: list[dict], ctx: _Context) -> str:
    """Hash of what a shard is made of: clip ids, feature paths, labels, provenance, vocabulary."""
    return _sha({"format": FORMAT_VERSION, "classes": ctx.classes, "with_media": ctx.with_media,
                 "vocab": _sha(sorted(ctx.vocab_index.items())), "categories": ctx.taxonomy.ids(),
                 "rows": [_row_fingerprint(r, ctx) for r in rows]})


def shard_is_current(tar: Path, stats_path: Path, fingerprint: str, verify_sha256: bool = True) -> bool:
    """True when ``stats_path`` exists, matches ``fingerprint`` and the tar matches its size/sha256."""
    try:
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if stats.get("fingerprint") != fingerprint or not tar.is_file():
        return False
    if tar.stat().st_size != stats.get("bytes"):
        return False
    return not verify_sha256 or sha256_file(tar) == stats.get("sha256")


def write_shard(rows: list[dict], tar: Path, stats_path: Path, ctx: _Context, fingerprint: str,
                bar: tqdm | None = None) -> dict[str, Any]:
    """Write one tar (temp name, then rename), then its stats file (the done marker)."""
    stats_path.unlink(missing_ok=True)
    clip_ids, skipped = [], []
    import webdataset as wds  # imported here: it pulls in torch, which `c98k --help` should not pay for

    with atomic_path(tar, suffix=".tar") as tmp, wds.TarWriter(str(tmp), mtime=TAR_MTIME) as sink:
        for row in rows:
            try:
                sink.write(make_sample(row, ctx))
                clip_ids.append(row["clip_id"])
            except (OSError, ValueError, EOFError) as e:
                raise_if_environment(e, ctx.store.data_root)  # a full disk is not this sample's fault
                msg = error_line(e)
                skipped.append({"clip_id": row["clip_id"], "cause": msg})
                _warn(f"warning: {row['clip_id']}: skipped: {msg}", bar)
            if bar is not None:
                bar.update(1)
    stats = {"shard": tar.name, "samples": len(clip_ids), "bytes": tar.stat().st_size,
             "sha256": sha256_file(tar), "fingerprint": fingerprint, "clip_ids": clip_ids,
             "skipped": skipped, "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_json(stats_path, stats)
    return stats


def _warn(message: str, bar: tqdm | None = None) -> None:
    if bar is not None:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def _models(rows: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in MODEL_COLUMNS:
        values = sorted({r[column] for r in rows if r.get(column)})
        out[column] = values[0] if len(values) == 1 else (values or None)
    return out


def _probe_dims(rows: list[dict], store: FeatureStore) -> dict[str, int]:
    """Feature dims from the first row that has each kind (tags: prefer a non-empty array)."""
    dims: dict[str, int] = {}
    for kind, column in (("frames", "frame_embedding"), ("audio", "audio_embedding"), ("tags", "tag_embedding")):
        for r in rows:
            if not r.get(column):
                continue
            try:
                arr = store.get(r[column], dtype=None, mmap=True)
            except (OSError, ValueError, EOFError):
                continue  # reported when the shard is written
            if arr.ndim == 2:
                dims.setdefault(kind, int(arr.shape[1]))
                if kind != "tags" or arr.shape[0] > 0:
                    dims[kind] = int(arr.shape[1])
                    break
    return dims


def build_shards(manifest: str | os.PathLike, out_dir: str | os.PathLike, data_root: str | os.PathLike,
                 filters: ShardFilters | None = None, fractions: tuple[float, ...] = (0.8, 0.1, 0.1),
                 seed: int = 0, samples_per_shard: int = 1000, with_media: bool = False,
                 min_tag_count: int = 1, max_tag_vocab: int | None = None, verify_sha256: bool = True,
                 taxonomy: Taxonomy | None = None, progress: bool | None = None, min_shards: int = 1) -> dict[str, Any]:
    """Build (or bring up to date) the shards of ``manifest`` under ``out_dir``; return index.json.

    Splits are assigned over the whole manifest (so a filtered build keeps each clip's split),
    then rows are filtered. Rows whose inputs are missing are skipped with one warning line each.
    Each split gets at least ``min_shards`` shards when it has that many samples (``chunk_rows``).
    The manifest's corrections apply (unless ``filters.use_corrections`` is false); nothing to write
    raises ``filters.EmptyDataSet`` (or ``EmptyAfterFilters``) before index.json is written.
    """
    filters = filters or ShardFilters()
    fractions = check_fractions(fractions)
    if samples_per_shard < 1 or min_shards < 1:
        raise ValueError("samples_per_shard and min_shards must be >= 1")
    manifest, out_dir, data_root = Path(manifest), Path(out_dir), Path(data_root)
    taxonomy = taxonomy or load_taxonomy()
    store = FeatureStore(data_root)
    table = read_manifest(manifest)
    if guess_kind(table.schema) != "clips":
        raise ManifestError(f"{manifest}: a videos manifest; build-shards needs the clips manifest "
                            "(made by `c98k split`, labelled by `c98k label`)")
    corrections = load_corrections(manifest, taxonomy) if filters.use_corrections else []
    for_split, all_rows, applied = training_rows(table.to_pylist(), corrections, filters.category_source)
    split_of = assign_splits(for_split, fractions, seed)
    rows, skipped, filtered_out = [], [], Counter()
    dropped_by = {r["clip_id"]: filter_reason(r, filters) for r in all_rows}
    dropped_by = {k: v for k, v in dropped_by.items() if v}
    if all_rows:
        check_filtered(all_rows, {r["clip_id"] for r in all_rows} - set(dropped_by), dropped_by, split_of, filters)
    for r in all_rows:
        reason = dropped_by.get(r["clip_id"])
        if reason:
            filtered_out[reason] += 1
            continue
        cause = missing_inputs(r, store, with_media, taxonomy)
        if cause:
            _warn(f"warning: {r['clip_id']}: skipped: {cause}")
            skipped.append({"clip_id": r["clip_id"], "cause": cause})
        else:
            rows.append({**r, "split": split_of[r["clip_id"]]})
    dropped = filtered_out + Counter(reason_kind(s["cause"]) for s in skipped) + Counter(unusable=len(applied.unusable))
    if not rows:
        check_not_empty(table.num_rows, dropped, filters.category_source)

    ctx = _Context(store, taxonomy, {}, emotion_classes(rows), with_media, _probe_dims(rows, store))
    vocab = build_tag_vocab((r for r in rows if r["split"] == "train"), min_tag_count, max_tag_vocab)
    ctx.vocab_index = {t: i for i, t in enumerate(vocab)}

    plan: list[tuple[str, Path, Path, list[dict], str]] = []
    for split in ("train", "val", "test"):
        here = sorted((r for r in rows if r["split"] == split), key=lambda r: _order_key(seed, r["clip_id"]))
        chunks = chunk_rows(here, samples_per_shard, min_shards)
        for i, chunk in enumerate(chunks):
            tar = out_dir / split / f"{split}-{i:06d}.tar"
            plan.append((split, tar, tar.with_name(f"{split}-{i:06d}_stats.json"), chunk, shard_fingerprint(chunk, ctx)))
        _remove_extra_shards(out_dir / split, split, len(chunks))

    todo = [p for p in plan if not shard_is_current(p[1], p[2], p[4], verify_sha256)]
    stats_by_tar: dict[Path, dict] = {}
    with tqdm(total=sum(len(p[3]) for p in todo), desc="build-shards", unit="sample", dynamic_ncols=True,
              disable=None if progress is None else not progress, file=sys.stderr) as bar:
        bar.set_postfix(shards=f"{len(todo)}/{len(plan)} to write")
        for _split, tar, stats_path, chunk, fp in todo:
            stats_by_tar[tar] = write_shard(chunk, tar, stats_path, ctx, fp, bar)

    splits: dict[str, dict[str, Any]] = {s: {"shards": [], "samples": 0} for s in ("train", "val", "test")}
    before_write = len(skipped)
    for split, tar, stats_path, _chunk, _fp in plan:
        st = stats_by_tar.get(tar) or json.loads(stats_path.read_text(encoding="utf-8"))
        skipped += st.get("skipped", [])
        splits[split]["shards"].append({"path": tar.relative_to(out_dir).as_posix(), "samples": st["samples"],
                                        "bytes": st["bytes"], "sha256": st["sha256"]})
        splits[split]["samples"] += st["samples"]
    if not any(s["samples"] for s in splits.values()):  # every row failed while being written
        check_not_empty(table.num_rows, dropped + Counter(reason_kind(s["cause"]) for s in skipped[before_write:]),
                        filters.category_source)
    index = {
        "version": FORMAT_VERSION,
        "manifest": {"path": str(manifest), "sha256": sha256_file(manifest), "rows": table.num_rows},
        "data_root": str(data_root),
        "categories": taxonomy.ids(), "tag_vocab": vocab, "emotion_classes": ctx.classes,
        "dims": {"frames": ctx.dims.get("frames"), "audio": ctx.dims.get("audio"),
                 "emotion": 2 + len(ctx.classes), "tags": ctx.dims.get("tags")},
        "models": _models(rows), "filters": filters.to_dict(), "filtered_out": dict(filtered_out),
        "splits": splits, "split_categories": split_category_counts(rows, skipped),
        "category_sources": split_category_counts(rows, skipped, "category_source"), "corrections": corrections_summary(applied),
        "split_options": {"fractions": list(fractions), "seed": seed, "grouped_by": ["music_id", "dup_group"]},
        "samples_per_shard": samples_per_shard, "min_shards": min_shards, "with_media": with_media, "min_tag_count": min_tag_count,
        "skipped": {"count": len(skipped), "by_cause": dict(Counter(reason_kind(s["cause"]) for s in skipped)),
                    "clips": skipped},
        "rebuilt_shards": [tar.relative_to(out_dir).as_posix() for _s, tar, *_ in todo],
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(out_dir / "index.json", index)
    return index


def chunk_rows(rows: list[dict], samples_per_shard: int, min_shards: int = 1) -> list[list[dict]]:
    """Cut a split's rows into shards of ``samples_per_shard``; if that gives fewer than ``min_shards``,
    cut into ``min(min_shards, len(rows))`` shards of near-equal size instead (so DDP ranks x loader
    workers each get a shard)."""
    n = len(rows)
    if n == 0 or -(-n // samples_per_shard) >= min_shards:
        return [rows[i:i + samples_per_shard] for i in range(0, n, samples_per_shard)]
    k = min(min_shards, n)
    bounds = [n * i // k for i in range(k + 1)]
    return [rows[bounds[i]:bounds[i + 1]] for i in range(k)]


def _remove_extra_shards(split_dir: Path, split: str, keep: int) -> None:
    """Delete shards numbered ``>= keep`` left by an earlier, larger build."""
    if not split_dir.is_dir():
        return
    for p in split_dir.glob(f"{split}-*"):
        stem = p.name[len(split) + 1:].split("_")[0].split(".")[0]
        if stem.isdigit() and int(stem) >= keep:
            p.unlink(missing_ok=True)
