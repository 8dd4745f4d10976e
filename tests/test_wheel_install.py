"""``pip install .`` works end to end: the wheel, installed into a fresh venv with no source tree on
its path, reads its package data and runs ``c98k doctor`` and a folder fetch + split on real media.

The venv sees the project's dependencies through a ``.pth`` line naming the development venv's
site-packages (offline: nothing is downloaded), and their executables (deno) through that venv's
``bin`` on ``PATH``, after its own. A path line in a ``.pth`` file does not run the
``.pth`` files of that folder, so the development venv's editable-install finder (which maps
``commercial98k``, ``pipelines`` and ``yuyin`` to this checkout) stays out; the tests check that
every module is loaded from the new venv. Every command runs from a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from commercial98k.manifest.io import read_manifest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("commercial98k", "pipelines", "yuyin")
#: files the library reads from its own folder (``[tool.setuptools.package-data]``)
DATA_FILES = ("commercial98k/data/categories.json", "commercial98k/data/brands.json",
              "commercial98k/data/tag_synonyms.json", "commercial98k/data/imagenet_classes.txt",
              "commercial98k/data/emotion_gems_musicnn.npz", "commercial98k/data/speech_correction_musicnn.npz",
              "commercial98k/browse/static/index.html")
#: one ad with a music score, one without an audio track (README of ../shared/media/videos)
ADS = ("big_buck_bunny_trailer_480p.mkv", "pyscenedetect_testvideo.mp4")

# What the installed package reports about itself, run by the venv's python.
PROBE = """
import json, sys
import commercial98k, pipelines, yuyin
from commercial98k.browse.app import STATIC
from commercial98k.label.tags import DEFAULT_SYNONYMS, TagNormalizer
from commercial98k.label.visual import IMAGENET_NAMES
from commercial98k.models.emotion_head import BUNDLED
from commercial98k.taxonomy import DEFAULT_TAXONOMY, load_brands, load_taxonomy
print(json.dumps({
    "modules": [m.__file__ for m in (commercial98k, pipelines, yuyin)],
    "files": [str(p) for p in (DEFAULT_TAXONOMY, DEFAULT_SYNONYMS, IMAGENET_NAMES, BUNDLED, STATIC / "index.html")],
    "categories": len(load_taxonomy()), "brands": len(load_brands()),
    "tag": TagNormalizer().canonical("lip stick"),
    "finders": [type(f).__module__ + "." + type(f).__name__ for f in sys.meta_path],
    "path": sys.path,
}))
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline from a copy of the packages (setuptools writes build/ and egg-info
    beside the sources it builds; the checkout is left alone)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
              "-w", str(work / "dist"), str(src)], work, dict(os.environ)))
    (found,) = (work / "dist").glob("commercial98k-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A fresh venv with the wheel installed (``--no-deps``): its python, bin folder and environment."""
    root = tmp_path_factory.mktemp("venv")
    home = root / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", str(home)], root, env))
    python = home / "bin" / "python"
    _ok(_run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
              str(wheel)], root, env))
    site = Path(_ok(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         root, env)).stdout.strip())
    (site / "c98k_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    deps_bin = Path(sysconfig.get_paths()["scripts"])
    env["PATH"] = os.pathsep.join([str(home / "bin"), str(deps_bin), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(home)
    cwd = root / "work"
    cwd.mkdir()
    return {"home": home, "python": python, "c98k": home / "bin" / "c98k", "env": env, "cwd": cwd}


def test_the_wheel_holds_every_module_and_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
               if "__pycache__" not in p.parts}
    assert len(sources) > 100 and "commercial98k/models/clip.py" in sources
    assert sorted(sources - names) == []  # a folder without __init__.py (models/) is packaged too
    assert sorted(set(DATA_FILES) - names) == []
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "c98k = pipelines.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_installed_package_reads_its_data_from_the_venv(venv: dict) -> None:
    got = json.loads(_ok(_run([str(venv["python"]), "-c", PROBE], venv["cwd"], venv["env"])).stdout)
    home = venv["home"].resolve()
    for path in got["modules"] + got["files"]:
        assert Path(path).resolve().is_relative_to(home), path  # not the checkout
        assert Path(path).exists(), path
    assert not any(Path(p).resolve() == ROOT for p in got["path"] if p)
    assert not any("editable" in f for f in got["finders"]), got["finders"]
    assert got["categories"] == 12 and got["brands"] == 485 and got["tag"] == "lipstick"


def test_installed_c98k_runs_doctor_and_a_folder_fetch_and_split(shared_media: Path, venv: dict) -> None:
    c98k, cwd, env = str(venv["c98k"]), venv["cwd"], venv["env"]
    doctor = _ok(_run([c98k, "doctor"], cwd, env))
    lines = doctor.stdout.splitlines()
    for check in ("yt-dlp", "JS runtime", "ffmpeg", "onnxruntime", "torch/CUDA", "data root"):
        assert any(line.startswith(f"✓ {check}: ") for line in lines), (check, doctor.stdout)

    ads = cwd / "ads"
    ads.mkdir()
    for name in ADS:  # a folder of its own: the source folder is read whole
        shutil.copy2(shared_media / "videos" / name, ads / name)
    fetch = _ok(_run([c98k, "fetch", "-c", "cosmetics", "-s", "ads", "--workers", "1"], cwd, env))
    assert "this run: no_audio 1, ok 1" in fetch.stdout + fetch.stderr
    videos = {r["platform_id"].rsplit("-", 1)[0]: r for r in read_manifest(cwd / "manifests" / "videos.parquet",
                                                                             "videos").to_pylist()}
    assert sorted(videos) == ["big_buck_bunny_trailer_480p", "pyscenedetect_testvideo"]
    trailer, silent = videos["big_buck_bunny_trailer_480p"], videos["pyscenedetect_testvideo"]
    assert trailer["status"] == "ok" and trailer["category"] == "cosmetics" and trailer["platform"] == "local"
    assert (cwd / "data" / trailer["video_path"]).is_file()
    assert silent["status"] == "no_audio" and "no audio stream" in silent["error"]

    _ok(_run([c98k, "split", "--workers", "1"], cwd, env))
    clips = read_manifest(cwd / "manifests" / "c98k.parquet", "clips").to_pylist()
    assert clips and {c["video_id"] for c in clips} == {trailer["video_id"]}  # the silent ad is not split
    for c in clips:
        assert c["status"] == "ok" and c["split_status"] == "ok" and c["has_music"] and c["music_id"]
        assert 4.0 <= c["clip_end_s"] - c["clip_start_s"] <= 30.0 + 1e-6
        assert (cwd / "data" / c["audio_path"]).is_file()
