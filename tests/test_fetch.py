"""``c98k fetch`` end to end: yt-dlp crawls a loopback shop built from ../shared/media/videos."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from commercial98k.manifest.io import parts_dir, problems_in, read_manifest
from commercial98k.media.ffmpeg_io import probe
from commercial98k.sources import YtdlpOptions, fetcher_tag
from commercial98k.storage.files import sha256_file
from commercial98k.testing.catalog_server import CatalogServer, VideoMeta
from pipelines.cli import main
from pipelines.fetch import fetch

ROOT = Path(__file__).resolve().parent.parent
SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
FAST = YtdlpOptions(retries=1, retry_backoff_s=0.05)
LIPSTICK = VideoMeta(title="Velvet Matte Lipstick: 30 s spot", description="Shop the #velvet collection now.",
                     tags=["lipstick", "makeup"], uploader="Rouge Store", upload_date="2023-04-02",
                     view_count=1234, like_count=56)


def shop_root(folder: Path, shared_media: Path) -> Path:
    """Links to the real videos, a broken 'mp4' and a byte-identical copy under another name."""
    folder.mkdir(parents=True, exist_ok=True)
    videos = shared_media / "videos"
    for p in videos.iterdir():
        if p.suffix in (".mp4", ".mkv", ".webm"):
            (folder / p.name).symlink_to(p)
    (folder / "broken.mp4").write_bytes(os.urandom(150_000))
    (folder / "same_as_videollava.mp4").write_bytes((videos / "videollava_sample_demo_22.mp4").read_bytes())
    return folder


def rows_by_id(manifest: Path) -> dict[str, dict]:
    rows = read_manifest(manifest, "videos").to_pylist()
    ids = [r["video_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a video appears twice in the manifest"
    return {r["video_id"]: r for r in rows}


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


PAGES = {
    "cosmetics": ["big_buck_bunny_0_30.webm", "pyscenedetect_testvideo.mp4", "broken.mp4"],
    "food": ["videollava_sample_demo_22.mp4", "big_buck_bunny_trailer_480p.mkv", "same_as_videollava.mp4"],
}
EXTRA = {"cosmetics": ["/cosmetics/v/gone.html", "/about.html", "/cosmetics/v/..%2F..%2Fescape.html"]}


def test_fetch_catalogs(tmp_path: Path, shared_media: Path) -> None:
    media = shop_root(tmp_path / "shop", shared_media)
    data, manifest = tmp_path / "data", tmp_path / "manifests" / "videos.parquet"
    meta = {"big_buck_bunny_0_30.webm": LIPSTICK}
    with CatalogServer(media, PAGES, extra_links=EXTRA, meta=meta) as shop:
        cosmetics_url = shop.category_url("cosmetics")
        first = fetch("cosmetics", [cosmetics_url], manifest=manifest, data_root=data,
                      options=FAST, progress=False)
        second = fetch("food", [shop.category_url("food")], manifest=manifest, data_root=data,
                       options=FAST, workers=2, progress=False)
        media_hits = len(shop.hits)
        again = fetch("cosmetics", [shop.category_url("cosmetics")], manifest=manifest, data_root=data,
                      options=FAST, progress=False)
        assert again.known == again.planned == 6 and not again.counts
        assert len(shop.hits) == media_hits, "a rerun downloaded a video again"
        assert shop.requests["/cosmetics/v/big_buck_bunny_0_30.html"] == 1
        # rows lost but files complete (a kill between download and row): rows come back, no download
        lost = tmp_path / "lost.parquet"
        fetch("cosmetics", [cosmetics_url], manifest=lost, data_root=data, options=FAST, progress=False)
        kept = ("big_buck_bunny_0_30.webm", "pyscenedetect_testvideo.mp4")
        assert all(len(shop.media_hits(n)) == 1 for n in kept)
        assert len(shop.media_hits("broken.mp4")) == 2  # unreadable files are deleted, so fetched again
        relost = rows_by_id(lost)
        assert relost["generic-big_buck_bunny_0_30"]["status"] == "ok"
        assert relost["generic-pyscenedetect_testvideo"]["status"] == "no_audio"
        lost.unlink()

    assert first.planned == 6 and sum(first.counts.values()) == 6
    assert sum(second.counts.values()) == 3
    rows = rows_by_id(manifest)
    status = {k: r["status"] for k, r in rows.items()}
    assert {k: v for k, v in status.items() if "escape" not in k} == {
        "generic-big_buck_bunny_0_30": "ok",
        "generic-pyscenedetect_testvideo": "no_audio",
        "generic-broken": "failed",
        "generic-gone": "failed",
        "generic-about": "unsupported",
        "generic-videollava_sample_demo_22": "ok",
        "generic-big_buck_bunny_trailer_480p": "ok",
        "generic-same_as_videollava": "duplicate",
    }
    assert problems_in(manifest, "videos") == []

    # the path-escaping link got a safe id and a 404, nothing outside the data root
    escape = [r for k, r in rows.items() if "escape" in k]
    assert len(escape) == 1 and escape[0]["status"] == "failed" and "404" in escape[0]["error"]
    assert all(SAFE_ID.match(k) for k in rows)
    outside = {p for p in files_under(tmp_path) if data not in p.parents and manifest.parent not in p.parents}
    assert outside == files_under(tmp_path / "shop")

    # metadata comes from the product page (JSON-LD), not from the catalog entry
    lip = rows["generic-big_buck_bunny_0_30"]
    assert lip["title"] == LIPSTICK.title and lip["description"] == LIPSTICK.description
    assert lip["uploader"] == "Rouge Store" and lip["upload_date"] == "2023-04-02"
    assert lip["view_count"] == 1234 and lip["like_count"] == 56
    assert lip["platform_tags"] == ["lipstick", "makeup", "#velvet"]
    assert lip["platform"] == "generic" and lip["platform_id"] == "big_buck_bunny_0_30"
    assert lip["category"] == "cosmetics" and lip["query"] == cosmetics_url
    assert lip["fetcher"] == fetcher_tag() and lip["fetcher"].startswith("yt-dlp ")
    assert rows["generic-big_buck_bunny_trailer_480p"]["title"].startswith("Big Buck Bunny Trailer 480P")

    # files: container extension kept, content intact, probe columns filled
    for vid, ext in [("generic-big_buck_bunny_0_30", ".webm"), ("generic-big_buck_bunny_trailer_480p", ".mkv"),
                     ("generic-videollava_sample_demo_22", ".mp4"), ("generic-pyscenedetect_testvideo", ".mp4")]:
        r = rows[vid]
        path = data / r["video_path"]
        assert r["video_path"] == f"videos/{vid}{ext}" and path.is_file()
        assert r["content_sha256"] == sha256_file(path) and r["filesize"] == path.stat().st_size
        p = probe(path)
        assert r["duration_s"] == pytest.approx(p.duration_s, abs=0.05)
        assert (r["width"], r["height"], r["has_audio"]) == (p.width, p.height, p.has_audio)
    original = shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv"
    assert rows["generic-big_buck_bunny_trailer_480p"]["content_sha256"] == sha256_file(original)

    # failures keep yt-dlp's own error; broken and duplicate files are gone
    assert "HTTP Error 404" in rows["generic-gone"]["error"]
    assert "Unsupported URL" in rows["generic-about"]["error"]
    assert "MediaError" in rows["generic-broken"]["error"] and rows["generic-broken"]["video_path"] is None
    dup = rows["generic-same_as_videollava"]
    assert dup["error"] == "same content (sha256) as generic-videollava_sample_demo_22" and dup["video_path"] is None
    assert "no audio" in rows["generic-pyscenedetect_testvideo"]["error"]
    assert sorted(p.name for p in (data / "videos").iterdir() if p.is_file()) == sorted(
        Path(r["video_path"]).name for r in rows.values() if r["video_path"])
    assert not any((data / "videos" / ".partial").iterdir())


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "fetch", *args]


def test_fetch_killed_and_resumed(tmp_path: Path, shared_media: Path) -> None:
    media = shop_root(tmp_path / "shop", shared_media)
    data, manifest = tmp_path / "data", tmp_path / "videos.parquet"
    names = ["big_buck_bunny_0_30.webm", "videollava_sample_demo_22.mp4", "big_buck_bunny_trailer_480p.mkv",
             "video2dataset_test_video.mp4"]
    partial = data / "videos" / ".partial"
    with CatalogServer(media, {"digital": names}, throttle_bps=1_500_000) as shop:
        args = _cli("--category", "digital", "--source", shop.category_url("digital"),
                    "--data-root", str(data), "--manifest", str(manifest))
        log1 = open(tmp_path / "run1.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(args, cwd=ROOT, stdout=log1, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                rows_flushed = parts_dir(manifest).is_dir() and any(parts_dir(manifest).glob("part-*.parquet"))
                downloading = partial.is_dir() and any(p.stat().st_size > 0 for p in partial.glob("*.part"))
                if rows_flushed and downloading:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "fetch finished before it could be killed: " + (tmp_path / "run1.log").read_text()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
            log1.close()
        done_before = rows_by_id(manifest)
        assert 1 <= len(done_before) < len(names)
        assert any(partial.glob("*.part")), "the kill should leave a partial download behind"
        hits_before = {n: len(shop.media_hits(n)) for n in names}

        shop.throttle_bps = None
        # the resume needs no process of its own (only the killed run did): the same command in-process
        run2 = CliRunner().invoke(main, args[args.index("pipelines.cli") + 1:])
        assert run2.exit_code == 0, run2.output
        assert "already in" in run2.stderr

    rows = rows_by_id(manifest)
    assert sorted(rows) == sorted(f"generic-{Path(n).stem}" for n in names)
    assert {r["status"] for r in rows.values()} == {"ok"}
    for vid, row in done_before.items():  # finished rows survive the kill unchanged
        assert rows[vid]["content_sha256"] == row["content_sha256"]
    for n in names:
        hits = shop.media_hits(n)
        from_start = [h for h in hits if not h.range_start]
        assert len(from_start) == 1, f"{n} was downloaded from the start {len(from_start)} times"
        if f"generic-{Path(n).stem}" in done_before:
            assert len(hits) == hits_before[n], f"{n} was finished, yet requested again"
        elif hits_before[n]:  # the interrupted one resumed where its .part ended
            assert hits[-1].range_start and hits[-1].range_start > 0 and hits[-1].complete
        path = data / rows[f"generic-{Path(n).stem}"]["video_path"]
        assert not path.name.endswith(".part") and path.stat().st_size == (media / n).stat().st_size
        assert rows[f"generic-{Path(n).stem}"]["content_sha256"] == sha256_file(media / n)
    assert not list(partial.iterdir()), "partial files left after the resumed run"
    assert not parts_dir(manifest).exists()
    assert problems_in(manifest, "videos") == []


@pytest.mark.ray
def test_fetch_ray_engine(tmp_path: Path, shared_media: Path, ray_driver: str) -> None:
    """``c98k fetch --engine ray`` as Ray tasks on the session's cluster (this process drives it)."""
    media = shop_root(tmp_path / "shop", shared_media)
    data, manifest = tmp_path / "data", tmp_path / "videos.parquet"
    names = ["big_buck_bunny_0_30.webm", "pyscenedetect_testvideo.mp4", "broken.mp4", "videollava_sample_demo_22.mp4"]
    with CatalogServer(media, {"food": names}) as shop:
        run = CliRunner().invoke(main, ["fetch", "-c", "food", "-s", shop.category_url("food"), "--data-root",
                                        str(data), "--manifest", str(manifest), "--engine", "ray", "--workers", "2"])
    assert run.exit_code == 0, run.output
    rows = rows_by_id(manifest)
    assert {k: r["status"] for k, r in rows.items()} == {
        "generic-big_buck_bunny_0_30": "ok", "generic-pyscenedetect_testvideo": "no_audio",
        "generic-broken": "failed", "generic-videollava_sample_demo_22": "ok"}
    assert all((data / r["video_path"]).is_file() for r in rows.values() if r["status"] == "ok")
    assert "4 videos planned" in run.stdout and "ok 2" in run.stdout
