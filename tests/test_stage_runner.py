"""The one runner (``engine.runner.run_stage``) on both executors: setup once per worker, the two sinks,
crashes that leave identical rows on both engines, and fetch through the same path on both."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from ray_steps import CrashingLabelStage, CrashingSplitStage, counting_stage

from commercial98k.engine.ray_executor import SYSTEM_ERRORS, RayExecutor, is_system_failure
from commercial98k.engine.runner import DriverWriter, LocalExecutor, WorkerParts, executor_for, run_stage
from commercial98k.engine.threads import cores
from commercial98k.label.batch import LabelOptions
from commercial98k.label.extractors import LabelConfig
from commercial98k.manifest.io import compact, parts_dir, read_manifest
from commercial98k.split.step import SplitConfig


def _items(n: int, crash: int | None = None) -> list[dict]:
    return [{"video_id": f"v{i:02d}", "status": "ok", "crash": i == crash} for i in range(n)]


class _Rows:
    """A driver-side writer that keeps what it is given."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, row: dict) -> None:
        self.rows.append(row)


@pytest.mark.parametrize("workers", [1, 2])
def test_local_stage_sets_up_once_per_worker_and_writes_parts(tmp_path, workers):
    manifest = tmp_path / "videos.parquet"
    seen: list[dict] = []
    result = run_stage(counting_stage(), _items(10), executor=LocalExecutor(workers),
                       sink=WorkerParts(manifest, "videos"), progress=False, on_row=seen.append)
    assert sorted(r["video_id"] for r in seen) == [f"v{i:02d}" for i in range(10)]
    assert all(set(r) == {"video_id", "status", "error"} for r in seen)  # the driver holds no rows
    assert result.items == 10 and result.counts == {"ok": 10} and result.crashed == 0
    assert len(list(parts_dir(manifest).glob("part-*.parquet"))) == 4  # one part per batch of 3
    compact(manifest, "videos")
    assert sorted(read_manifest(manifest, "videos").column("video_id").to_pylist()) == [f"v{i:02d}" for i in range(10)]


