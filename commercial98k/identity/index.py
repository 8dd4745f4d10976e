"""A persisted, incrementally updated index of known clips' Chromaprint fingerprints (music identity at scale).

``chromaprint.group_music`` compares a whole collection at once. At a million clips that pass
cannot rerun after every split run, so new clips are matched against this index instead:

* **postings**: for every known clip, each distinct item prefix (``item >> PREFIX_SHIFT``, the same
  key as ``group_music``) with its first position; stored in sorted *segments*
  (``seg-NNNNNN.{prefix,clip,pos}.npy``, memory-mapped), looked up with ``searchsorted``;
* **clips**: the raw fingerprint items of the known clips (``clips-NNNNNN.{items,starts}.npy``), for verification
  with ``best_match`` at the candidate offsets, and ``ids-NNNNNN.json`` (clip ids, music ids);
* ``aliases.json``: a music id merged into another one by a clip that matched both.

``add`` matches a batch against every segment and against itself, then writes one new segment;
segments of similar size are merged (size-tiered, like an LSM tree), so there are O(log n) of them
and each known posting is rewritten O(log n) times. A lookup costs O(batch x log n) per segment plus
the candidates found, instead of re-comparing all n clips: the cost of adding k clips grows far
slower than n. The index lives next to the manifest: ``<manifest>.identity/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from commercial98k.identity.chromaprint import MATCH_WINDOW, _candidate_pairs, best_match, decode
from commercial98k.identity.unionfind import UnionFind
from commercial98k.storage.files import atomic_path, atomic_write_json

PREFIX_SHIFT = 12
FORMAT = 1


def index_dir(manifest: str | os.PathLike) -> Path:
    """``<manifest>.identity/`` beside the clips manifest."""
    m = Path(manifest)
    return m.with_name(m.name + ".identity")


def music_id_for(members: list[str]) -> str:
    """``m-`` + sha1(smallest clip_id)[:12], as ``group_music`` names a new group."""
    return f"m-{hashlib.sha1(min(members).encode('utf-8')).hexdigest()[:12]}"


def _postings(raws: list[np.ndarray], base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (prefix, clip, first position) of every distinct prefix of every clip."""
    if not raws:
        return np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros(0, np.uint16)
    prefix = np.concatenate([r >> np.uint32(PREFIX_SHIFT) for r in raws]).astype(np.int64)
    clip = np.concatenate([np.full(len(r), base + i, np.int64) for i, r in enumerate(raws)])
    pos = np.concatenate([np.arange(len(r), dtype=np.int64) for r in raws])
    key = prefix << np.int64(32) | clip
    _, first = np.unique(key, return_index=True)  # sorted by prefix, then clip
    return prefix[first].astype(np.uint32), clip[first].astype(np.uint32), np.minimum(pos[first], 65535).astype(np.uint16)


def lookup(query: tuple[np.ndarray, np.ndarray, np.ndarray], segment: tuple[np.ndarray, np.ndarray, np.ndarray],
           limit: int, min_shared: int, out: dict[tuple[int, int], dict[int, int]]) -> None:
    """Add to ``out`` (query clip, segment clip) -> {offset: shared keys} for pairs sharing ``min_shared`` keys.

    Both are sorted ``(key, clip, position)`` postings; a key held by more than ``limit`` segment
    postings (silence, a tone, a sound heard everywhere) is ignored.
    """
    q_prefix, q_clip, q_pos = query
    prefix = segment[0]
    lo = np.searchsorted(prefix, q_prefix, "left")
    hi = np.searchsorted(prefix, q_prefix, "right")
    n = hi - lo
    keep = (n > 0) & (n <= limit)
    if not keep.any():
        return
    lo, n = lo[keep], n[keep]
    qc, qp = np.repeat(q_clip[keep], n), np.repeat(q_pos[keep].astype(np.int64), n)
    idx = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
    kc, kp = np.asarray(segment[1])[idx], np.asarray(segment[2])[idx].astype(np.int64)
    off = qp - kp
    key = (qc.astype(np.int64) << 42) | (kc.astype(np.int64) << 18) | (off + 131072)  # offsets of +-2**17 items
    keys, counts = np.unique(key, return_counts=True)
    _, inv = np.unique(keys >> 18, return_inverse=True)
    shared = np.bincount(inv, weights=counts)
    sel = shared[inv] >= min_shared  # only pairs sharing enough keys reach Python
    for k, c in zip(keys[sel].tolist(), counts[sel].tolist(), strict=True):
        out[(k >> 42, (k >> 18) & 0xFFFFFF)][(k & 0x3FFFF) - 131072] += c


