"""DDP that cannot hang: shard sizing for --min-shards, the start refusal, the all-reduced first-batch check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from synthetic import make_labelled_corpus

from commercial98k.export.shards import build_shards, chunk_rows
from pipelines.cli import main as cli
from yuyin.ddp_guard import NoDataError, check_readers

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"hidden": 16, "embed_dim": 16, "heads": 2}


def test_chunk_rows_gives_min_shards_of_near_equal_size():
    rows = [{"i": i} for i in range(20)]
    assert [len(c) for c in chunk_rows(rows, 1000, 8)] == [2, 3, 2, 3, 2, 3, 2, 3]
    assert [len(c) for c in chunk_rows(rows, 6, 2)] == [6, 6, 6, 2]  # samples_per_shard already gives >= 2
    assert [len(c) for c in chunk_rows(rows[:3], 1000, 8)] == [1, 1, 1] and chunk_rows([], 1000, 8) == []
    assert [r["i"] for c in chunk_rows(rows, 1000, 8) for r in c] == list(range(20))


def test_check_readers_refuses_more_readers_than_shards():
    index = {"splits": {"train": {"shards": [{"path": "a"}, {"path": "b"}, {"path": "c"}]}}}
    check_readers(index, "train", 3, 0)
    with pytest.raises(NoDataError, match=r"split 'train' has 3 shard\(s\) for world size 2 x 2 loader"):
        check_readers(index, "train", 2, 2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    return make_labelled_corpus(tmp_path_factory.mktemp("ddp-guard"), n_clips=60)


def _torchrun(shards: Path, logs: Path, *args: str, timeout: float = 60) -> tuple[int, list[str]]:
    """2 CPU processes; returns torchrun's exit code and each rank's stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cfg = logs.parent / "cfg.json"
    cfg.write_text(json.dumps({"model": SMALL, "progress": False}))
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
           "--log-dir", str(logs), "--redirects", "3", "-m", "yuyin.cli", "train", "--shards", str(shards),
           "--config", str(cfg), "--checkpoint-dir", str(logs.parent / "ckpt"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    errs = sorted(logs.rglob("stderr.log"), key=lambda p: p.parent.name)
    assert len(errs) == 2, proc.stderr[-2000:]
    return proc.returncode, [p.read_text() for p in errs]


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error: ")]


def test_torchrun_rank_without_a_shard_fails_fast_on_both_ranks(corpus, tmp_path):
    manifest, data_root = corpus
    shards = tmp_path / "one"
    index = build_shards(manifest, shards, data_root, samples_per_shard=10_000, progress=False)
    assert len(index["splits"]["train"]["shards"]) == 1
    # both ranks refuse before torch loads (refuse_at_start); 30 s bounds torchrun's own start-up too
    code, errs = _torchrun(shards, tmp_path / "logs", "--steps", "3", "--batch-size", "4", timeout=30)
    assert code != 0
    lines = [_error_lines(e) for e in errs]
    assert lines[0] == lines[1] and len(lines[0]) == 1, errs
    assert "split 'train' has 1 shard(s) for world size 2" in lines[0][0]
    assert all("Traceback" not in e for e in errs)
    assert all("Traceback" not in e for e in errs)


def test_torchrun_rank_without_a_full_batch_fails_on_both_ranks(corpus, tmp_path):
    """Two shards pass the start check, but one holds fewer clips than a batch: the all-reduce catches it."""
    manifest, data_root = corpus
    probe = build_shards(manifest, tmp_path / "probe", data_root, samples_per_shard=10_000, progress=False)
    n_train = probe["splits"]["train"]["samples"]
    shards = tmp_path / "two"
    index = build_shards(manifest, shards, data_root, samples_per_shard=n_train - 3, progress=False)
    assert [s["samples"] for s in index["splits"]["train"]["shards"]] == [n_train - 3, 3]
    code, errs = _torchrun(shards, tmp_path / "logs", "--steps", "3", "--batch-size", "8", timeout=120)
    assert code != 0
    lines = [_error_lines(e) for e in errs]
    assert lines[0] == lines[1] and len(lines[0]) == 1, errs
    assert "split 'train' has 2 shard(s) for world size 2: rank(s) " in lines[0][0]
    assert "get no full batch of 8" in lines[0][0]


def test_torchrun_trains_on_shards_built_with_the_defaults(corpus, tmp_path):
    manifest, data_root = corpus
    shards = tmp_path / "shards"
    res = CliRunner().invoke(cli, ["build-shards", "--manifest", str(manifest), "--out", str(shards),
                                   "--data-root", str(data_root)])
    assert res.exit_code == 0, res.output
    index = json.loads((shards / "index.json").read_text())
    for split in index["splits"].values():
        assert len(split["shards"]) == min(8, split["samples"]) and split["samples"] > 0
    assert len(index["splits"]["train"]["shards"]) == 8
    code, errs = _torchrun(shards, tmp_path / "logs", "--steps", "4", "--batch-size", "2", "--num-workers", "2",
                           timeout=240)
    assert code == 0, errs
    assert (tmp_path / "ckpt" / "last.pt").is_file()