def test_local_workers_run_setup_and_batches_in_one_thread_each_with_their_share_of_cores():
    writer = _Rows()
    run_stage(counting_stage(batch_size=1), _items(8), executor=LocalExecutor(2), sink=DriverWriter(writer),
              progress=False)
    assert len(writer.rows) == 8
    assert all(r["setups"] == 1 and r["same_thread"] for r in writer.rows)  # a copy of the stage per worker
    assert {r["threads"] for r in writer.rows} == {max(1, cores() // 2)}


def test_driver_writer_runs_the_hook_before_the_writer():
    writer = _Rows()
    hook = lambda row: dict(row, status="duplicate" if row["video_id"] == "v01" else row["status"])  # noqa: E731
    result = run_stage(counting_stage(), _items(4), executor=LocalExecutor(1), sink=DriverWriter(writer, hook=hook),
                       progress=False)
    assert {r["video_id"]: r["status"] for r in writer.rows} == {"v00": "ok", "v01": "duplicate", "v02": "ok",
                                                                 "v03": "ok"}
    assert result.counts == {"ok": 3, "duplicate": 1}


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="unknown engine 'spark'"):
        executor_for("spark")


@pytest.mark.ray
def test_ray_actors_set_up_once_and_an_always_crashing_item_ends_failed(ray_driver):
    writer = _Rows()
    result = run_stage(counting_stage(batch_size=3), _items(12, crash=4), executor=RayExecutor(2),
                       sink=DriverWriter(writer), progress=False)
    rows = {r["video_id"]: r for r in writer.rows}
    assert set(rows) == {f"v{i:02d}" for i in range(12)}
    assert rows["v04"]["status"] == "failed" and is_system_failure(rows["v04"])
    assert result.crashed == 1 and result.items == 12
    ok = [r for k, r in rows.items() if k != "v04"]
    assert all(r["status"] == "ok" for r in ok)
    assert all(r["setups"] == 1 and r["threads"] == 1 for r in ok)  # once per actor; threads = its CPUs


@pytest.mark.ray
def test_killing_an_actor_mid_run_loses_nothing(ray_driver):
    seen, killed = [], None
    writer = _Rows()

    def kill_first(row: dict) -> dict:
        nonlocal killed
        seen.append(row)
        if killed is None:  # this actor already runs its next batch
            killed = row["pid"]
            os.kill(killed, signal.SIGKILL)
        return row

    result = run_stage(counting_stage(sleep=0.3, batch_size=2), _items(16), executor=RayExecutor(2),
                       sink=DriverWriter(writer, hook=kill_first), progress=False)
    assert sorted(r["video_id"] for r in seen) == [f"v{i:02d}" for i in range(16)]
    assert all(r["status"] == "ok" for r in seen) and result.crashed == 0
    assert killed not in {r["pid"] for r in seen[2:]}


@pytest.mark.ray
def test_ray_actors_write_their_own_parts(ray_driver, tmp_path):
    manifest = tmp_path / "videos.parquet"
    seen: list[dict] = []
    run_stage(counting_stage(batch_size=4), _items(12, crash=5), executor=RayExecutor(2),
              sink=WorkerParts(manifest, "videos"), progress=False, on_row=seen.append)
    assert all(set(r) == {"video_id", "status", "error"} for r in seen)
    assert len(list(parts_dir(manifest).glob("part-*.parquet"))) >= 4  # 3 batches ok + the crashed item
    compact(manifest, "videos")
    table = {r["video_id"]: r for r in read_manifest(manifest, "videos").to_pylist()}
    assert sorted(table) == [f"v{i:02d}" for i in range(12)]
    assert table["v05"]["status"] == "failed" and is_system_failure(table["v05"])


def _video(name: str, crash: str | None = None) -> dict:
    return dict(video_id=name, platform="local", platform_id=name, video_path=None, title=f"ad {name}",
                category="cosmetics", status="ok", fetch_status="ok", crash=crash)


def _clip(name: str, crash: str | None = None) -> dict:
    return dict(clip_id=f"{name}-c000", video_id=name, status="ok", fetch_status="ok", split_status="ok",
                clip_start_s=0.0, clip_end_s=8.0, audio_path=f"audio/{name}-c000.wav", crash=crash)


def _manifest_rows(stage, items: list[dict], executor, manifest: Path) -> dict[str, dict]:
    result = run_stage(stage, items, executor=executor, sink=WorkerParts(manifest, "clips"), progress=False)
    assert result.items == len(items)
    compact(manifest, "clips")
    return {r["clip_id"]: r for r in read_manifest(manifest, "clips").to_pylist()}


@pytest.mark.ray
@pytest.mark.parametrize("kind", ["split", "label"])
def test_a_crash_leaves_the_same_rows_on_both_engines(ray_driver, tmp_path, kind):
    """A bug hit in the stage's code: the same rows, every column; a worker that dies: the same row
    but for the error, which names the Ray error; per-stage status recorded either way."""
    if kind == "split":
        stage = CrashingSplitStage(SplitConfig(data_root=str(tmp_path / "data")))
        items = [_video("a"), _video("b", "raise"), _video("c", "exit")]
        key = {"a": "a-none", "b": "b-none", "c": "c-none"}
    else:
        stage = CrashingLabelStage(LabelConfig(), tmp_path / "data", LabelOptions(clips_per_batch=1))
        items = [_clip("a"), _clip("b", "raise"), _clip("c", "exit")]
        key = {"a": "a-c000", "b": "b-c000", "c": "c-c000"}
    local = _manifest_rows(stage, items[:2], LocalExecutor(1), tmp_path / "local.parquet")
    ray = _manifest_rows(stage, items, RayExecutor(2), tmp_path / "ray.parquet")
    assert local == {k: v for k, v in ray.items() if k != key["c"]}
    bug, died = ray[key["b"]], ray[key["c"]]
    assert bug[f"{kind}_status"] == "failed" and bug[f"{kind}_error"] == bug["error"] == "RuntimeError: boom on " + (
        "b" if kind == "split" else "b-c000")
    assert died["error"].startswith(SYSTEM_ERRORS) and died[f"{kind}_error"] == died["error"]
    assert is_system_failure(died) and not is_system_failure(bug)
    other = {k: v for k, v in died.items() if k not in ("clip_id", "video_id", "error", f"{kind}_error", "title",
                                                          "platform_id", "audio_path")}
    assert other == {k: v for k, v in bug.items() if k in other}  # the same columns, the same statuses
    assert died["fetch_status"] == "ok" and died["status"] == "failed"
    if kind == "label":
        assert died["split_status"] == "ok"  # split's own result is kept


@pytest.mark.ray
def test_fetch_runs_the_same_path_on_both_engines(ray_driver, tmp_path, shared_media):
    from commercial98k.sources import YtdlpOptions
    from commercial98k.testing.catalog_server import CatalogServer
    from pipelines.fetch import fetch

    names = ["big_buck_bunny_0_30.webm", "pyscenedetect_testvideo.mp4", "broken.mp4"]
    shop = tmp_path / "shop"
    shop.mkdir()
    for n in names[:2]:
        (shop / n).symlink_to(shared_media / "videos" / n)
    (shop / "broken.mp4").write_bytes(b"\0" * 150_000)
    compared = ("status", "error", "content_sha256", "video_path", "title", "fetch_status", "duration_s")
    got = {}
    with CatalogServer(shop, {"food": names}) as server:
        for engine in ("local", "ray"):
            manifest = tmp_path / engine / "videos.parquet"
            result = fetch("food", [server.category_url("food")], manifest=manifest,
                           data_root=tmp_path / engine / "data", options=YtdlpOptions(retries=1, retry_backoff_s=0.05),
                           workers=2, engine=engine, progress=False)
            assert result.counts == {"ok": 1, "no_audio": 1, "failed": 1} and not result.crashed
            rows = read_manifest(manifest, "videos").to_pylist()
            for r in rows:  # a cause may name the file, under each engine's own data root
                r["error"] = r["error"] and r["error"].replace(str(tmp_path / engine), "<root>")
            got[engine] = {r["video_id"]: {k: r.get(k) for k in compared} for r in rows}
    assert got["local"] == got["ray"] and len(got["local"]) == 3
