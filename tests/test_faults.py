"""Faults of the machine are not faults of an item: fetch, split, label and build-shards x five faults.

Each cell runs a stage through ``c98k`` (in this process) with one fault, then checks the exit code,
the one ``error:`` line, that no item was recorded as failed, and that a plain re-run without the
fault ends with the manifest (or shard index) of a run that never saw it. Faults are injected so
that they hit in CI as root (chmod stops nothing): ``OSError(errno)`` from the file-system calls
under a folder, a PATH without ffmpeg, another process holding the manifest's lock.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import ffmpeg
import pytest
from click.testing import CliRunner

from commercial98k import faults
from commercial98k.manifest.io import manifest_exists, read_manifest
from commercial98k.manifest.lock import ManifestLocked, holder, lock_path, manifest_lock
from commercial98k.media.ffmpeg_io import MediaError, ffmpeg_bin, ffmpeg_error_line, run_ffmpeg
from pipelines.cli import main

STAGES = ("fetch", "split", "label", "build-shards")
FAULTS = ("enospc", "eacces", "erofs", "no-ffmpeg", "second-writer")
#: the stage's output: (file under the project, manifest kind, the stage's status column)
OUTPUT = {"fetch": ("manifests/videos.parquet", "videos", "fetch_status"),
          "split": ("manifests/c98k.parquet", "clips", "split_status"),
          "label": ("manifests/c98k.parquet", "clips", "label_status"),
          "build-shards": ("shards/index.json", None, None)}
#: columns that differ between two clean runs (when the row was written)
VOLATILE = {"crawled_at"}
TRACKS = ("pop_2", "rock_2", "electronic_3")


def _ff(*args) -> None:
    subprocess.run([ffmpeg_bin(), "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)


def _args(stage: str, proj: Path) -> list[str]:
    m, data = proj / "manifests", str(proj / "data")
    if stage == "fetch":
        return ["fetch", "-c", "cosmetics", "-s", str(proj / "src"), "--manifest", str(m / "videos.parquet"),
                "--data-root", data]
    if stage == "split":
        return ["split", "--videos-manifest", str(m / "videos.parquet"), "--manifest", str(m / "c98k.parquet"),
                "--data-root", data, "--clip-files", "encode", "--clip-seconds", "8", "--min-clip-seconds", "3"]
    if stage == "label":
        return ["label", "--manifest", str(m / "c98k.parquet"), "--data-root", data, "--no-ocr",
                "--emotion-model", "none", "--visual-evidence", "none"]
    return ["build-shards", "--manifest", str(m / "c98k.parquet"), "--data-root", data, "--out",
            str(proj / "shards"), "--min-shards", "2"]


def _run(stage: str, proj: Path):
    return CliRunner().invoke(main, _args(stage, proj))


def _state(stage: str, proj: Path):
    """What a stage leaves: its manifest's rows (volatile columns dropped, floats rounded) or its shard index."""
    rel, kind, _ = OUTPUT[stage]
    if kind is None:
        index = json.loads((proj / rel).read_text(encoding="utf-8"))
        for when in ("rebuilt_shards", "built_at"):  # which shards this run wrote, and when
            index.pop(when, None)
        return _plain(index, str(proj))
    key = "video_id" if kind == "videos" else "clip_id"
    rows = sorted(read_manifest(proj / rel, kind).to_pylist(), key=lambda r: r[key])
    return [{k: _plain(v, str(proj)) for k, v in r.items() if k not in VOLATILE} for r in rows]


def _plain(v, proj: str):
    """``v`` with floats rounded and the project's folder (a source folder's path) named ``<proj>``."""
    if isinstance(v, dict):
        return {k: _plain(x, proj) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x, proj) for x in v]
    return round(v, 4) if isinstance(v, float) else v.replace(proj, "<proj>") if isinstance(v, str) else v


@pytest.fixture(scope="module")
def golden(shared_media, tmp_path_factory) -> dict[str, Path]:
    """The project before and after each stage, from runs that saw no fault: ``{stage: (in, out)}``."""
    base = tmp_path_factory.mktemp("faults")
    proj = base / "run"
    (proj / "src").mkdir(parents=True)
    for n, track in enumerate(TRACKS, 1):  # three 7 s music ads: a picture and a real track
        _ff("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-ss", 5, "-i",
            shared_media / "emotify" / "audio" / f"{track}.mp3", "-t", 7, "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", proj / "src" / f"ad{n}.mp4")
    out = {}
    for stage in STAGES:  # each stage runs in its own copy, so paths in rows name the folder they are in
        before, after = base / f"{stage}-in", base / f"{stage}-out"
        shutil.copytree(proj, before, symlinks=True)
        shutil.copytree(proj, after, symlinks=True)
        result = _run(stage, after)
        assert result.exit_code == 0, result.output
        out[stage], proj = (before, after), after
    return out


