"""WebDataset shard export (commercial98k.export.shards, c98k build-shards)."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from synthetic import make_labelled_corpus

from commercial98k.export.filters import EmptyDataSet
from commercial98k.export.partition import assign_splits
from commercial98k.export.shards import ShardFilters, build_shards, build_tag_vocab, clip_duration
from commercial98k.manifest.io import read_manifest, write_manifest
from commercial98k.storage.feature_store import FeatureStore
from commercial98k.storage.files import sha256_file
from commercial98k.taxonomy import load_taxonomy
from pipelines.cli import main as cli
from yuyin.data import make_dataset


def _read_tar(path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            key, _, ext = m.name.partition(".")
            samples[key][ext] = tf.extractfile(m).read()
    return dict(samples)


def _all_samples(out: Path, index: dict) -> dict[str, dict[str, bytes]]:
    samples = {}
    for split in index["splits"].values():
        for sh in split["shards"]:
            samples.update(_read_tar(out / sh["path"]))
    return samples


def _npy(b: bytes) -> np.ndarray:
    return np.load(io.BytesIO(b), allow_pickle=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    return make_labelled_corpus(tmp_path_factory.mktemp("corpus"), n_clips=160, seed=3)


def test_round_trip_and_index(corpus, tmp_path):
    manifest, data_root = corpus
    out = tmp_path / "shards"
    index = build_shards(manifest, out, data_root, samples_per_shard=25, progress=False)
    rows = {r["clip_id"]: r for r in read_manifest(manifest).to_pylist()}
    expected = {k for k, r in rows.items() if r["status"] == "ok" and r["has_music"]}
    samples = _all_samples(out, index)
    assert set(samples) == expected
    assert sum(s["samples"] for s in index["splits"].values()) == len(expected)

    # index.json layout of docs/ARCHITECTURE.md
    assert json.loads((out / "index.json").read_text()) == index
    assert index["version"] == 1 and index["categories"] == load_taxonomy().ids()
    assert index["manifest"] == {"path": str(manifest), "sha256": sha256_file(manifest), "rows": len(rows)}
    assert index["dims"] == {"frames": 32, "audio": 24, "emotion": 2 + 9, "tags": 16}
    assert index["models"]["audio_model"] == next(iter(rows.values()))["audio_model"]
    for split in index["splits"].values():
        for sh in split["shards"]:
            tar = out / sh["path"]
            assert sh["bytes"] == tar.stat().st_size and sh["sha256"] == sha256_file(tar)
            stats = json.loads(tar.with_name(tar.stem + "_stats.json").read_text())
            assert stats["samples"] == sh["samples"] == len(stats["clip_ids"])

    store = FeatureStore(data_root)
    vocab, classes = index["tag_vocab"], index["emotion_classes"]
    for key, s in samples.items():
        r = rows[key]
        assert np.array_equal(_npy(s["frames.npy"]), store.get(r["frame_embedding"], dtype="float16"))
        assert _npy(s["audio.npy"]).dtype == np.float16
        assert np.array_equal(_npy(s["audio.npy"]), store.get(r["audio_embedding"], dtype="float16"))
        assert np.allclose(_npy(s["tags.npy"]), store.get(r["tag_embedding"]))
        emo = _npy(s["emotion.npy"])
        assert emo.dtype == np.float32 and emo.shape == (2 + len(classes),)
        assert np.allclose(emo, [r["valence"], r["arousal"]] + [dict(r["emotion_probs"])[c] for c in classes])
        ids = _npy(s["tag_ids.npy"])
        assert [vocab[i] if i >= 0 else None for i in ids] == [t if t in vocab else None for t in r["tags"]]
        meta = json.loads(s["json"])
        assert meta["category_id"] == load_taxonomy().index(r["category"])
        assert meta["music_id"] == r["music_id"] and meta["duration_s"] == pytest.approx(clip_duration(r))
        assert {"clip_id", "video_id", "title", "tags", "valence", "arousal", "emotion", "dup_group"} <= set(meta)


def test_splits_grouped_and_vocab_from_train(corpus, tmp_path):
    manifest, data_root = corpus
    out = tmp_path / "shards"
    index = build_shards(manifest, out, data_root, samples_per_shard=40, progress=False)
    metas = [json.loads(s["json"]) for s in _all_samples(out, index).values()]
    split_of_music = defaultdict(set)
    for m in metas:
        split_of_music[m["music_id"]].add(m["split"])
    assert all(len(v) == 1 for v in split_of_music.values())
    assert {m["split"] for m in metas} == {"train", "val", "test"}
    assert index["tag_vocab"] == build_tag_vocab([m for m in metas if m["split"] == "train"])


def _mtimes(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".tar", ".json")
            and p.name != "index.json"}


def test_rerun_rebuilds_only_missing_stale_or_truncated(corpus, tmp_path):
    manifest, data_root = corpus
    out = tmp_path / "shards"
    first = build_shards(manifest, out, data_root, samples_per_shard=20, progress=False)
    train = [out / sh["path"] for sh in first["splits"]["train"]["shards"]]
    assert len(train) >= 4
    before = _mtimes(out)

    again = build_shards(manifest, out, data_root, samples_per_shard=20, progress=False)
    assert again["rebuilt_shards"] == [] and _mtimes(out) == before
    assert again["splits"] == first["splits"]

    # a killed run: stats of shard 1 never written; shard 2 truncated
    train[1].with_name(train[1].stem + "_stats.json").unlink()
    with open(train[2], "r+b") as f:
        f.truncate(train[2].stat().st_size // 2)
    third = build_shards(manifest, out, data_root, samples_per_shard=20, progress=False)
    assert sorted(third["rebuilt_shards"]) == sorted(p.relative_to(out).as_posix() for p in train[1:3])
    assert third["splits"] == first["splits"]  # byte-identical rebuild
    after = _mtimes(out)
    changed = {k for k in after if after[k] != before.get(k)}
    assert {Path(k).name.split("_")[0].split(".")[0] for k in changed} == {p.stem for p in train[1:3]}

    # a changed label makes exactly the shard holding that clip stale
    stats = json.loads(train[0].with_name(train[0].stem + "_stats.json").read_text())
    table = read_manifest(manifest)
    rows = table.to_pylist()
    for r in rows:
        if r["clip_id"] == stats["clip_ids"][0]:
            r["valence"] = -0.5 if (r["valence"] or 0) > 0 else 0.5
    edited = tmp_path / "edited.parquet"
    write_manifest(rows, edited, kind="clips")
    fourth = build_shards(edited, out, data_root, samples_per_shard=20, progress=False)
    assert fourth["rebuilt_shards"] == [train[0].relative_to(out).as_posix()]


def test_interrupted_write_leaves_no_shard_and_no_stats(corpus, tmp_path, monkeypatch):
    import commercial98k.export.shards as shards_mod

    manifest, data_root = corpus
    out = tmp_path / "shards"
    real = shards_mod.make_sample
    calls = {"n": 0}

    def dying(row, ctx):
        calls["n"] += 1
        if calls["n"] == 30:  # mid-way through the second shard
            raise KeyboardInterrupt
        return real(row, ctx)

    monkeypatch.setattr(shards_mod, "make_sample", dying)
    with pytest.raises(KeyboardInterrupt):
        build_shards(manifest, out, data_root, samples_per_shard=20, progress=False)
    train = out / "train"
    assert sorted(p.name for p in train.iterdir()) == ["train-000000.tar", "train-000000_stats.json"]
    assert not (out / "index.json").exists()
    monkeypatch.setattr(shards_mod, "make_sample", real)
    index = build_shards(manifest, out, data_root, samples_per_shard=20, progress=False)
    assert "train/train-000000.tar" not in index["rebuilt_shards"] and "train/train-000001.tar" in index["rebuilt_shards"]


def test_filters(corpus, tmp_path):
    manifest, data_root = corpus
    rows = read_manifest(manifest).to_pylist()
    f = ShardFilters(categories=("cosmetics", "food"), min_duration=6.0, min_category_confidence=0.5)
    # every clip in train: these filters may empty a small val/test split, which is an error of its own
    index = build_shards(manifest, tmp_path / "s", data_root, filters=f, fractions=(1.0, 0.0, 0.0),
                         samples_per_shard=50, progress=False)
    want = {r["clip_id"] for r in rows if r["status"] == "ok" and r["category"] in ("cosmetics", "food")
            and clip_duration(r) >= 6.0 and r["category_confidence"] >= 0.5}
    assert 0 < len(want) < len(rows) / 2
    got = set(_all_samples(tmp_path / "s", index))
    assert got == want
    assert index["filters"]["categories"] == ["cosmetics", "food"]
    assert sum(index["filtered_out"].values()) + len(got) + index["skipped"]["count"] == len(rows)
    assert set(index["filtered_out"]) <= {"status", "category", "min_duration", "min_category_confidence"}

    # has_music: only clips with music by default, all with has_music=None (--any-music)
    silent = {r["clip_id"] for r in rows[::5] if r["status"] == "ok"}
    edited = [dict(r, has_music=r["clip_id"] not in silent) for r in rows]
    path = write_manifest(edited, tmp_path / "edited.parquet", kind="clips")
    ok = {r["clip_id"] for r in rows if r["status"] == "ok"}
    music_only = set(_all_samples(tmp_path / "m", build_shards(path, tmp_path / "m", data_root, progress=False)))
    assert silent and music_only == ok - silent
    any_music = build_shards(path, tmp_path / "a", data_root, filters=ShardFilters(has_music=None), progress=False)
    assert set(_all_samples(tmp_path / "a", any_music)) == ok

    failed = {r["clip_id"] for r in rows if r["status"] == "failed"}
    f2 = ShardFilters(statuses=("failed",))
    with pytest.raises(EmptyDataSet) as e:  # failed rows have no features: nothing to write is an error
        build_shards(manifest, tmp_path / "s2", data_root, filters=f2, progress=False)
    assert failed and f"no frame_embedding {len(failed)} [run `c98k label`]" in str(e.value)
    assert not (tmp_path / "s2" / "index.json").exists()


def test_missing_feature_file_skipped_with_warning(tmp_path, capsys):
    manifest, data_root = make_labelled_corpus(tmp_path, n_clips=30, seed=5, failed_share=0)
    rows = read_manifest(manifest).to_pylist()
    victim = rows[3]
    (data_root / victim["audio_embedding"]).unlink()
    corrupt = rows[4]
    (data_root / corrupt["frame_embedding"]).write_bytes(b"not a npy file")
    index = build_shards(manifest, tmp_path / "s", data_root, progress=False)
    err = capsys.readouterr().err
    assert f"{victim['clip_id']}: skipped: audio_embedding file missing" in err
    assert f"{corrupt['clip_id']}: skipped: ValueError" in err
    assert index["skipped"]["count"] == 2
    assert {s["clip_id"] for s in index["skipped"]["clips"]} == {victim["clip_id"], corrupt["clip_id"]}
    assert sum(s["samples"] for s in index["splits"].values()) == len(rows) - 2


def _cut(src: Path, dst: Path, audio: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    args = ["ffmpeg", "-v", "error", "-y", "-ss", "2", "-t", "1", "-i", str(src)]
    args += (["-vn", "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le"] if audio
             else ["-an", "-vf", "scale=64:-2", "-c:v", "libx264", "-preset", "ultrafast"])
    subprocess.run(args + [str(dst)], check=True)


def test_with_media_round_trip(shared_media, tmp_path):
    manifest, data_root = make_labelled_corpus(tmp_path, n_clips=4, seed=6, failed_share=0)
    rows = read_manifest(manifest).to_pylist()
    src = shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv"
    for r in rows:
        _cut(src, data_root / r["clip_path"], audio=False)
        _cut(src, data_root / r["audio_path"], audio=True)
    index = build_shards(manifest, tmp_path / "s", data_root, with_media=True, progress=False)
    samples = _all_samples(tmp_path / "s", index)
    assert len(samples) == len(rows) and index["with_media"]
    for r in rows:
        s = samples[r["clip_id"]]
        assert s["mp4"] == (data_root / r["clip_path"]).read_bytes()
        assert s["wav"][:4] == b"RIFF" and s["wav"] == (data_root / r["audio_path"]).read_bytes()
    decoded = {s["clip_id"]: s for split in ("train", "val", "test") if index["splits"][split]["shards"]
               for s in make_dataset(tmp_path / "s", split, with_media=True)}
    assert {k: s["mp4"] for k, s in decoded.items()} == {k: s["mp4"] for k, s in samples.items()}


def test_cli_build_shards(corpus, tmp_path):
    manifest, data_root = corpus
    out = tmp_path / "shards"
    args = ["build-shards", "--manifest", str(manifest), "--out", str(out), "--data-root", str(data_root),
            "--samples-per-shard", "30", "--split-fractions", "0.6,0.2,0.2", "--seed", "1", "--category", "food",
            "--any-music"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    index = json.loads((out / "index.json").read_text())
    assert "train:" in res.output and index["split_options"]["fractions"] == [0.6, 0.2, 0.2]
    assert {json.loads(s["json"])["category"] for s in _all_samples(out, index).values()} == {"food"}
    bad = CliRunner().invoke(cli, args + ["--split-fractions", "0.9,0.9,0.1"])
    assert bad.exit_code != 0 and "summing to 1" in bad.output
    videos = write_manifest([{"video_id": "v", "status": "ok"}], tmp_path / "videos.parquet", kind="videos")
    wrong = CliRunner().invoke(cli, ["build-shards", "--manifest", str(videos), "--out", str(out)])
    assert wrong.exit_code == 1 and "videos manifest" in wrong.output
    missing = CliRunner().invoke(cli, ["build-shards", "--manifest", str(tmp_path / "nope.parquet"),
                                       "--out", str(out)])
    assert missing.exit_code == 1 and "no such manifest" in missing.output


def test_cli_filters_that_empty_the_data_set_or_a_split_exit_non_zero(corpus, tmp_path):
    manifest, data_root = corpus
    out = tmp_path / "shards"
    base = ["build-shards", "--manifest", str(manifest), "--out", str(out), "--data-root", str(data_root),
            "--any-music"]
    res = CliRunner().invoke(cli, base + ["--min-duration", "10000"])
    assert res.exit_code == 1, res.output
    assert "left no sample" in res.output and "--min-duration 10000.0 dropped" in res.output
    assert "Traceback" not in res.output and not (out / "index.json").exists()
    # a filter that empties one split (val) but not the others
    rows = read_manifest(manifest).to_pylist()
    split_of = assign_splits(read_manifest(manifest), (0.8, 0.1, 0.1), 0)
    edited = [dict(r, category_confidence=0.01 if split_of[r["clip_id"]] == "val" else 0.9) for r in rows]
    path = write_manifest(edited, tmp_path / "edited.parquet", kind="clips")
    res = CliRunner().invoke(cli, ["build-shards", "--manifest", str(path), "--out", str(out), "--data-root",
                                   str(data_root), "--any-music", "--min-category-confidence", "0.5"])
    assert res.exit_code == 1 and "split 'val' empty" in res.output and "--min-category-confidence" in res.output
    # the drop counts of every filter are printed on success
    res = CliRunner().invoke(cli, base + ["--min-category-confidence", "0.5"])
    assert res.exit_code == 0, res.output
    assert "dropped by filters:" in res.output and "--min-category-confidence" in res.output
