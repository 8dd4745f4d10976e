"""The Stage abstraction run locally and as Ray actors: setup once per worker, worker-written parts, faults."""

from __future__ import annotations

import os
import signal

import pytest
from ray_cluster import LocalCluster, connect_driver, disconnect_driver
from ray_steps import counting_stage

from commercial98k.engine.ray_executor import is_system_failure
from commercial98k.engine.runner import run_stage
from commercial98k.manifest.io import compact, parts_dir, read_manifest


def _items(n: int, crash: int | None = None) -> list[dict]:
    return [{"video_id": f"v{i:02d}", "status": "ok", "crash": i == crash} for i in range(n)]


@pytest.mark.parametrize("workers", [1, 2])
def test_local_stage_sets_up_once_per_worker_and_writes_parts(tmp_path, workers):
    manifest = tmp_path / "videos.parquet"
    out = list(run_stage(counting_stage(), _items(10), workers=workers, manifest=manifest, progress=False))
    assert sorted(r["video_id"] for r in out) == [f"v{i:02d}" for i in range(10)]
    assert all(set(r) == {"video_id", "status", "error"} for r in out)  # the driver holds no rows
    assert len(list(parts_dir(manifest).glob("part-*.parquet"))) == 4  # one part per batch of 3
    compact(manifest, "videos")
    assert sorted(read_manifest(manifest, "videos").column("video_id").to_pylist()) == [f"v{i:02d}" for i in range(10)]


@pytest.fixture(scope="module")
def driver():
    cluster = LocalCluster(num_cpus=2)
    try:
        old = connect_driver(cluster.address)
        try:
            yield cluster
        finally:
            disconnect_driver(old)
    finally:
        cluster.stop()


@pytest.mark.ray
def test_ray_actors_set_up_once_and_an_always_crashing_item_ends_failed(driver, tmp_path):
    stage = counting_stage(batch_size=3)
    rows = {r["video_id"]: r for r in run_stage(stage, _items(12, crash=4), engine="ray", workers=2,
                                                progress=False)}
    assert set(rows) == {f"v{i:02d}" for i in range(12)}
    assert rows["v04"]["status"] == "failed" and is_system_failure(rows["v04"])
    ok = [r for k, r in rows.items() if k != "v04"]
    assert all(r["status"] == "ok" for r in ok)
    assert all(r["setups"] == 1 for r in ok)  # models load once per actor, not per batch or task


@pytest.mark.ray
def test_killing_an_actor_mid_run_loses_nothing(driver):
    stage = counting_stage(sleep=0.3, batch_size=2)
    seen, killed = [], None
    for r in run_stage(stage, _items(16), engine="ray", workers=2, progress=False):
        seen.append(r)
        if killed is None:  # this actor already runs its next batch
            killed = r["pid"]
            os.kill(killed, signal.SIGKILL)
    assert sorted(r["video_id"] for r in seen) == [f"v{i:02d}" for i in range(16)]
    assert all(r["status"] == "ok" for r in seen)
    assert killed not in {r["pid"] for r in seen[2:]}


@pytest.mark.ray
def test_ray_actors_write_their_own_parts(driver, tmp_path):
    manifest = tmp_path / "videos.parquet"
    out = list(run_stage(counting_stage(batch_size=4), _items(12, crash=5), engine="ray", workers=2,
                         manifest=manifest, progress=False))
    assert all(set(r) == {"video_id", "status", "error"} for r in out)
    assert len(list(parts_dir(manifest).glob("part-*.parquet"))) >= 4  # 3 batches ok + the crashed item
    compact(manifest, "videos")
    table = {r["video_id"]: r for r in read_manifest(manifest, "videos").to_pylist()}
    assert sorted(table) == [f"v{i:02d}" for i in range(12)]
    assert table["v05"]["status"] == "failed" and is_system_failure(table["v05"])
