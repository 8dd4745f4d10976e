"""The persisted music-identity index: incremental adds give the partition of a full ``group_music`` pass."""

from __future__ import annotations

import numpy as np

from commercial98k.identity.chromaprint import group_music
from commercial98k.identity.index import MusicIndex, index_dir


def noisy(track: np.ndarray, start: int, length: int, rng: np.random.Generator, ber: float = 0.04) -> np.ndarray:
    """A re-encoded cut of ``track``: each of the 32 bits of each item flipped with probability ``ber``."""
    part = track[start:start + length].copy()
    flips = rng.random((len(part), 32)) < ber
    mask = (flips * (1 << np.arange(32, dtype=np.uint64))).sum(axis=1).astype(np.uint32)
    return part ^ mask


def synthetic_clips(n_tracks: int, per_track: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tracks = [rng.integers(0, 2**32, 400, dtype=np.uint32) for _ in range(n_tracks)]
    out = {}
    for t, track in enumerate(tracks):
        for j in range(per_track):
            out[f"t{t:03d}-c{j}"] = noisy(track, int(rng.integers(0, 50)), int(rng.integers(100, 240)), rng)
    return out


def partition(ids: dict[str, str]) -> set[frozenset]:
    groups: dict[str, set] = {}
    for clip, m in ids.items():
        groups.setdefault(m, set()).add(clip)
    return {frozenset(g) for g in groups.values()}


def test_incremental_adds_match_a_full_pass_and_persist(tmp_path):
    clips = synthetic_clips(n_tracks=12, per_track=5)
    keys = sorted(clips)
    rng = np.random.default_rng(1)
    rng.shuffle(keys)
    folder = index_dir(tmp_path / "c98k.parquet")
    assert folder.name == "c98k.parquet.identity"
    idx = MusicIndex(folder)
    first = idx.add({k: clips[k] for k in keys[:20]})
    assert set(first) == set(keys[:20])
    for i in range(20, len(keys), 8):  # a fresh object each time: everything comes back from disk
        MusicIndex(folder).add({k: clips[k] for k in keys[i:i + 8]})
    got = MusicIndex(folder).music_ids()
    assert set(got) == set(clips)
    want = group_music(clips)
    assert partition(got) == partition(want)
    assert partition(got) == {frozenset(k for k in clips if k.startswith(f"t{t:03d}-")) for t in range(12)}
    assert MusicIndex(folder).add({keys[0]: clips[keys[0]]}) == {}  # known clips are not added twice


def test_a_clip_joining_two_known_groups_merges_them(tmp_path):
    rng = np.random.default_rng(2)
    track = rng.integers(0, 2**32, 400, dtype=np.uint32)
    idx = MusicIndex(tmp_path / "idx")
    a = idx.add({"a": noisy(track, 0, 100, rng), "b": noisy(track, 250, 100, rng)})
    assert a["a"] != a["b"]  # no overlap: two groups so far
    c = idx.add({"c": noisy(track, 60, 250, rng)})
    ids = MusicIndex(tmp_path / "idx").music_ids()
    assert ids["a"] == ids["b"] == ids["c"] == c["c"] == min(a.values())


def test_segments_stay_logarithmic(tmp_path):
    clips = synthetic_clips(n_tracks=40, per_track=2, seed=3)
    keys = sorted(clips)
    idx = MusicIndex(tmp_path / "idx")
    for i in range(0, len(keys), 5):  # 16 adds
        idx.add({k: clips[k] for k in keys[i:i + 5]})
    assert len(idx.segments) <= 5
    files = {p.name.split(".")[0] for p in (tmp_path / "idx").glob("seg-*.npy")}
    assert files == set(idx.segments)
    assert partition(MusicIndex(tmp_path / "idx").music_ids()) == partition(group_music(clips))


def test_update_music_ids_keeps_a_manifests_ids_and_matches_only_new_clips(tmp_path):
    from commercial98k.identity.index import update_music_ids

    clips = synthetic_clips(n_tracks=4, per_track=3, seed=5)
    first = {k: v for k, v in clips.items() if k.endswith(("-c0", "-c1"))}
    current = {k: f"m-old{k[1:4]}" for k in first}  # ids a full pass gave earlier
    ids = update_music_ids(tmp_path / "c98k.parquet", clips, current)
    assert all(ids[k] == current[k] for k in first)
    assert all(ids[k] == current[k.replace("-c2", "-c0")] for k in clips if k.endswith("-c2"))
    assert (tmp_path / "c98k.parquet.identity" / "meta.json").is_file()
