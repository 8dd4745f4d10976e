"""The ``yuyin`` CLI end to end on synthetic shards (frame features sized like efficientnet-lite0)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from synthetic import make_labelled_corpus

from commercial98k.export.shards import build_shards
from yuyin.cli import main
from yuyin.recommend import INDEX_JSON, INDEX_NPZ, build_music_index, load_music_index

SMALL = ["--model-opt", "hidden=32", "--model-opt", "embed_dim=16", "--model-opt", "heads=2"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder: manifests/c98k.parquet + shards/ (1280-d frames, like efficientnet-lite0)."""
    root = tmp_path_factory.mktemp("yuyin-cli")
    manifest, data_root = make_labelled_corpus(root, n_clips=160, dims={"frames": 1280}, seed=3)
    build_shards(manifest, root / "shards", data_root, samples_per_shard=60, progress=False)
    return root


def _run(args: list[str]) -> object:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result


def test_help_teaches_the_commands():
    out = _run(["--help"]).output
    for cmd in ("train", "evaluate", "recommend", "benchmark"):
        assert cmd in out
    train_help = _run(["train", "--help"]).output
    for flag in ("--manifest", "--shards", "--config", "--resume", "--w-category", "--checkpoint-dir", "--device"):
        assert flag in train_help


def test_train_resume_evaluate(project, tmp_path):
    ckpt = tmp_path / "run"
    base = ["train", "--manifest", str(project / "manifests" / "c98k.parquet"), "--batch-size", "16",
            "--checkpoint-dir", str(ckpt), "--checkpoint-every", "2", *SMALL]
    r = _run([*base, "--steps", "4"])
    assert r.exit_code == 0, r.output
    assert "trained 4 steps" in r.output and (ckpt / "last.pt").is_file()
    r = _run([*base, "--steps", "6", "--resume"])
    assert r.exit_code == 0, r.output
    import torch

    assert torch.load(ckpt / "last.pt", weights_only=True)["step"] == 6
    r = _run(["evaluate", "--checkpoint", str(ckpt), "--shards", str(project / "shards"), "--split", "val"])
    assert r.exit_code == 0, r.output
    report = json.loads((ckpt / "eval-val.json").read_text())
    assert report["split"] == "val" and report["step"] == 6 and 0 <= report["v2m"]["R@10"] <= 1
    assert "music→video" in r.output


def test_bad_inputs_give_one_line_errors(project, tmp_path):
    r = CliRunner().invoke(main, ["train", "--shards", str(tmp_path), "--steps", "1"])
    assert r.exit_code == 1 and "no shards at" in r.output
    r = CliRunner().invoke(main, ["train", "--shards", str(project / "shards"), "--device", "tpu", "--steps", "1",
                                  "--checkpoint-dir", str(tmp_path / "x")])
    assert r.exit_code == 1 and "unknown device 'tpu'" in r.output
    r = CliRunner().invoke(main, ["train", "--shards", str(project / "shards"), "--model-opt", "bogus=1"])
    assert r.exit_code == 1 and "unknown model option" in r.output
    r = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(tmp_path), "--shards", str(project / "shards")])
    assert r.exit_code == 1 and "no checkpoint there" in r.output


def test_benchmark_table(project, tmp_path):
    out = tmp_path / "bench"
    r = _run(["benchmark", "--shards", str(project / "shards"), "--methods", "cca,cbvmr,yuyin-no-wfm",
              "--steps", "4", "--batch-size", "16", "--out", str(out), *SMALL])
    assert r.exit_code == 0, r.output
    with open(out / "benchmark.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["method"] for row in rows] == ["cca", "cbvmr", "yuyin-no-wfm"]
    assert all(0.0 <= float(row["v2m_R@10"]) <= 1.0 for row in rows)
    md = (out / "benchmark.md").read_text()
    assert "random (expected)" in md and md.count("\n| ") >= 4
    assert (out / "cbvmr" / "last.pt").is_file()
    r = CliRunner().invoke(main, ["benchmark", "--shards", str(project / "shards"), "--methods", "svm"])
    assert r.exit_code == 1 and "unknown method" in r.output


def test_recommend_on_a_real_video(project, tmp_path, shared_media):
    ckpt = tmp_path / "rec"
    r = _run(["train", "--shards", str(project / "shards"), "--steps", "3", "--batch-size", "16",
              "--checkpoint-dir", str(ckpt), *SMALL])
    assert r.exit_code == 0, r.output
    index_dir = tmp_path / "index"
    video = shared_media / "videos" / "big_buck_bunny_0_30.webm"
    args = ["recommend", "--video", str(video), "--library", str(project / "shards"), "-k", "5", "--checkpoint",
            str(ckpt), "--index-dir", str(index_dir), "--frame-model", "efficientnet-lite0", "--start", "2",
            "--end", "12", "--json"]
    r = _run(args)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    scores = [x["score"] for x in result["results"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert len({x["music_id"] for x in result["results"]}) == 5
    assert result["frame_model"].startswith("efficientnet-lite0")
    # the index is reused while checkpoint and shards are unchanged ...
    stamp = (index_dir / INDEX_NPZ).stat().st_mtime_ns
    assert _run(args).exit_code == 0
    assert (index_dir / INDEX_NPZ).stat().st_mtime_ns == stamp
    # ... and rebuilt when the checkpoint changes
    assert _run(["train", "--shards", str(project / "shards"), "--steps", "4", "--batch-size", "16",
                 "--checkpoint-dir", str(ckpt), "--resume", *SMALL]).exit_code == 0
    index = build_music_index(ckpt, project / "shards", index_dir, progress=False)
    assert (index_dir / INDEX_NPZ).stat().st_mtime_ns != stamp
    assert load_music_index(index_dir).fingerprint == index.fingerprint
    doc = json.loads((index_dir / INDEX_JSON).read_text())
    all_ids = {m for s in ("train", "val", "test") for m in _music_ids(project / "shards", s)}
    assert set(doc["music_ids"]) == all_ids and len(index.embeddings) == len(all_ids)


def _music_ids(shards: Path, split: str) -> list[str]:
    from yuyin.data import make_loader

    return [m for b in make_loader(shards, split, 64, shuffle=False) for m in b["music_id"]]


def test_recommend_default_span_uses_the_planner(project, tmp_path, shared_media):
    """Without --start/--end the split planner's clip windows are embedded and averaged."""
    ckpt = tmp_path / "plan"
    assert _run(["train", "--shards", str(project / "shards"), "--steps", "2", "--batch-size", "16",
                 "--checkpoint-dir", str(ckpt), *SMALL]).exit_code == 0
    video = shared_media / "videos" / "videollava_sample_demo_22.mp4"
    r = _run(["recommend", "--video", str(video), "--library", str(project / "shards"), "-k", "3",
              "--checkpoint", str(ckpt), "--index-dir", str(tmp_path / "idx"), "--frame-model", "efficientnet-lite0",
              "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    windows = result["windows"]
    assert windows and all(a < b for a, b in windows) and windows[-1][1] <= 36.5
    assert len(result["results"]) == 3
    r = CliRunner().invoke(main, ["recommend", "--video", str(video), "--library", str(project / "shards"),
                                  "--checkpoint", str(ckpt), "--index-dir", str(tmp_path / "idx")])
    assert r.exit_code == 1 and "--frame-model" in r.output  # synthetic features: model cannot be inferred
