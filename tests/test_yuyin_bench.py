"""``yuyin benchmark --seeds``: every method over seeds, intervals, significance, leave-one-category-out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from yuyin_fixtures import synthetic_shards

from yuyin.cli import main

SMALL = ["--model-opt", "hidden=32", "--model-opt", "embed_dim=16", "--model-opt", "heads=2"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return synthetic_shards(tmp_path_factory.mktemp("bench"), n_clips=160, samples_per_shard=40, seed=5)


def _bench(shards: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, ["benchmark", "--shards", str(shards), "--seeds", "0,1", "--steps", "3",
                                     "--batch-size", "8", "--bootstrap", "200", "--out", str(out), *SMALL, *extra],
                              catch_exceptions=False)


def test_seeded_benchmark_table_and_loco(shards, tmp_path):
    out = tmp_path / "b"
    r = _bench(shards, out, "--methods", "cca,contrastive,yuyin,yuyin-no-category",
               "--loco-methods", "contrastive,yuyin", "--loco-seeds", "1")
    assert r.exit_code == 0, r.output
    md = (out / "stats.md").read_text()
    assert "Held-out tracks" in md and "Leave one category out" in md and "random (expected)" in md
    assert "YuYin vs the best baseline" in md and " ± " in md
    doc = json.loads((out / "stats.json").read_text())
    main_ = doc["settings"]["main"]
    assert main_["best_baseline"] in ("cca", "contrastive")
    assert set(main_["summary"]) == {"cca", "contrastive", "yuyin", "yuyin-no-category"}
    r1 = main_["summary"]["yuyin"]["R@1"]
    assert len(r1["per_seed"]) == 2 and r1["low"] <= r1["mean"] <= r1["high"]
    vs = main_["diffs"]["yuyin"]["vs_best"]["R@10"]
    assert vs["low"] <= vs["diff"] <= vs["high"] and isinstance(vs["significant"], bool)
    assert "vs_yuyin" in main_["diffs"]["yuyin-no-category"]
    # YuYin against each baseline: the best one's numbers are the same test, the other is named too
    per = main_["diffs"]["yuyin"]["vs_baselines"]
    assert set(per) == {"cca", "contrastive"} and per[main_["best_baseline"]]["R@10"] == vs
    other = ({"cca", "contrastive"} - {main_["best_baseline"]}).pop()
    assert f"YuYin vs {'CCA' if other == 'cca' else 'contrastive (video-music InfoNCE)'}: R@10" in md
    loco = doc["settings"]["loco"]
    assert len(loco["held_out"]) >= 2 and loco["clips"] == main_["clips"]  # every test clip, once
    runs = sorted((out / "runs" / "loco" / "yuyin").glob("*.json"))
    assert len(runs) == len(loco["held_out"]) and all("seed1-" in p.name for p in runs)  # --loco-seeds 1
    assert doc["loco_seeds"] == [1] and len(loco["summary"]["yuyin"]["R@1"]["per_seed"]) == 1
    full = json.loads((out / "runs" / "main" / "yuyin" / "seed0.json").read_text())["train_clips"]
    assert all(json.loads(p.read_text())["train_clips"] < full for p in runs)  # the category was left out

    stamp = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")}
    r = _bench(shards, out, "--methods", "cca,contrastive,yuyin,yuyin-no-category",
               "--loco-methods", "contrastive,yuyin", "--loco-seeds", "1")
    assert r.exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")} == stamp  # finished runs reused


def test_bad_seed_and_method_are_one_line_errors(shards, tmp_path):
    r = _bench(shards, tmp_path / "x", "--seeds", "a,b")
    assert r.exit_code == 2 and "--seeds" in r.output
    r = _bench(shards, tmp_path / "y", "--methods", "svm", "--loco-methods", "none")
    assert r.exit_code == 1 and "unknown method" in r.output and "Traceback" not in r.output


def test_evaluate_reports_bootstrap_intervals(shards, tmp_path):
    ckpt = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--shards", str(shards), "--steps", "2", "--batch-size", "8",
                                  "--checkpoint-dir", str(ckpt), *SMALL], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(ckpt), "--shards", str(shards),
                                  "--bootstrap", "200", "--out", str(tmp_path / "ev")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "95 % bootstrap interval over test tracks" in r.output
    doc = json.loads((tmp_path / "ev.json").read_text())
    iv = doc["v2m_intervals"]["R@10"]
    assert iv["low"] <= iv["value"] == doc["v2m"]["R@10"] <= iv["high"]
    assert len(doc["queries"]["v2m_rank"]) == doc["clips"]
