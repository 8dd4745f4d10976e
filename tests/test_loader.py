"""The YuYin shard loader (yuyin.data): batches, padding, node/worker splitting, shuffling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import make_labelled_corpus

from commercial98k.export.shards import build_shards
from commercial98k.manifest.io import read_manifest
from commercial98k.storage.feature_store import FeatureStore
from yuyin.data import collate, load_index, make_dataset, make_loader, subsample


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, dict, dict]:
    root = tmp_path_factory.mktemp("loader")
    manifest, data_root = make_labelled_corpus(root, n_clips=200, seed=11)
    out = root / "shards"
    index = build_shards(manifest, out, data_root, samples_per_shard=16, progress=False)
    rows = {r["clip_id"]: r for r in read_manifest(manifest).to_pylist()}
    return out, data_root, index, rows


def _split_clips(out: Path, index: dict, split: str) -> set[str]:
    clips: set[str] = set()
    for sh in index["splits"][split]["shards"]:
        stats = json.loads((out / sh["path"]).with_name(Path(sh["path"]).stem + "_stats.json").read_text())
        clips.update(stats["clip_ids"])
    return clips


def test_batches_match_the_feature_store(built):
    out, data_root, index, rows = built
    store = FeatureStore(data_root)
    loader = make_loader(out, "val", batch_size=7, shuffle=False, max_frames=None, max_audio=None, max_tags=None)
    seen = []
    for b in loader:
        n = len(b["clip_id"])
        assert b["frames"].dtype == torch.float32 and b["frames"].shape[:1] == (n,)
        assert b["frames"].shape[2] == index["dims"]["frames"] and b["audio"].shape[2] == index["dims"]["audio"]
        assert b["emotion"].shape == (n, index["dims"]["emotion"])
        assert b["tags"].shape[:2] == b["tags_mask"].shape == b["tag_ids"].shape
        assert b["category"].dtype == torch.int64 and b["tag_ids"].dtype == torch.int64
        for i, clip in enumerate(b["clip_id"]):
            r = rows[clip]
            frames = store.get(r["frame_embedding"], dtype="float16").astype(np.float32)
            assert int(b["frames_mask"][i].sum()) == len(frames)
            assert torch.equal(b["frames"][i, : len(frames)], torch.from_numpy(frames))
            assert not b["frames"][i, len(frames):].any()
            audio = store.get(r["audio_embedding"], dtype="float16").astype(np.float32)
            assert torch.equal(b["audio"][i][b["audio_mask"][i]], torch.from_numpy(audio))
            n_tags = len(r["tags"])
            assert int(b["tags_mask"][i].sum()) == n_tags
            assert (b["tag_ids"][i, n_tags:] == -1).all()
            assert b["music_id"][i] == r["music_id"] and b["meta"][i]["clip_id"] == clip
            assert index["categories"][int(b["category"][i])] == r["category"]
        seen += b["clip_id"]
    assert sorted(seen) == sorted(_split_clips(out, index, "val"))


def test_max_lengths_subsample_evenly(built):
    out, _, _, _ = built
    ds = make_dataset(out, "train", max_frames=5, max_audio=4, max_tags=1)
    full = {s["clip_id"]: s for s in make_dataset(out, "train", max_frames=None, max_audio=None, max_tags=None)}
    for s in ds:
        f = full[s["clip_id"]]
        assert len(s["frames"]) == min(5, len(f["frames"])) and len(s["audio"]) == min(4, len(f["audio"]))
        assert np.array_equal(s["frames"], subsample(f["frames"], 5))
        assert np.array_equal(s["frames"][0], f["frames"][0]) and np.array_equal(s["frames"][-1], f["frames"][-1])
        assert len(s["tag_ids"]) == min(1, len(f["tag_ids"]))
    b = collate([s for _, s in zip(range(3), ds, strict=False)])
    assert b["frames"].shape[1] <= 5 and b["tags"].shape[1] == 1  # padded to >= 1 step


def test_ranks_and_workers_see_disjoint_data(built, monkeypatch):
    out, _, index, _ = built
    n_shards = len(index["splits"]["train"]["shards"])
    assert n_shards >= 4
    per_rank = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        loader = make_loader(out, "train", batch_size=5, num_workers=2, shuffle=True, seed=3)
        clips = [c for b in loader for c in b["clip_id"]]
        assert len(clips) == len(set(clips)), "a clip seen twice within one rank"
        per_rank.append(set(clips))
    assert per_rank[0] and per_rank[1] and not per_rank[0] & per_rank[1]
    assert per_rank[0] | per_rank[1] == _split_clips(out, index, "train")


def test_shuffle_reproducible_per_seed_and_epoch(built):
    out, _, _, _ = built

    def order(loader) -> list[str]:
        return [c for b in loader for c in b["clip_id"]]

    a = make_loader(out, "train", batch_size=8, shuffle=True, seed=5, shuffle_buffer=50)
    b = make_loader(out, "train", batch_size=8, shuffle=True, seed=5, shuffle_buffer=50)
    a0, a1 = order(a), order(a)
    assert a0 == order(b) and a1 == order(b)
    assert a0 != a1 and sorted(a0) == sorted(a1)
    a.set_epoch(0)
    assert order(a) == a0
    plain = order(make_loader(out, "train", batch_size=8, shuffle=False))
    assert plain != a0 and plain == order(make_loader(out, "train", batch_size=8, shuffle=False))


def test_too_few_shards_warns_and_missing_index_errors(built, tmp_path, monkeypatch):
    out, _, index, _ = built
    assert len(index["splits"]["test"]["shards"]) < 8
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.warns(UserWarning, match="8 readers"):
        make_loader(out, "test", batch_size=4, num_workers=2)
    with pytest.raises(FileNotFoundError, match="build-shards"):
        load_index(tmp_path)
    with pytest.raises(KeyError, match="unknown split"):
        make_dataset(out, "holdout")


def test_shard_reader_gives_webdatasets_samples(built):
    import webdataset as wds

    from yuyin.shard_reader import tar_samples

    out, _, index, _ = built
    urls = [str(out / sh["path"]) for sh in index["splits"]["train"]["shards"]]
    ours = [s for u in urls for s in tar_samples(u)]
    theirs = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert len(ours) == len(theirs) == index["splits"]["train"]["samples"]
    for a, b in zip(ours, theirs, strict=True):
        assert set(a) == set(b) - {"__local_path__"}
        assert all(bytes(a[k]) == b[k] for k in a if not k.startswith("__"))
        assert a["__key__"] == b["__key__"] and a["__url__"] == b["__url__"]


def _write_tar(path: Path, members: dict[str, bytes], fmt: int) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w", format=fmt) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("fmt", ["ustar", "pax", "gnu"])
def test_shard_reader_reads_long_names_in_every_tar_format(tmp_path, fmt):
    import io
    import tarfile

    from yuyin.shard_reader import npy, tar_samples

    # over 100 characters: ustar splits it into its prefix and name fields, PAX and GNU add headers
    long_key = "d" * 60 + "/" + "x" * (80 if fmt == "ustar" else 150)
    arrays = {"a": np.arange(6, dtype=np.float16).reshape(2, 3), long_key: np.ones((0, 4), np.float32)}
    members = {}
    for key, arr in arrays.items():
        buf = io.BytesIO()
        np.save(buf, arr)
        members[f"{key}.frames.npy"] = buf.getvalue()
        members[f"{key}.json"] = json.dumps({"k": key}).encode()
    members["__meta__"] = b"skipped"
    path = tmp_path / f"{fmt}.tar"
    _write_tar(path, members, {"ustar": tarfile.USTAR_FORMAT, "pax": tarfile.PAX_FORMAT,
                               "gnu": tarfile.GNU_FORMAT}[fmt])
    samples = list(tar_samples(str(path)))
    assert [s["__key__"] for s in samples] == list(arrays)
    for s in samples:
        got = npy(s["frames.npy"])
        assert got.dtype == arrays[s["__key__"]].dtype and np.array_equal(got, arrays[s["__key__"]])
        assert json.loads(bytes(s["json"])) == {"k": s["__key__"]}


def test_corrupt_or_truncated_shards_raise_errors_naming_the_shard(tmp_path):
    import tarfile

    import webdataset as wds

    from yuyin.shard_reader import ShardError, shard_samples

    members = {f"c{i}.json": b'{"music_id": "m"}' * 40 for i in range(3)}
    good = tmp_path / "good.tar"
    _write_tar(good, members, tarfile.USTAR_FORMAT)
    data = good.read_bytes()
    cases = {"truncated.tar": data[:1500], "header.tar": data[:1536] + b"\xff" * 50 + data[1586:],  # c1's header
             "empty.tar": b"", "notatar.tar": b"hello world" * 100}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ShardError, match=name):
            list(shard_samples([str(tmp_path / name)], wds.reraise_exception))
    assert [s["__key__"] for s in shard_samples([str(good)], wds.reraise_exception)] == ["c0", "c1", "c2"]


def test_npy_views_the_member_bytes_without_copying():
    import io

    from yuyin.shard_reader import npy

    for arr in (np.arange(12, dtype=np.float16).reshape(3, 4), np.array(2.5), np.arange(3, dtype=">i8"),
                np.asfortranarray(np.arange(6.0).reshape(2, 3))):
        buf = io.BytesIO()
        np.save(buf, arr)
        data = buf.getvalue()
        got = npy(memoryview(data))
        assert got.dtype == arr.dtype and got.shape == arr.shape and np.array_equal(got, arr)
        if not np.isfortran(arr):
            assert not got.flags.writeable and got.base is not None  # a view over the bytes, not a copy