@contextlib.contextmanager
def failing_fs(code: int, under: Path, *, reads: bool = False, match: str = "", spare: tuple[str, ...] = (".lock",)):
    """``OSError(code)`` from every file-system call that writes (``reads``: or reads) a path under
    ``under`` containing ``match``; the manifest's lock file is spared (the fault comes mid-run)."""
    root = str(under.resolve())

    def hit(path, writing: bool) -> None:
        p = os.path.abspath(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else ""
        if (p == root or p.startswith(root + os.sep)) and match in p and (writing or reads) and not p.endswith(spare):
            raise OSError(code, os.strerror(code), p)

    def patch(mp, obj, name: str, arg: int, writes) -> None:
        real = getattr(obj, name)

        def fake(*a, **k):
            hit(a[arg], writes(a, k))
            return real(*a, **k)
        mp.setattr(obj, name, fake)

    with pytest.MonkeyPatch.context() as mp:
        for obj in (builtins, io):
            patch(mp, obj, "open", 0, lambda a, k: any(c in (a[1] if len(a) > 1 else k.get("mode", "r")) for c in "wax+"))
        patch(mp, os, "open", 0, lambda a, k: bool(a[1] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
        patch(mp, os, "mkdir", 0, lambda a, k: not os.path.isdir(a[0]))  # an existing folder answers EEXIST
        for name in ("replace", "rename", "link"):
            patch(mp, os, name, 1, lambda a, k: True)
        yield


@contextlib.contextmanager
def without_ffmpeg(tmp: Path):
    """A PATH holding every tool of this one but ffmpeg/ffprobe, and no imageio-ffmpeg binary."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        with contextlib.suppress(OSError):
            for exe in os.scandir(folder):
                if exe.name not in ("ffmpeg", "ffprobe") and not (bin_dir / exe.name).exists():
                    (bin_dir / exe.name).symlink_to(exe.path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", str(bin_dir))
        mp.setenv("IMAGEIO_FFMPEG_EXE", str(tmp / "no-such-ffmpeg"))
        ffmpeg_bin.cache_clear()
        try:
            yield
        finally:
            ffmpeg_bin.cache_clear()


HOLD = ("import sys, time\nfrom commercial98k.manifest.lock import manifest_lock\nwith manifest_lock(sys.argv[1]):\n"
        "    print('held', flush=True)\n    time.sleep(float(sys.argv[2]))\n")


@contextlib.contextmanager
def second_writer(target: Path, seconds: float = 120.0):
    """Another process holding ``target``'s lock; killed (-9) at the end, its lock file left behind."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def _fault(stage: str, fault: str, proj: Path) -> tuple[Path, int, bool, str]:
    """(folder, errno, reads too, paths containing) of a cell's file-system fault: a disk that fills
    up at the second ad (the first one's rows are kept) or shard; the data root chmod 000; the
    manifest (shards) folder turning read-only mid-run (build-shards: at index.json)."""
    shards = stage == "build-shards"
    if fault == "enospc":
        return proj / ("shards" if shards else "data"), errno.ENOSPC, False, "-000001.tar" if shards else "ad2"
    if fault == "eacces":
        return proj / "data", errno.EACCES, True, ""
    return proj / ("shards" if shards else "manifests"), errno.EROFS, False, "index.json" if shards else ""


EXPECTED = {"enospc": "no space left on device", "eacces": "permission denied", "erofs": "read-only file system",
            "no-ffmpeg": "ffmpeg not found", "second-writer": "is being written by pid"}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("stage", STAGES)
def test_fault_stops_the_stage_and_a_rerun_finishes_it(stage, fault, golden, tmp_path):
    before, after = golden[stage]
    proj = tmp_path / "proj"
    shutil.copytree(before, proj, symlinks=True)
    if fault == "no-ffmpeg" and stage != "split":  # only split's clip files need the ffmpeg binary
        with without_ffmpeg(tmp_path):
            result = _run(stage, proj)
        assert result.exit_code == 0, result.output
        _same(_state(stage, proj), _state(stage, after))
        return
    files = _files(proj)
    with contextlib.ExitStack() as stack:
        if fault == "second-writer":
            pid = stack.enter_context(second_writer(proj / OUTPUT[stage][0])).pid
        elif fault == "no-ffmpeg":
            stack.enter_context(without_ffmpeg(tmp_path))
        else:
            folder, code, reads, match = _fault(stage, fault, proj)
            stack.enter_context(failing_fs(code, folder, reads=reads, match=match))
        result = _run(stage, proj)
        if fault == "second-writer":  # the holder is still alive here: the line names it
            assert f"pid {pid} on " in result.stderr, result.output
            # stopped before touching anything: files, manifest parts, the identity index
            assert _files(proj) - {lock_path(proj / OUTPUT[stage][0])} == files
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 1, result.output
    assert len(errors) == 1 and EXPECTED[fault] in errors[0], result.output
    assert "Traceback" not in result.output
    if fault in ("enospc", "eacces", "erofs"):
        assert str(_fault(stage, fault, proj)[0]) in errors[0] and "then run the same command again" in errors[0], errors[0]
    assert not _failed(stage, proj)  # nothing recorded as failed for the fault
    rerun = _run(stage, proj)  # the fault removed (a killed holder's lock is stale: taken over)
    assert rerun.exit_code == 0, rerun.output
    _same(_state(stage, proj), _state(stage, after))


def _failed(stage: str, proj: Path) -> list[dict]:
    rel, kind, status = OUTPUT[stage]
    rows = read_manifest(proj / rel, kind).to_pylist() if kind and manifest_exists(proj / rel) else []
    return [r for r in rows if "failed" in (r.get(status), r.get("status"))]


def _files(proj: Path) -> set[Path]:
    return {p for p in proj.rglob("*") if p.is_file()}


def _same(got, want) -> None:
    """``got == want``, naming the first differing row and columns when not."""
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        for g, w in zip(got, want, strict=True):
            assert g == w, {k: (g.get(k), w.get(k)) for k in w if g.get(k) != w.get(k)}
    assert got == want


def test_wait_starts_when_the_other_writer_ends_and_readers_never_wait(golden, tmp_path):
    before, after = golden["build-shards"]
    proj = tmp_path / "proj"
    shutil.copytree(before, proj, symlinks=True)
    with second_writer(proj / OUTPUT["build-shards"][0], seconds=2.0):
        result = CliRunner().invoke(main, [*_args("build-shards", proj), "--wait"])
    assert result.exit_code == 0 and "waiting for pid" in result.stderr, result.output
    _same(_state("build-shards", proj), _state("build-shards", after))
    manifest = proj / "manifests" / "c98k.parquet"
    with second_writer(manifest):  # stats reads a manifest being written
        result = CliRunner().invoke(main, ["stats", "--manifest", str(manifest), "--no-report"])
        assert result.exit_code == 0, result.output
        assert holder(lock_path(manifest))["command"].startswith("-c")  # still the writer's


@pytest.mark.ray
def test_on_ray_a_workers_fault_stops_the_stage_in_the_driver(golden, tmp_path, ray_address):
    """split's actors without ffmpeg: the fault crosses Ray (``RayTaskError(EnvironmentFault)``)."""
    from ray_cluster import ray_env

    proj = tmp_path / "proj"
    shutil.copytree(golden["split"][0], proj, symlinks=True)
    with without_ffmpeg(tmp_path):
        # The session's cluster has ffmpeg: this run's job gives its workers the driver's PATH
        # (the variable `ray job submit` passes a job's runtime environment in).
        hidden = {k: os.environ[k] for k in ("PATH", "IMAGEIO_FFMPEG_EXE")}
        job = json.dumps({"runtime_env": {"env_vars": hidden}})
        run = subprocess.run([sys.executable, "-m", "pipelines.cli", *_args("split", proj), "--engine", "ray",
                              "--workers", "1"], cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                             text=True, timeout=600,
                             env=ray_env(RAY_ADDRESS=ray_address, RAY_JOB_CONFIG_JSON_ENV_VAR=job))
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("error:")]
    assert run.returncode == 1 and errors == [f"error: ffmpeg not found; {faults.TOOL_HINT['ffmpeg']}, "
                                              f"{faults.AGAIN}"], run.stderr
    assert not _failed("split", proj)
    assert _run("split", proj).exit_code == 0
    _same(_state("split", proj), _state("split", golden["split"][1]))


def test_the_lock_is_reentrant_and_a_killed_holders_is_taken_over(tmp_path):
    manifest = tmp_path / "m" / "videos.parquet"
    with manifest_lock(manifest), manifest_lock(manifest):  # a stage calling a stage (the demo)
        assert holder(lock_path(manifest))["pid"] == os.getpid()
    assert not lock_path(manifest).exists()  # removed when released: nobody is named after a finished run
    with second_writer(manifest) as proc, pytest.raises(ManifestLocked, match=f"pid {proc.pid} on "), \
            manifest_lock(manifest):
        pass
    assert holder(lock_path(manifest))["pid"] == proc.pid  # killed -9: its lock file is left behind
    with manifest_lock(manifest):
        assert holder(lock_path(manifest))["pid"] == os.getpid()


def test_a_stage_refuses_to_start_on_a_disk_that_cannot_hold_its_output(golden, tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    shutil.copytree(golden["split"][0], proj, symlinks=True)
    monkeypatch.setattr(faults, "free_bytes", lambda path: 700_000)
    result = _run("split", proj)
    assert result.exit_code == 1, result.output
    need = faults.split_bytes(read_manifest(proj / "manifests" / "videos.parquet", "videos").to_pylist(), "encode")
    assert need > 700_000
    assert (f"error: not enough free space for split (3 videos) in {proj / 'data'}: about {faults.size_text(need)} "
            "needed, 700.0 kB free on " in result.stderr), result.output
    assert "--data-root" in result.stderr
    assert not manifest_exists(proj / "manifests" / "c98k.parquet")  # nothing was started
    assert not (proj / "data" / "audio").exists()


def test_an_ffmpeg_item_failure_names_the_error_line_not_the_encoders_statistics(tmp_path):
    from commercial98k.split.cut import cut_clip

    stderr = ("Input #0, mov,mp4, from 'in.mp4':\n  Duration: 00:00:07.00\n"
              "[aac @ 0x55d5] Too many bits 8832.000000 > 6144 per frame\n"
              "[out#0/mp4 @ 0x55d4] video:12kB audio:3kB subtitle:0kB other streams:0kB muxing overhead: 4.1%\n"
              "[libx264 @ 0x55d6] frame I:1     Avg QP:20.00  size:  1200\n[aac @ 0x55d7] Qavg: 191.102\n")
    assert ffmpeg_error_line(stderr) == "[aac @ 0x55d5] Too many bits 8832.000000 > 6144 per frame"
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    with pytest.raises(MediaError) as e:
        cut_clip(bad, tmp_path / "out.mp4", 0.0, 2.0)
    assert "cutting 0.000-2.000 s failed (" in str(e.value) and "Qavg" not in str(e.value)
    assert faults.classify(e.value) is None  # a broken file is the item's fault


def test_ffmpeg_on_a_full_disk_or_crashing_is_a_machine_fault(tmp_path, monkeypatch):
    full = Path("/dev/full")  # every write: ENOSPC, as on a full disk
    with pytest.raises(OSError) as e:
        run_ffmpeg(ffmpeg.input("testsrc=size=64x48:rate=10:duration=1", f="lavfi")
                   .output(str(full), vcodec="mpeg4", format="mp4").overwrite_output(), "cutting", full)
    assert e.value.errno == errno.ENOSPC
    assert str(faults.classify(e.value)).startswith("no space left on device: /dev/full; free space there")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "ffmpeg").write_text("#!/bin/sh\nkill -SEGV $$\n")
    (tmp_path / "bin" / "ffmpeg").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    ffmpeg_bin.cache_clear()
    try:
        with pytest.raises(faults.EnvironmentFault, match=r"^ffmpeg crashed \(SIGSEGV\): .*out\.mp4; check `c98k doctor`"):
            run_ffmpeg(ffmpeg.input("in.mp4").output(str(tmp_path / "out.mp4")), "cutting", tmp_path / "out.mp4")
    finally:
        ffmpeg_bin.cache_clear()


def test_classify_tells_the_machines_faults_from_the_items(tmp_path):
    root = tmp_path / "data"
    places = {"data root": (root, "--data-root")}
    inside, outside = str(root / "videos" / "a.mp4"), str(tmp_path / "src" / "a.mp4")
    assert faults.classify(OSError(errno.EACCES, "Permission denied", outside), places) is None  # one file
    assert "--data-root" in str(faults.classify(OSError(errno.EACCES, "Permission denied", inside), places))
    assert faults.classify(OSError(errno.ENOENT, "No such file", inside), places) is None
    assert str(faults.classify(MemoryError())).startswith("out of memory (MemoryError); use fewer --workers")
    wrapped = RuntimeError("ERROR: unable to write data: [Errno 28] No space left on device: '/x/videos/a.mp4'")
    assert str(faults.classify(wrapped)).startswith("no space left on device: /x/videos/a.mp4;")
    assert str(faults.classify(MediaError("fpcalc not found: install it"))).startswith("fpcalc not found; apt-get")
    try:
        raise MediaError("x.mp4: cannot read it") from OSError(errno.EROFS, "Read-only file system", inside)
    except MediaError as e:
        assert str(faults.classify(e, places)).startswith(f"read-only file system: {inside}; remount")
    fault = faults.classify(OSError(errno.ENOSPC, "No space left on device", inside), places)
    assert str(pickle.loads(pickle.dumps(fault))) == str(fault)  # crosses process pools and Ray


def test_doctor_shows_free_space_and_a_manifest_folder_it_cannot_write(tmp_path):
    from commercial98k.doctor import run_checks

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    with failing_fs(errno.EROFS, manifests):
        checks = {c.name: c for c in run_checks(data_root=str(tmp_path / "data"), manifest_dir=str(manifests),
                                                min_free_gb=0.0)}
    data, folder = checks["data root"], checks["manifest folder"]
    assert data.ok and " free on /" in data.detail
    assert not folder.ok and folder.detail.startswith(f"{manifests}: ") and "cannot write there" in folder.detail


def test_ray_task_faults_a_lost_cluster_and_a_driver_out_of_memory_stop_the_stage(monkeypatch):
    ray = pytest.importorskip("ray")
    from commercial98k.engine import ray_executor as ray_engine

    err = ray.exceptions.RayTaskError("step", "tb", OSError(errno.ENOSPC, "No space left on device", "/d/a"))
    with pytest.raises(faults.EnvironmentFault, match="^no space left on device: /d/a;"):
        ray_engine.raise_fault(err)  # raised in a worker, reaches the driver
    ray_engine.raise_fault(ray.exceptions.RayTaskError("step", "tb", ValueError("bad video")))  # the item's

    def gone(*args, **kwargs):
        raise ray.exceptions.RaySystemError("GCS at 10.0.0.1:6379 unreachable")

    monkeypatch.setattr(ray, "wait", gone)
    with pytest.raises(faults.EnvironmentFault, match=r"^lost the Ray cluster \(RaySystemError: .*unreachable\); "
                                                      r"check it with `ray status`"):
        ray_engine.wait(["ref"])
    with pytest.raises(faults.EnvironmentFault, match=r"^out of memory \(MemoryError\)"), faults.stage_faults({}):
        raise MemoryError


def test_a_real_full_disk_under_the_clip_audio(golden, tmp_path):
    """The kernel's own ENOSPC (libsndfile, pyarrow, ffmpeg write in C): a 300 kB tmpfs as data/audio."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs CAP_SYS_ADMIN (the injected ENOSPC cells above run everywhere)")
    try:
        proj = tmp_path / "proj"
        shutil.copytree(golden["split"][0], proj, symlinks=True)
        (proj / "data" / "audio").symlink_to(disk)  # a folder on another, small disk: one clip WAV fits
        result = _run("split", proj)
        assert result.exit_code == 1, result.output
        assert f"error: no space left on device: {proj / 'data' / 'audio'}/" in result.stderr, result.output
        assert f" free on {disk})" in result.stderr, result.output
        assert read_manifest(proj / OUTPUT["split"][0], "clips").num_rows and not _failed("split", proj)  # 1st kept
        subprocess.run(["mount", "-o", "remount,size=4M", str(disk)], check=True)  # space freed
        assert _run("split", proj).exit_code == 0
        _same(_state("split", proj), _state("split", golden["split"][1]))
    finally:
        subprocess.run(["umount", str(disk)], check=False)
