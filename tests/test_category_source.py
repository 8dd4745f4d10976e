"""One training category per clip with its source (crawl, corrected, predicted); an empty data set is an error."""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from synthetic import AUDIO_INFO, FRAME_INFO, make_labelled_corpus

from commercial98k.export.filters import EmptyDataSet, training_category
from commercial98k.export.shards import ShardFilters, build_shards
from commercial98k.manifest.io import read_manifest, write_manifest
from commercial98k.storage.feature_store import FeatureStore
from commercial98k.taxonomy import load_taxonomy
from pipelines.cli import main as cli

IDS = load_taxonomy().ids()


def shard_metas(out: Path) -> dict[str, dict]:
    """clip_id -> the sample's json, over every shard of every split (test_corrections uses it too)."""
    index = json.loads((out / "index.json").read_text())
    metas = {}
    for split in index["splits"].values():
        for sh in split["shards"]:
            with tarfile.open(out / sh["path"]) as tf:
                for m in tf.getmembers():
                    if m.name.endswith(".json"):
                        meta = json.loads(tf.extractfile(m).read())
                        metas[meta["clip_id"]] = meta
    return metas


def _probs(top: str, p: float) -> dict[str, float]:
    rest = (1.0 - p) / (len(IDS) - 1)
    return {c: (p if c == top else rest) for c in IDS}


def _errors(res) -> list[str]:
    return [line for line in res.output.splitlines() if line.startswith("error:")]


def test_training_category_order_and_confidence():
    row = {"clip_id": "a", "category": "food", "category_confidence": 0.4, "predicted_category": "pets",
           "category_probs": list(_probs("pets", 0.7).items())}  # a Parquet map reads as pairs
    assert training_category(row) == ("food", "crawl", 0.4)
    assert training_category(row, mode="predicted") == ("pets", "predicted", pytest.approx(0.7))
    assert training_category(row, "home", "crawl")[:2] == ("home", "corrected")  # a correction wins in every mode
    bare = {"clip_id": "b", "category": None, "predicted_category": "pets", "category_confidence": 0.55}
    assert training_category(bare) == ("pets", "predicted", 0.55)  # label's confidence is P(predicted) here
    assert training_category(bare, mode="crawl") == (None, None, None)
    with pytest.raises(ValueError, match="--category-source"):
        training_category(row, mode="guess")


def _fake_label(video_rows: list[dict], data_root: Path, clips_per_video: int = 2) -> list[dict]:
    """Clips rows for fetched videos as `split` + `label` would leave them (features generated, category
    predicted, the crawl category copied from the video row)."""
    rng = np.random.default_rng(0)
    store = FeatureStore(data_root)
    rows = []
    for v, video in enumerate(r for r in video_rows if r["status"] == "ok"):
        for c in range(clips_per_video):
            clip_id = f"{video['video_id']}-c{c:03d}"
            pred = IDS[(v + c) % 4]
            p = 0.45 + 0.1 * c
            rows.append({**video, "clip_id": clip_id, "clip_index": c, "clip_start_s": 4.0 * c,
                         "clip_end_s": 4.0 * c + 4.0, "has_music": True, "music_id": f"m-{v:012d}",
                         "predicted_category": pred, "category_probs": _probs(pred, p), "category_confidence": p,
                         "frame_embedding": store.put("frames", FRAME_INFO.key(), clip_id, rng.normal(size=(4, 8))),
                         "audio_embedding": store.put("audio", AUDIO_INFO.key(), clip_id, rng.normal(size=(6, 8))),
                         "audio_model": AUDIO_INFO.tag(), "frame_model": FRAME_INFO.tag()})
    return rows