class MusicIndex:
    """Known clips' fingerprints, persisted in ``folder``; ``add`` assigns music ids to new clips."""

    def __init__(self, folder: str | os.PathLike, max_ber: float = 0.15, min_overlap: int = 16,
                 min_shared: int = 3, stop_share: float = 0.05, window: int | None = MATCH_WINDOW):
        self.folder = Path(folder)
        self.max_ber, self.min_overlap, self.min_shared = max_ber, min_overlap, min_shared
        self.stop_share, self.window = stop_share, window
        meta = self._read_json("meta.json", {"format": FORMAT, "segments": [], "clip_blocks": [], "next": 0})
        self.segments: list[str] = meta["segments"]
        self.clip_blocks: list[dict] = meta["clip_blocks"]  # {"name", "base", "n"}
        self.size: int = meta["next"]
        self.aliases: dict[str, str] = self._read_json("aliases.json", {})
        self._ids: list[str] | None = None
        self._music: list[str] | None = None
        self._blocks: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # -- storage --------------------------------------------------------------------------
    def _read_json(self, name: str, default):
        p = self.folder / name
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else default

    def _save_meta(self) -> None:
        atomic_write_json(self.folder / "aliases.json", self.aliases)
        atomic_write_json(self.folder / "meta.json", {"format": FORMAT, "segments": self.segments,
                                                      "clip_blocks": self.clip_blocks, "next": self.size})

    def _save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        """``<name>.<key>.npy`` per array (memory-mapped on reading: a lookup touches few pages)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for key, arr in arrays.items():
            with atomic_path(self.folder / f"{name}.{key}.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, arr)

    def _arrays(self, name: str, *keys: str) -> list[np.ndarray]:
        return [np.load(self.folder / f"{name}.{k}.npy", mmap_mode="r") for k in keys]

    def _segment(self, name: str) -> dict[str, np.ndarray]:
        return dict(zip(("prefix", "clip", "pos"), self._arrays(name, "prefix", "clip", "pos"), strict=True))

    def _remove(self, name: str) -> None:
        for p in self.folder.glob(f"{name}.*.npy"):
            p.unlink(missing_ok=True)

    def _load_ids(self) -> None:
        if self._ids is None:
            self._ids, self._music = [], []
            for b in self.clip_blocks:
                d = self._read_json(b["name"].replace("clips-", "ids-") + ".json", {})
                self._ids += d["clip_ids"]
                self._music += d["music_ids"]

    def music_ids(self) -> dict[str, str]:
        """clip_id -> current music id (aliases resolved) of every known clip."""
        self._load_ids()
        return {c: self.resolve(m) for c, m in zip(self._ids, self._music, strict=True)}

    def resolve(self, music_id: str) -> str:
        while music_id in self.aliases:
            music_id = self.aliases[music_id]
        return music_id

    def _raw(self, clip: int) -> np.ndarray:
        for b in self.clip_blocks:
            if b["base"] <= clip < b["base"] + b["n"]:
                if b["name"] not in self._blocks:
                    items, starts = self._arrays(b["name"], "items", "starts")
                    self._blocks[b["name"]] = (items, starts)
                items, starts = self._blocks[b["name"]]
                i = clip - b["base"]
                return items[starts[i]:starts[i + 1]]
        raise KeyError(clip)

    # -- the fingerprint kind (Chromaprint here; identity.landmark_index overrides these) ------
    def decode_items(self, fingerprint: str | np.ndarray) -> np.ndarray:
        """A stored fingerprint as the uint32 items the index keeps."""
        return decode(fingerprint) if isinstance(fingerprint, str) else np.asarray(fingerprint, np.uint32)

    def usable(self, items: np.ndarray) -> bool:
        """Not empty and not constant (silence would make every silent clip one track)."""
        return bool(len(items)) and (len(items) == 1 or bool((items != items[0]).any()))

    def postings(self, raws: list[np.ndarray], base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sorted (key, clip, position) postings of clips numbered from ``base``."""
        return _postings(raws, base)

    def batch_pairs(self, arrays: list[np.ndarray]) -> dict[tuple[int, int], dict[int, int]]:
        """Candidate pairs among new clips -> {offset: shared keys}."""
        limit = max(50, int(self.stop_share * len(arrays)))
        return {ab: dict(offs) for ab, offs in _candidate_pairs(arrays, PREFIX_SHIFT, limit).items()}

    # -- matching -------------------------------------------------------------------------
    def _candidates(self, new: list[np.ndarray]) -> dict[tuple[int, int], dict[int, int]]:
        """(new clip, known clip) -> {offset: shared prefixes} over every segment."""
        query = self.postings(new, 0)
        limit = max(50, int(self.stop_share * (self.size + len(new))))
        out: dict[tuple[int, int], dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for name in self.segments:
            seg = self._segment(name)
            lookup(query, (seg["prefix"], seg["clip"], seg["pos"]), limit, self.min_shared, out)
        return out

    def _matches(self, a: np.ndarray, b: np.ndarray, offsets: dict[int, int]) -> bool:
        cand = sorted({o + d for o, _ in sorted(offsets.items(), key=lambda x: -x[1])[:5] for d in (-1, 0, 1)})
        overlap = min(self.min_overlap, len(a), len(b))
        return overlap > 0 and best_match(a, b, overlap, cand, self.window)[0] <= self.max_ber

    def add(self, fingerprints: dict[str, str | np.ndarray],
            linked: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
        """Match new clips against the index and each other; persist them; return clip_id -> music_id.

        A new clip matching a known group takes its id; one matching two known groups merges them
        (the later id becomes an alias of the earlier: see ``music_ids``/``resolve``). ``linked``
        pairs of new clips (cut from one music segment, ``chromaprint.segment_links``) share an
        id by construction. Empty and constant (silent) fingerprints get no id.
        """
        self._load_ids()
        known = set(self._ids or [])
        raw = {k: self.decode_items(v) for k, v in fingerprints.items() if k not in known}
        raw = {k: v for k, v in raw.items() if self.usable(v)}
        keys = sorted(raw)
        if not keys:
            return {}
        arrays = [raw[k] for k in keys]
        uf = UnionFind([f"n:{k}" for k in keys])
        for a, b in linked:
            if a in raw and b in raw:
                uf.union(f"n:{a}", f"n:{b}")
        for (a, b), offs in self._candidates(arrays).items():
            node = f"k:{self.resolve(self._music[b])}"
            if node in uf.parent and uf.find(f"n:{keys[a]}") == uf.find(node):
                continue
            if self._matches(arrays[a], self._raw(b), offs):
                uf.parent.setdefault(node, node)
                uf.union(f"n:{keys[a]}", node)
        for (a, b), offs in self.batch_pairs(arrays).items():
            if sum(offs.values()) >= self.min_shared and uf.find(f"n:{keys[a]}") != uf.find(f"n:{keys[b]}") \
                    and self._matches(arrays[a], arrays[b], offs):
                uf.union(f"n:{keys[a]}", f"n:{keys[b]}")
        result: dict[str, str] = {}
        for members in uf.groups().values():
            old = sorted(m[2:] for m in members if m.startswith("k:"))
            new = [m[2:] for m in members if m.startswith("n:")]
            gid = old[0] if old else music_id_for(new)
            for alias in old[1:]:
                self.aliases[alias] = gid
            result.update({c: gid for c in new})
        self._append(keys, arrays, [result[k] for k in keys])
        return result

    def bulk_load(self, music_ids: dict[str, str], fingerprints: dict[str, str | np.ndarray]) -> None:
        """Add clips whose music ids are already known (e.g. from the manifest), without matching."""
        self._load_ids()
        known = set(self._ids or [])
        keys = sorted(k for k in fingerprints if k not in known)
        arrays = [self.decode_items(fingerprints[k]) for k in keys]
        keep = [i for i, a in enumerate(arrays) if len(a)]
        if keep:
            self._append([keys[i] for i in keep], [arrays[i] for i in keep], [music_ids[keys[i]] for i in keep])

    def _append(self, keys: list[str], arrays: list[np.ndarray], music: list[str]) -> None:
        base, n = self.size, len(keys)
        tag = f"{len(self.clip_blocks):06d}"
        starts = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)
        self._save_arrays(f"clips-{tag}", items=np.concatenate(arrays).astype(np.uint32), starts=starts)
        atomic_write_json(self.folder / f"ids-{tag}.json", {"clip_ids": keys, "music_ids": music})
        prefix, clip, pos = self.postings(arrays, base)
        name = f"seg-{tag}"
        self._save_arrays(name, prefix=prefix, clip=clip, pos=pos)
        self.clip_blocks.append({"name": f"clips-{tag}", "base": base, "n": n})
        self.segments.append(name)
        self.size += n
        self._ids = (self._ids or []) + keys
        self._music = (self._music or []) + music
        stale = self._merge_segments()
        self._save_meta()
        for old in stale:  # only after meta.json no longer names them
            self._remove(old)

    def _merge_segments(self) -> list[str]:
        """Merge the newest segments while the newer is at least half the older's size (O(log n) segments);
        return the replaced segment files."""
        sizes = {s: len(self._segment(s)["prefix"]) for s in self.segments[-2:]}
        stale: list[str] = []
        while len(self.segments) >= 2:
            a, b = self.segments[-2], self.segments[-1]
            sa = sizes.get(a) or len(self._segment(a)["prefix"])
            sb = sizes.get(b) or len(self._segment(b)["prefix"])
            if sb * 2 < sa:
                break
            za, zb = self._segment(a), self._segment(b)
            prefix = np.concatenate([za["prefix"], zb["prefix"]])
            order = np.argsort(prefix, kind="stable")
            merged = f"seg-{len(self.clip_blocks) - 1:06d}-{len(self.segments) - 1:02d}"
            self._save_arrays(merged, prefix=prefix[order], clip=np.concatenate([za["clip"], zb["clip"]])[order],
                           pos=np.concatenate([za["pos"], zb["pos"]])[order])
            self.segments[-2:] = [merged]
            sizes[merged] = sa + sb
            stale += [a, b]
        return stale


def update_music_ids(manifest: str | os.PathLike, fingerprints: dict[str, str | np.ndarray],
                     current: dict[str, str | None], max_ber: float = 0.15,
                     linked: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """clip_id -> music_id for ``fingerprints`` using the manifest's persisted index.

    Only clips not yet in the index are matched (against the index and each other). The first
    time, clips that already carry a ``music_id`` in ``current`` are loaded into the index as
    they are, so an existing manifest keeps its ids. Known groups keep their ids when new clips join.
    """
    return assign_ids(MusicIndex(index_dir(manifest), max_ber=max_ber), fingerprints, current, linked)


def assign_ids(idx: MusicIndex, fingerprints: dict[str, str | np.ndarray], current: dict[str, str | None],
               linked: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """clip_id -> music_id for ``fingerprints`` from a persisted index of either kind (see ``update_music_ids``)."""
    if idx.size == 0:
        labelled = {c: m for c, m in current.items() if m and c in fingerprints}
        if labelled:
            idx.bulk_load(labelled, {c: fingerprints[c] for c in labelled})
    idx.add(fingerprints, linked)  # skips known clips
    ids = idx.music_ids()
    return {c: ids[c] for c in fingerprints if c in ids}
