"""The ``c98k split`` stage end to end on generated and real videos: statuses, files, identity, resume."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf
from click.testing import CliRunner

from commercial98k.manifest.io import problems_in, read_manifest, write_manifest
from commercial98k.media.ffmpeg_io import probe
from pipelines.commands.split import command

FF = ["ffmpeg", "-v", "error", "-y"]


def _ff(*args) -> None:
    subprocess.run([*FF, *map(str, args)], check=True, capture_output=True)


def _music_video(out: Path, visual: str, track: Path, start: float, seconds: float) -> None:
    """A generated picture (lavfi ``visual``) muxed with ``seconds`` of ``track`` from ``start``."""
    _ff("-f", "lavfi", "-i", f"{visual}=size=320x240:rate=25", "-ss", start, "-i", track, "-t", seconds,
        "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", out)


@pytest.fixture(scope="module")
def corpus(shared_media, tmp_path_factory):
    """A data root with seven videos and a videos manifest listing them (plus one spare video)."""
    base = tmp_path_factory.mktemp("split")
    videos = base / "data" / "videos"
    videos.mkdir(parents=True)
    audio = shared_media / "emotify" / "audio"
    _music_video(videos / "a.mp4", "testsrc", audio / "pop_2.mp3", 5, 14)
    _music_video(videos / "b.mp4", "mandelbrot", audio / "pop_2.mp3", 9, 11)  # same track, other cut
    _music_video(videos / "c.mp4", "testsrc2", audio / "rock_2.mp3", 5, 12)
    _music_video(videos / "d.mp4", "smptebars", audio / "rock_2.mp3", 10, 10)  # added on the second run
    _ff("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono",
        "-t", 6, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", videos / "quiet.mp4")
    espeak = shutil.which("espeak-ng")
    if espeak:
        wav = base / "speech.wav"
        subprocess.run([espeak, "-w", str(wav), "Discover our new skin care line. Gentle cleansing foam, "
                        "hydrating serum and a light day cream. Order today and save twenty percent."],
                       check=True, capture_output=True)
        _ff("-f", "lavfi", "-i", "rgbtestsrc=size=320x240:rate=25", "-i", wav, "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", videos / "speech.mp4")
    _ff("-t", 8, "-i", shared_media / "videos" / "pyscenedetect_testvideo.mp4", "-c", "copy", videos / "noaudio.mp4")
    good = (videos / "c.mp4").read_bytes()
    (videos / "corrupt.mp4").write_bytes(good[: len(good) // 40])
    names = ["a", "b", "c", "quiet", "noaudio", "corrupt"] + (["speech"] if espeak else [])
    rows = [_video_row(n) for n in names]
    rows.append(dict(_video_row("gone"), status="failed", error="DownloadError: gone"))  # not split
    write_manifest(rows, base / "videos.parquet", "videos")
    return base


def _video_row(name: str) -> dict:
    return dict(video_id=name, platform="local", platform_id=name, video_path=f"videos/{name}.mp4",
                title=f"ad {name}", category="cosmetics", status="ok")


def _run(base: Path, *extra: str):
    args = ["--videos-manifest", str(base / "videos.parquet"), "--manifest", str(base / "c98k.parquet"),
            "--data-root", str(base / "data"), *extra]
    return CliRunner().invoke(command, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def first_run(corpus):
    result = _run(corpus, "--workers", "2", "--clip-seconds", "10", "--min-clip-seconds", "3", "--clip-files", "encode")
    assert result.exit_code == 0, result.output
    return result, {r["clip_id"]: r for r in read_manifest(corpus / "c98k.parquet", "clips").to_pylist()}


def test_statuses_and_errors(first_run):
    _, rows = first_run
    by_video: dict[str, list[dict]] = {}
    for r in rows.values():
        by_video.setdefault(r["video_id"], []).append(r)
    assert "gone" not in by_video  # only videos fetched ok are split
    for v in ("a", "b", "c"):
        assert all(r["status"] == "ok" for r in by_video[v])
    assert rows["noaudio-none"]["status"] == "no_audio" and rows["noaudio-none"]["has_audio"] is False
    assert rows["quiet-none"]["status"] == "no_music" and rows["quiet-none"]["has_music"] is False
    if "speech" in by_video:
        assert rows["speech-none"]["status"] == "no_music"
        assert "no background music" in rows["speech-none"]["error"]
    bad = rows["corrupt-none"]
    assert bad["status"] == "failed" and "corrupt.mp4" in bad["error"] and "\n" not in bad["error"]


def test_manifest_is_valid_with_provenance(first_run, corpus):
    assert problems_in(corpus / "c98k.parquet", "clips") == []
    _, rows = first_run
    ok = [r for r in rows.values() if r["status"] == "ok"]
    for r in ok:
        assert r["title"] == f"ad {r['video_id']}" and r["category"] == "cosmetics"  # video columns copied
        assert r["shot_detector"].startswith("pyscenedetect-adaptive")
        assert r["music_detector"].startswith("yamnet-w8a8")
        assert r["fingerprinter"].startswith("chromaprint")
        assert r["has_music"] and r["music_ratio"] > 0.5 and r["fingerprint"]
        assert r["clip_id"] == f"{r['video_id']}-c{r['clip_index']:03d}"


def test_clip_files_are_frame_accurate(first_run, corpus):
    _, rows = first_run
    root = corpus / "data"
    for r in (x for x in rows.values() if x["status"] == "ok"):
        assert r["clip_end_s"] - r["clip_start_s"] <= 10 + 1e-6
        info = probe(root / r["clip_path"])
        assert info.num_frames == r["clip_end_frame"] - r["clip_start_frame"]
        assert r["clip_start_s"] == pytest.approx(r["clip_start_frame"] / r["fps"], abs=1e-5)
        data, sr = sf.read(root / r["audio_path"])
        assert sr == 16000 and data.ndim == 1
        assert len(data) / sr == pytest.approx(r["clip_end_s"] - r["clip_start_s"], abs=0.05)


def test_music_id_groups_the_same_track(first_run):
    _, rows = first_run
    ids = {v: {r["music_id"] for r in rows.values() if r["video_id"] == v and r["status"] == "ok"}
           for v in ("a", "b", "c")}
    assert ids["a"] == ids["b"] and len(ids["a"]) == 1  # same excerpt, different picture and cut
    assert ids["c"].isdisjoint(ids["a"])
    groups = {rows[f"{v}-c000"]["dup_group"] for v in ("a", "b", "c")}
    assert len(groups) == 3  # different pictures are not re-uploads


def test_rerun_skips_finished_retries_failed_and_groups_with_old_clips(first_run, corpus):
    _, rows = first_run
    clip = corpus / "data" / rows["a-c000"]["clip_path"]
    mtime = clip.stat().st_mtime_ns
    videos = read_manifest(corpus / "videos.parquet", "videos").to_pylist()
    write_manifest([*videos, _video_row("d")], corpus / "videos.parquet", "videos")
    # the failed video is repaired (a re-upload of c) before the re-run
    shutil.copy(corpus / "data" / "videos" / "c.mp4", corpus / "data" / "videos" / "corrupt.mp4")
    result = _run(corpus, "--clip-seconds", "10", "--min-clip-seconds", "3", "--retry-failed")
    assert result.exit_code == 0, result.output
    finished = len({r["video_id"] for r in rows.values() if r["status"] != "failed"})
    assert f"skipped {finished}" in result.output  # the failed video is retried, d is new
    assert clip.stat().st_mtime_ns == mtime
    after = {r["clip_id"]: r for r in read_manifest(corpus / "c98k.parquet", "clips").to_pylist()}
    assert set(rows) - {"corrupt-none"} <= set(after)
    assert "corrupt-none" not in after and after["corrupt-c000"]["status"] == "ok"

    def ids(video: str, column: str) -> set:
        return {r[column] for r in after.values() if r["video_id"] == video}

    assert ids("d", "music_id") == ids("c", "music_id")  # new clips join a track split in the first run
    assert ids("corrupt", "music_id") == ids("c", "music_id")
    assert ids("corrupt", "dup_group") == ids("c", "dup_group")  # the re-upload is flagged
    assert ids("d", "dup_group").isdisjoint(ids("c", "dup_group"))
    assert problems_in(corpus / "c98k.parquet", "clips") == []


def test_bad_flags_are_rejected(corpus):
    result = _run(corpus, "--clip-seconds", "5", "--min-clip-seconds", "8")
    assert result.exit_code != 0 and "--min-clip-seconds" in result.output
    from pipelines.cli import main  # the CLI's one error surface turns the error into its line

    missing = CliRunner().invoke(main, ["split", "--videos-manifest", str(corpus / "nope.parquet"),
                                        "--manifest", str(corpus / "x.parquet")])
    assert missing.exit_code == 1 and "no such manifest" in missing.output


@pytest.mark.ray
def test_split_ray_engine(corpus, tmp_path, ray_driver):
    """The same step on Ray (the session's cluster, this process as its driver), through the CLI command."""
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    for name in ("a", "noaudio"):
        shutil.copy(corpus / "data" / "videos" / f"{name}.mp4", data / "videos" / f"{name}.mp4")
    (data / "videos" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(4000))
    write_manifest([_video_row(n) for n in ("a", "noaudio", "corrupt")], tmp_path / "videos.parquet", "videos")
    run = CliRunner().invoke(command, ["--videos-manifest", str(tmp_path / "videos.parquet"), "--manifest",
                                       str(tmp_path / "c98k.parquet"), "--data-root", str(data), "--engine", "ray",
                                       "--workers", "2", "--clip-files", "encode"])
    assert run.exit_code == 0, run.output
    rows = {r["clip_id"]: r for r in read_manifest(tmp_path / "c98k.parquet", "clips").to_pylist()}
    assert rows["a-c000"]["status"] == "ok" and (data / rows["a-c000"]["clip_path"]).is_file()
    assert rows["noaudio-none"]["status"] == "no_audio" and rows["corrupt-none"]["status"] == "failed"
    assert "error: corrupt" in run.stderr
