"""YuYin trainer on real synthetic shards: learning, exact resume, weights_only checkpoints, DDP on gloo."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from yuyin_fixtures import synthetic_shards

from yuyin.checkpoint import load_model
from yuyin.data import load_index, make_loader
from yuyin.evaluate import embed_batches, evaluate_model, retrieval_metrics
from yuyin.model import YuYin, YuYinConfig
from yuyin.train import Trainer, load_config, train

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"hidden": 32, "embed_dim": 32, "heads": 2}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return synthetic_shards(tmp_path_factory.mktemp("yuyin-train"), n_clips=240, samples_per_shard=50)


def _cfg(shards: Path, ckpt: Path, **over):
    base = dict(shards=str(shards), checkpoint_dir=str(ckpt), batch_size=16, progress=False, model=SMALL,
                warmup_steps=5, log_every=2)
    return load_config(None, **{**base, **over})


def test_training_beats_random_by_far(shards, tmp_path):
    cfg = _cfg(shards, tmp_path / "run", steps=80, batch_size=32, checkpoint_every=40, lr=2e-3, eval_every=40)
    index = load_index(shards)
    torch.manual_seed(0)
    untrained = YuYin(YuYinConfig.from_index(index, **SMALL))
    before = evaluate_model(untrained, shards, "test", progress=False)
    summary = train(cfg)
    assert summary["steps"] == 80 and Path(summary["checkpoint"]).is_file()
    model, state = load_model(tmp_path / "run")
    after = evaluate_model(model, shards, "test", categories=state["index"]["categories"], progress=False)
    rnd = after["random"]["v2m"]
    assert after["tracks"] >= 10
    assert after["v2m"]["R@1"] >= max(0.3, 4 * rnd["R@1"])
    assert after["v2m"]["R@5"] >= before["v2m"]["R@5"] + 0.2
    assert after["v2m"]["median_rank"] < rnd["median_rank"] / 2
    assert after["m2v"]["R@5"] > after["random"]["m2v"]["R@5"] + 0.2
    assert set(after["per_category"]) <= set(state["index"]["categories"])
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(2, 81, 2))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert 0 < float(rows[-1]["wfm_audio_weight"]) < 1
    with open(tmp_path / "run" / "val_metrics.csv", newline="") as f:
        val = list(csv.DictReader(f))
    assert [int(r["step"]) for r in val] == [40, 80]
    assert float(val[-1]["v2m_R@10"]) > 0.5 and float(val[-1]["v2m_MedR"]) >= 1


def test_resume_is_exact(shards, tmp_path):
    """12 steps straight == 5 steps, stop, resume to 12 (crossing an epoch boundary; dropout on)."""
    straight = Trainer(_cfg(shards, tmp_path / "a", steps=12, checkpoint_every=5))
    straight.fit()
    first = Trainer(_cfg(shards, tmp_path / "b", steps=5, checkpoint_every=5))
    first.fit()
    assert first.epoch == 0 and first.batch_in_epoch == 5
    resumed = Trainer(_cfg(shards, tmp_path / "b", steps=12, checkpoint_every=5))
    resumed.fit(resume=tmp_path / "b")
    assert resumed.epoch >= 1  # ~190 train clips / 16 -> 11 batches an epoch
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa, ob = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(oa[i]["exp_avg_sq"], ob[i]["exp_avg_sq"]) for i in oa)
    with open(tmp_path / "b" / "metrics.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == sorted(set(steps)) and steps[-1] == 12


def test_checkpoint_loads_with_weights_only(shards, tmp_path):
    train(_cfg(shards, tmp_path / "c", steps=4, checkpoint_every=2, keep_checkpoints=1))
    files = sorted(p.name for p in (tmp_path / "c").glob("*.pt"))
    assert files == ["last.pt", "step-00000004.pt"]  # older step files pruned
    state = torch.load(tmp_path / "c" / "last.pt", weights_only=True)
    assert state["step"] == 4 and isinstance(state["rng"][0]["torch"], torch.Tensor)
    model, _ = load_model(tmp_path / "c" / "last.pt")
    restored = YuYin(YuYinConfig.from_dict(state["model_config"]))
    restored.load_state_dict(state["model"])
    from yuyin.data import make_loader

    batch = next(iter(make_loader(shards, "val", 8, shuffle=False)))
    e1 = embed_batches(model, [batch], progress=False)
    e2 = embed_batches(restored, [batch], progress=False)
    assert (e1["video"] == e2["video"]).all() and (e1["music"] == e2["music"]).all()


def test_config_file_and_overrides(tmp_path):
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"steps": 7, "weights": {"category": 0.0, "video_tag": 0.3}, "model": {"hidden": 64}}))
    cfg = load_config(js, steps=9, weights={"video_tag": None, "music_tag": 0.1}, model={"layers": 2})
    assert cfg.steps == 9 and cfg.weights.category == 0.0 and cfg.weights.video_tag == 0.3
    assert cfg.weights.music_tag == 0.1 and cfg.model == {"hidden": 64, "layers": 2}
    toml = tmp_path / "c.toml"
    toml.write_text('steps = 3\nlr = 0.01\n[weights]\ncategory = 1.0\n')
    cfg = load_config(toml)
    assert (cfg.steps, cfg.lr, cfg.weights.category) == (3, 0.01, 1.0)
    with pytest.raises(ValueError, match="unknown training option"):
        load_config(None, stepz=3)
    with pytest.raises(ValueError, match="unknown loss weight"):
        load_config(None, weights={"tag": 1.0})
    with pytest.raises(ValueError, match="amp"):
        load_config(None, amp="fp8")


def test_bf16_autocast_on_cpu_trains(shards, tmp_path):
    summary = train(_cfg(shards, tmp_path / "bf16", steps=3, amp="bf16", checkpoint_every=3))
    assert summary["steps"] == 3
    import math

    assert math.isfinite(summary["last"]["loss"])


def _torchrun(shards: Path, cfg: Path, ckpt: Path, steps: int, *extra: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
           "-m", "yuyin.cli", "train", "--shards", str(shards), "--config", str(cfg), "--steps", str(steps),
           "--batch-size", "8", "--checkpoint-dir", str(ckpt), "--checkpoint-every", "3", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_ddp_two_cpu_processes_on_gloo(shards, tmp_path):
    """torchrun, 2 processes: disjoint clips per rank, identical weights, validation, exact DDP resume."""
    cfg = tmp_path / "ddp.json"
    cfg.write_text(json.dumps({"record_seen": True, "model": SMALL, "log_every": 2, "progress": False,
                               "eval_every": 7}))
    _torchrun(shards, cfg, tmp_path / "ddp", 14)  # rank 1 (11 batches an epoch) starts epoch 2
    seen = [json.loads((tmp_path / "ddp" / f"seen-rank{r}.json").read_text()) for r in (0, 1)]
    ids0, ids1 = set(seen[0]["clip_ids"]), set(seen[1]["clip_ids"])
    assert len(seen[0]["clip_ids"]) == len(seen[1]["clip_ids"]) == 14 * 8
    assert ids0 and ids1 and not ids0 & ids1
    assert seen[0]["param_checksum"] == seen[1]["param_checksum"]
    state = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert state["world"] == 2 and len(state["rng"]) == 2 and state["step"] == 14
    # the logs are written once (rank 0), not twice; validation covers the whole split (both ranks' shards)
    with open(tmp_path / "ddp" / "metrics.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(2, 15, 2))
    with open(tmp_path / "ddp" / "val_metrics.csv", newline="") as f:
        val = list(csv.DictReader(f))
    val_tracks = {m for b in make_loader(shards, "val", 64, shuffle=False) for m in b["music_id"]}
    assert [int(r["step"]) for r in val] == [7, 14] and int(val[0]["tracks"]) == len(val_tracks)
    # 12 steps, then resume to 14 == 14 straight; at step 12 the ranks are at different data positions
    _torchrun(shards, cfg, tmp_path / "ddp2", 12)
    positions = torch.load(tmp_path / "ddp2" / "last.pt", weights_only=True)["positions"]
    assert positions[0] != positions[1]
    _torchrun(shards, cfg, tmp_path / "ddp2", 14, "--resume")
    resumed = torch.load(tmp_path / "ddp2" / "last.pt", weights_only=True)
    assert all(torch.equal(state["model"][k], resumed["model"][k]) for k in state["model"])


def test_retrieval_metrics_of_a_trained_model_are_consistent(shards, tmp_path):
    """embed_batches + retrieval_metrics equal evaluate_model on the same split."""
    torch.manual_seed(1)
    model = YuYin(YuYinConfig.from_index(load_index(shards), **SMALL))
    from yuyin.data import make_loader

    emb = embed_batches(model, make_loader(shards, "val", 16, shuffle=False), progress=False)
    direct = retrieval_metrics(emb["video"], emb["music"], emb["music_id"])
    via = evaluate_model(model, shards, "val", batch_size=7, progress=False)
    assert direct["v2m"] == via["v2m"] and direct["m2v"] == via["m2v"]
