"""Music identity and re-upload groups over a clips manifest table (the last step of ``c98k split``).

``with_identities`` gives new clips their ``music_id`` from the persisted fingerprint index
(``<manifest>.identity/``) and every video its ``dup_group``; ``without_music_identity`` makes
a split-``ok`` clip that got no ``music_id`` ``no_music`` with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from commercial98k.identity.chromaprint import fingerprint_problem, segment_links
from commercial98k.identity.index import update_music_ids
from commercial98k.identity.landmark_index import landmark_problem, update_landmark_ids
from commercial98k.identity.library import match_library, open_library, with_library_ids
from commercial98k.identity.reupload import group_duplicates
from commercial98k.identity.unionfind import UnionFind
from commercial98k.manifest.status import record, split_result
from commercial98k.split.step import none_clip_id


def _music_ids(table: pa.Table, ok: dict[str, bool], clips_manifest: str | Path, fingerprint: str,
               max_ber: float, linked: list[tuple[str, str]]) -> dict[str, str]:
    """clip_id -> music_id from the landmark index, the Chromaprint index, or both joined.

    Clips split before landmarks existed have a Chromaprint fingerprint only: where there are any,
    ``landmark`` also runs the Chromaprint index (new clips carry both), so old groups keep their
    ids and new clips can still join them.
    """
    clip_ids = table.column("clip_id").to_pylist()
    current = dict(zip(clip_ids, table.column("music_id").to_pylist(), strict=True))
    lms = {c: f for c, f in zip(clip_ids, table.column("landmarks").to_pylist(), strict=True) if f and ok.get(c)}
    fps = {c: f for c, f in zip(clip_ids, table.column("fingerprint").to_pylist(), strict=True) if f and ok.get(c)}
    maps = []
    if fingerprint in ("landmark", "both"):
        maps.append(update_landmark_ids(clips_manifest, lms, current, linked=linked))
    if fingerprint in ("chromaprint", "both") or set(fps) - set(lms):
        maps.append(update_music_ids(clips_manifest, fps, current, max_ber=max_ber, linked=linked))
    if len(maps) == 1:
        return maps[0]
    uf = UnionFind(sorted({c for m in maps for c in m}))
    for m in maps:  # clips sharing an id in either index are one track
        first: dict[str, str] = {}
        for c, gid in m.items():
            uf.union(first.setdefault(gid, c), c)
    out = {}
    for members in uf.groups().values():  # a group keeps an id it already had in the manifest
        ids = (sorted({current[c] for c in members if current.get(c)})
               or sorted({maps[0][c] for c in members if c in maps[0]}) or sorted({maps[1][c] for c in members}))
        out.update({c: ids[0] for c in members})
    return out


def with_identities(table: pa.Table, clips_manifest: str | Path, max_ber: float = 0.15,
                    max_hamming: int = 8, fingerprint: str = "landmark", music_library: str | Path | None = None,
                    ) -> pa.Table:
    """``table`` (a clips manifest) with ``music_id`` of new fingerprinted clips from the persisted index
    next to ``clips_manifest`` (``identity_index``: new clips are matched against the known tracks, not
    all clips against each other) and ``dup_group`` over all videos.

    With ``music_library``, new clips are also matched against its full tracks (``split.library``):
    a clip playing a library track gets ``music_track``/``music_offset_s``; a clip that got them in an
    earlier run keeps them, and either way its group takes the track's id.

    Also drops a stale ``<video_id>-none`` row of a video that now has clips, and makes an ``ok``
    clip left without a ``music_id`` ``no_music`` (``without_music_identity``).
    """
    cols = {n: table.column(n).to_pylist() for n in ("clip_id", "video_id", "status", "video_phash")}
    rows = table.select(["clip_id", "status", "fetch_status", "split_status", "label_status"]).to_pylist()
    cols["status"] = [split_result(r) for r in rows]  # split's own result: a label failure keeps its music_id
    with_clips = {v for v, s, c in zip(cols["video_id"], cols["status"], cols["clip_id"], strict=True)
                  if s == "ok" and not c.endswith("-none")}
    keep = [not (c == none_clip_id(v) and v in with_clips) for c, v in zip(cols["clip_id"], cols["video_id"], strict=True)]
    ok = {c: s == "ok" and k for c, s, k in zip(cols["clip_id"], cols["status"], keep, strict=True)}
    spans = table.select(["clip_id", "video_id", "clip_start_s", "clip_end_s", "music_start_s", "music_end_s"])
    linked = segment_links(tuple(r.values()) for r in spans.to_pylist())
    # only new clips are matched (against the persisted index and each other)
    music = _music_ids(table, ok, clips_manifest, fingerprint, max_ber, linked)
    tracks = {c: t for c, t in zip(cols["clip_id"], table.column("music_track").to_pylist(), strict=True) if t}
    offsets = dict(zip(cols["clip_id"], table.column("music_offset_s").to_pylist(), strict=True))
    if music_library is not None:
        idx, keys = open_library(music_library)
        new = {c: f for c, f in zip(cols["clip_id"], table.column("landmarks").to_pylist(), strict=True)
               if f and ok[c] and c not in tracks}
        for c, (track, offset) in match_library(idx, keys, new).items():
            tracks[c], offsets[c] = track, offset
        for name, values in (("music_track", tracks), ("music_offset_s", offsets)):
            i = table.schema.get_field_index(name)
            table = table.set_column(i, table.schema.field(i),
                                     pa.array([values.get(c) for c in cols["clip_id"]], table.schema.field(i).type))
    music = with_library_ids(music, tracks)
    phashes: dict[str, str] = {}
    for v, h in zip(cols["video_id"], cols["video_phash"], strict=True):
        if h and v not in phashes:
            phashes[v] = h
    dups = group_duplicates(phashes, max_hamming=max_hamming)
    table = table.set_column(table.schema.get_field_index("music_id"), "music_id",
                             pa.array([music.get(c) for c in cols["clip_id"]], pa.string()))
    table = table.set_column(table.schema.get_field_index("dup_group"), "dup_group",
                             pa.array([dups.get(v) for v in cols["video_id"]], pa.string()))
    return without_music_identity(table.filter(pa.array(keep)), fingerprint)




def without_music_identity(table: pa.Table, fingerprint: str = "landmark") -> pa.Table:
    """Make every split-``ok`` clip without a ``music_id`` ``no_music`` with the reason (has_music False).

    After this every ``ok`` clip has a ``music_id``: a clip whose fingerprint is empty or too
    short cannot be told apart from other tracks, so it never reaches the shards as a track.
    """
    rows = table.select(["clip_id", "status", "error", "split_status", "split_error", "label_status", "label_error",
                         "fetch_status", "fetch_error", "music_id", "fingerprint", "landmarks",
                         "has_music"]).to_pylist()
    changed = False
    for r in rows:
        if split_result(r) == "ok" and not r["music_id"]:
            landmarks = fingerprint != "chromaprint" and (r["landmarks"] or not r["fingerprint"])
            why = ((landmark_problem(r["landmarks"]) if landmarks else fingerprint_problem(r["fingerprint"]))
                   or "no music identity (fingerprint matched nothing)")
            r.update(record(r, "split", "no_music", why), has_music=False)
            changed = True
    if not changed:
        return table
    for name in ("status", "error", "split_status", "split_error", "has_music"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(i), pa.array([r[name] for r in rows], table.schema.field(i).type))
    return table