def test_plain_folder_of_shared_videos_ends_in_shards_with_predicted_categories(shared_media, tmp_path):
    folder = tmp_path / "ads"  # no category subfolders, no -c: no crawl category
    folder.mkdir()
    for name in ("big_buck_bunny_0_30.webm", "videollava_sample_demo_22.mp4", "big_buck_bunny_trailer_480p.mkv"):
        (folder / name).symlink_to(shared_media / "videos" / name)
    data, videos = tmp_path / "data", tmp_path / "manifests" / "videos.parquet"
    res = CliRunner().invoke(cli, ["fetch", "-s", str(folder), "--manifest", str(videos), "--data-root", str(data)])
    assert res.exit_code == 0, res.output
    fetched = read_manifest(videos).to_pylist()
    assert len(fetched) == 3 and all(r["status"] == "ok" and r["category"] is None for r in fetched)

    rows = _fake_label(fetched, data)
    rows.append({**rows[0], "clip_id": rows[0]["video_id"] + "-c009", "status": "no_music", "has_music": False})
    clips = write_manifest(rows, tmp_path / "manifests" / "c98k.parquet", kind="clips")
    out = tmp_path / "shards"
    base = ["build-shards", "--manifest", str(clips), "--data-root", str(data), "--out", str(out), "--min-shards", "1"]
    res = CliRunner().invoke(cli, base)
    assert res.exit_code == 0, res.output
    metas = shard_metas(out)
    ok = {r["clip_id"]: r for r in rows if r["status"] == "ok"}
    assert set(metas) == set(ok) and len(ok) == 6
    for clip_id, m in metas.items():
        assert m["category"] == ok[clip_id]["predicted_category"] and m["category_source"] == "predicted"
        assert m["category_id"] == IDS.index(m["category"]) and m["crawl_category"] is None
    index = json.loads((out / "index.json").read_text())
    assert sum(s.get("predicted", 0) for s in index["category_sources"].values()) == 6
    assert "source predicted" in res.output

    # crawl categories only: nothing left, one error line naming the cause and the flag, exit 1
    res = CliRunner().invoke(cli, base + ["--category-source", "crawl", "--out", str(tmp_path / "s2")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert len(_errors(res)) == 1 and "no category 6 [--category-source any" in _errors(res)[0]
    assert not (tmp_path / "s2" / "index.json").exists()

    res = CliRunner().invoke(cli, ["stats", "--manifest", str(clips), "--no-report"])
    assert res.exit_code == 0 and "(build-shards --category-source any): predicted 6" in res.output


@pytest.fixture
def mixed(tmp_path) -> tuple[Path, Path, dict[str, dict]]:
    """A labelled corpus where every third clip lost its crawl category (a URL-list row without one)."""
    manifest, data_root = make_labelled_corpus(tmp_path, n_clips=90, seed=11, failed_share=0)
    rows = read_manifest(manifest).to_pylist()
    for i, r in enumerate(rows):
        if i % 3 == 0:
            r.update(category=None, predicted_category=IDS[8], category_probs=_probs(IDS[8], 0.3 if i % 2 else 0.8))
            r["category_confidence"] = r["category_probs"][IDS[8]]
        else:  # the prediction disagrees with the crawl category: the crawl one is used
            r.update(predicted_category=IDS[9], category_probs=_probs(IDS[9], 0.6), category_confidence=0.9)
    write_manifest(rows, manifest, kind="clips")
    return manifest, data_root, {r["clip_id"]: r for r in rows}


def test_mixed_manifest_keeps_both_sources_counted_separately(mixed, tmp_path):
    manifest, data_root, rows = mixed
    index = build_shards(manifest, tmp_path / "any", data_root, progress=False)
    metas = shard_metas(tmp_path / "any")
    assert set(metas) == set(rows)
    for clip_id, m in metas.items():
        r = rows[clip_id]
        want = ("crawl", r["category"]) if r["category"] else ("predicted", IDS[8])
        assert (m["category_source"], m["category"]) == want and m["crawl_category"] == r["category"]
    totals = {src: sum(s.get(src, 0) for s in index["category_sources"].values()) for src in ("crawl", "predicted")}
    assert totals == {"crawl": 60, "predicted": 30}
    for split, counts in index["category_sources"].items():
        assert sum(counts.values()) == index["splits"][split]["samples"]

    # only crawl categories: the predicted ones are dropped and counted; each clip keeps its split
    crawl = build_shards(manifest, tmp_path / "crawl", data_root, filters=ShardFilters(category_source="crawl"),
                         progress=False)
    crawl_metas = shard_metas(tmp_path / "crawl")
    assert set(crawl_metas) == {k for k, r in rows.items() if r["category"]}
    assert crawl["skipped"]["by_cause"] == {"no category": 30}
    assert all(crawl_metas[k]["split"] == metas[k]["split"] for k in crawl_metas)

    # only predictions: every clip, with the predicted category and its probability
    build_shards(manifest, tmp_path / "pred", data_root, filters=ShardFilters(category_source="predicted"),
                 progress=False)
    pred = shard_metas(tmp_path / "pred")
    assert {m["category"] for m in pred.values()} == {IDS[8], IDS[9]}
    assert all(m["category_source"] == "predicted" for m in pred.values())
    assert {round(m["category_confidence"], 3) for m in pred.values()} == {0.3, 0.8, 0.6}


def test_min_category_confidence_uses_the_predicted_probability(mixed, tmp_path):
    manifest, data_root, rows = mixed
    f = ShardFilters(min_category_confidence=0.5)
    index = build_shards(manifest, tmp_path / "s", data_root, filters=f, fractions=(1.0, 0.0, 0.0), progress=False)
    kept = set(shard_metas(tmp_path / "s"))
    low = {k for k, r in rows.items() if not r["category"] and r["category_probs"][IDS[8]] < 0.5}
    assert low and kept == set(rows) - low  # crawl clips (confidence 0.9) all stay
    assert index["filtered_out"] == {"min_category_confidence": len(low)}


def test_yuyin_trains_and_evaluates_on_predicted_categories(mixed, tmp_path):
    import torch

    from yuyin.evaluate import evaluate_model, report_markdown
    from yuyin.model import YuYin, YuYinConfig
    from yuyin.train import load_config, train

    manifest, data_root, rows = mixed
    out = tmp_path / "shards"
    build_shards(manifest, out, data_root, samples_per_shard=30, progress=False)
    cfg = load_config(None, shards=str(out), checkpoint_dir=str(tmp_path / "run"), batch_size=16, progress=False,
                      model={"hidden": 32, "embed_dim": 32, "heads": 2}, warmup_steps=2, log_every=2, steps=30,
                      lr=3e-3)
    train(cfg)
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        log = list(csv.DictReader(f))
    first, last = np.mean([float(r["category"]) for r in log[:3]]), np.mean([float(r["category"]) for r in log[-3:]])
    assert last < first  # the category head learns the shard's categories, predicted ones included

    torch.manual_seed(0)
    index = json.loads((out / "index.json").read_text())
    model = YuYin(YuYinConfig.from_index(index, hidden=32, embed_dim=32, heads=2))
    report = evaluate_model(model, out, "train", progress=False)
    per = report["per_category_source"]
    assert set(per) == {"crawl", "predicted"}
    assert per["crawl"]["queries"] + per["predicted"]["queries"] == report["clips"]
    assert "Per category source" in report_markdown(report)


def _cli_build(manifest: Path, data_root: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["build-shards", "--manifest", str(manifest), "--data-root", str(data_root),
                                    "--out", str(out), "--any-music", *extra])


def test_zero_samples_is_one_error_line_with_counts_per_reason(tmp_path):
    manifest, data_root = make_labelled_corpus(tmp_path, n_clips=24, seed=2, failed_share=0)
    rows = read_manifest(manifest).to_pylist()

    # unknown categories (a URL list's own names), nothing predicted
    unknown = write_manifest([dict(r, category="shoes", predicted_category=None) for r in rows],
                             tmp_path / "unknown.parquet", kind="clips")
    res = _cli_build(unknown, data_root, tmp_path / "a")
    assert res.exit_code == 1 and len(_errors(res)) == 1
    assert "0 of 24 rows" in _errors(res)[0] and "unknown category 24 [add it to commercial98k/data/categories.json" \
        in _errors(res)[0]
    assert not (tmp_path / "a" / "index.json").exists()

    # missing feature files (a wrong --data-root, or features deleted)
    res = _cli_build(manifest, tmp_path / "elsewhere", tmp_path / "b")
    assert res.exit_code == 1 and len(_errors(res)) == 1
    assert "frame_embedding 24 [--data-root" in _errors(res)[0]

    # filters and another cause together: a filter drops half, unknown categories the rest
    half = write_manifest([dict(r, category="shoes", predicted_category=None) if i % 2
                           else dict(r, clip_end_s=r["clip_start_s"] + 2.0) for i, r in enumerate(rows)],
                          tmp_path / "half.parquet", kind="clips")
    res = _cli_build(half, data_root, tmp_path / "c", "--min-duration", "3")
    assert res.exit_code == 1 and len(_errors(res)) == 1, res.output
    line = _errors(res)[0]
    assert "min_duration 12 [--min-duration]" in line and "unknown category 12" in line

    # the library raises the same error
    with pytest.raises(EmptyDataSet, match="unknown category 24"):
        build_shards(unknown, tmp_path / "d", data_root, progress=False)
