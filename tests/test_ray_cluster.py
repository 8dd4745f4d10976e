"""Stages on a real local Ray cluster (``ray start --head`` in another folder, loopback, stopped at the end).

Relative data roots, RAY_ADDRESS, the shared-storage probe, fetch/split/label through the CLI on both
engines, a GPU stage on a cluster without GPUs. (Crashing and killed workers: ``test_stage_runner``.)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from ray_cluster import ray_env

from commercial98k.engine.ray_executor import is_system_failure
from commercial98k.manifest.io import read_manifest, write_manifest
from pipelines.commands.split import command as split_command

pytestmark = pytest.mark.ray
FF = ["ffmpeg", "-v", "error", "-y"]


@pytest.fixture
def cluster(session_ray_cluster):
    """The session's cluster (``conftest.session_ray_cluster``)."""
    return session_ray_cluster


def _ff(*args) -> None:
    subprocess.run([*FF, *map(str, args)], check=True, capture_output=True)


def _video_row(name: str) -> dict:
    return dict(video_id=name, platform="local", platform_id=name, video_path=f"videos/{name}.mp4",
                title=f"ad {name}", category="cosmetics", status="ok")


@pytest.fixture(scope="module")
def project(shared_media, tmp_path_factory) -> Path:
    """A project folder: data/videos (two cuts of one track, one without audio, one corrupt) + videos manifest."""
    base = tmp_path_factory.mktemp("rayproj")
    videos = base / "data" / "videos"
    videos.mkdir(parents=True)
    track = shared_media / "emotify" / "audio" / "pop_2.mp3"
    for name, visual, start, secs in (("a", "testsrc", 5, 12), ("b", "mandelbrot", 8, 10)):
        _ff("-f", "lavfi", "-i", f"{visual}=size=320x240:rate=25", "-ss", start, "-i", track, "-t", secs,
            "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest",
            videos / f"{name}.mp4")
    _ff("-t", 6, "-i", shared_media / "videos" / "pyscenedetect_testvideo.mp4", "-c", "copy", videos / "noaudio.mp4")
    good = (videos / "a.mp4").read_bytes()
    (videos / "corrupt.mp4").write_bytes(good[: len(good) // 40])
    (base / "manifests").mkdir()
    write_manifest([_video_row(n) for n in ("a", "b", "noaudio", "corrupt")], base / "manifests" / "videos.parquet",
                   "videos")
    return base


COMPARED = ("clip_id", "video_id", "status", "clip_start_s", "clip_end_s", "clip_path", "audio_path",
            "fingerprint", "video_phash", "music_id", "dup_group", "has_music")


def _rows(manifest: Path) -> dict[str, dict]:
    return {r["clip_id"]: {k: r.get(k) for k in COMPARED} for r in read_manifest(manifest, "clips").to_pylist()}


def test_split_on_the_cluster_with_a_relative_data_root_matches_local(project, cluster, tmp_path):
    """`--data-root data` (relative) from the project folder, the cluster found through RAY_ADDRESS."""
    local = tmp_path / "local"
    shutil.copytree(project, local)
    res = CliRunner().invoke(split_command, ["--videos-manifest", str(local / "manifests/videos.parquet"),
                                             "--manifest", str(local / "manifests/c98k.parquet"),
                                             "--data-root", str(local / "data"), "--clip-seconds", "8",
                                             "--clip-files", "encode"])
    assert res.exit_code == 0, res.output
    remote = tmp_path / "remote"
    shutil.copytree(project, remote)
    run = subprocess.run([sys.executable, "-m", "pipelines.cli", "split", "--engine", "ray", "--clip-seconds", "8",
                          "--clip-files", "encode"],
                         cwd=remote, env=ray_env(RAY_ADDRESS=cluster.address), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got, want = _rows(remote / "manifests/c98k.parquet"), _rows(local / "manifests/c98k.parquet")
    assert got == want
    assert got["a-c000"]["status"] == "ok" and (remote / "data" / got["a-c000"]["clip_path"]).is_file()
    assert got["corrupt-none"]["status"] == "failed" and not is_system_failure(got["corrupt-none"])


def test_a_data_root_the_workers_cannot_see_gives_one_error_line(project, cluster, tmp_path):
    """The driver mounts a private tmpfs over its data root (a mount namespace): the workers see an empty folder."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare -m (a private mount namespace) to hide the data root from the workers")
    work = tmp_path / "hidden"
    (work / "data").mkdir(parents=True)
    shutil.copytree(project / "manifests", work / "manifests")
    script = (f"mount -t tmpfs none {work / 'data'} && cp -r {project / 'data' / 'videos'} {work / 'data'}/ && "
              f"exec {sys.executable} -m pipelines.cli split --engine ray --address {cluster.address} "
              "--data-root data")
    run = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], cwd=work,
                         env=ray_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stderr[-3000:]
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert lines[0].startswith(f"error: the data root {work / 'data'} is not visible from worker node 127.0.0.1")
    assert lines[0].endswith("put it on a filesystem every node mounts at the same path")
    assert not (work / "manifests" / "c98k.parquet").exists()


def _stages(folder: Path, source: Path, env: dict[str, str], *engine: str) -> None:
    """fetch (a local folder) -> split -> label, each through the CLI from ``folder`` with relative paths."""
    folder.mkdir()
    for args in (["fetch", "-c", "cosmetics", "-s", str(source)], ["split", "--clip-seconds", "8"],
                 ["label", "--emotion-model", "none"]):
        run = subprocess.run([sys.executable, "-m", "pipelines.cli", *args, *engine], cwd=folder, env=env,
                             capture_output=True, text=True, timeout=1200)
        assert run.returncode == 0, (args, run.stderr[-3000:])


@pytest.mark.slow
def test_fetch_split_label_on_the_cluster_match_the_local_engine(project, cluster, tmp_path):
    import numpy as np

    source = project / "data" / "videos"
    _stages(tmp_path / "local", source, ray_env())
    _stages(tmp_path / "remote", source, ray_env(RAY_ADDRESS=cluster.address), "--engine", "ray")
    videos = [{r["video_id"]: (r["status"], r["content_sha256"], r["video_path"])
               for r in read_manifest(tmp_path / side / "manifests/videos.parquet", "videos").to_pylist()}
              for side in ("local", "remote")]
    assert videos[0] == videos[1] and len(videos[0]) == 4
    label_cols = ("tags", "predicted_category", "audio_embedding", "frame_embedding", "tag_embedding", "audio_model")
    clips = [{r["clip_id"]: {k: r.get(k) for k in COMPARED + label_cols}
              for r in read_manifest(tmp_path / side / "manifests/c98k.parquet", "clips").to_pylist()}
             for side in ("local", "remote")]
    assert clips[0] == clips[1]
    ok = [c for c, r in clips[0].items() if r["status"] == "ok"]
    assert ok and all(clips[0][c]["audio_embedding"] for c in ok)
    for c in ok:
        for col in ("audio_embedding", "frame_embedding"):
            a, b = (np.load(tmp_path / side / "data" / clips[0][c][col]) for side in ("local", "remote"))
            np.testing.assert_allclose(a, b, atol=2e-2)


def test_a_gpu_stage_on_a_cluster_without_gpus_is_one_error_line(project, cluster, tmp_path):
    """--device cuda is not checked on the driver when Ray assigns the GPUs; the cluster is."""
    work = tmp_path / "gpu"
    shutil.copytree(project, work)
    write_manifest([dict(_video_row("a"), clip_id="a-c000", clip_path="clips/a-c000.mp4")],
                   work / "manifests" / "c98k.parquet", "clips")
    run = subprocess.run([sys.executable, "-m", "pipelines.cli", "label", "--engine", "ray", "--device", "cuda",
                          "--gpus-per-worker", "0.5"], cwd=work, env=ray_env(RAY_ADDRESS=cluster.address),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stderr[-3000:]
    assert "error: --gpus-per-worker 0.5: the Ray cluster has 0 GPU(s)" in run.stderr
    assert "Traceback" not in run.stderr
