"""Format choice: yt-dlp picks video up to --max-height plus the best audio and merges them.

The shop serves a DASH manifest with three video-only renditions (720p, 480p, 240p) and one
audio-only rendition, all cut from ../shared/media videos with ffmpeg.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from commercial98k.manifest.io import read_manifest
from commercial98k.media.ffmpeg_io import ffmpeg_bin, probe
from commercial98k.sources import YtdlpOptions
from commercial98k.testing.catalog_server import CatalogServer
from pipelines.fetch import fetch

SECONDS = "6"  # longer than the default --min-duration 5
MPD = """<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT6S"
     minBufferTime="PT2S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">
 <Period>
  <AdaptationSet contentType="video" mimeType="video/mp4">
   <Representation id="v720" codecs="avc1.64001f" width="1280" height="720" bandwidth="2000000"><BaseURL>promo_v720.mp4</BaseURL></Representation>
   <Representation id="v480" codecs="avc1.64001e" width="854" height="480" bandwidth="900000"><BaseURL>promo_v480.mp4</BaseURL></Representation>
   <Representation id="v240" codecs="avc1.64000d" width="426" height="240" bandwidth="300000"><BaseURL>promo_v240.mp4</BaseURL></Representation>
  </AdaptationSet>
  <AdaptationSet contentType="audio" mimeType="audio/webm" lang="en">
   <Representation id="a" codecs="vorbis" bandwidth="128000" audioSamplingRate="44100"><BaseURL>promo_a.webm</BaseURL></Representation>
  </AdaptationSet>
 </Period>
</MPD>
"""
RENDITIONS = ["promo_v720.mp4", "promo_v480.mp4", "promo_v240.mp4", "promo_a.webm"]


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_bin(), "-loglevel", "error", "-y", *args], check=True, timeout=120)


@pytest.fixture
def dash_shop(tmp_path: Path, shared_media: Path) -> Path:
    folder = tmp_path / "shop"
    folder.mkdir()
    trailer = str(shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv")
    for height, name in ((720, "promo_v720.mp4"), (240, "promo_v240.mp4")):
        _ffmpeg("-i", trailer, "-t", SECONDS, "-an", "-vf", f"scale=-2:{height}", "-c:v", "libx264",
                "-preset", "ultrafast", str(folder / name))
    _ffmpeg("-i", trailer, "-t", SECONDS, "-an", "-c:v", "copy", str(folder / "promo_v480.mp4"))
    _ffmpeg("-i", str(shared_media / "videos" / "big_buck_bunny_0_30.webm"), "-t", SECONDS, "-vn",
            "-c:a", "copy", str(folder / "promo_a.webm"))
    (folder / "promo.mpd").write_text(MPD)
    return folder


@pytest.mark.parametrize(("max_height", "chosen"), [(480, "promo_v480.mp4"), (300, "promo_v240.mp4")])
def test_small_video_plus_audio_merged(tmp_path: Path, dash_shop: Path, max_height: int, chosen: str) -> None:
    data, manifest = tmp_path / "data", tmp_path / "videos.parquet"
    with CatalogServer(dash_shop, {"digital": ["promo.mpd"]}, assets=RENDITIONS) as shop:
        result = fetch("digital", [shop.category_url("digital")], manifest=manifest, data_root=data,
                       options=YtdlpOptions(max_height=max_height, retries=0), progress=False)
        downloaded = {name for name in RENDITIONS if shop.media_hits(name)}
    assert result.counts == {"ok": 1}
    assert downloaded == {chosen, "promo_a.webm"}  # never the 720p one, never a second video
    row = read_manifest(manifest, "videos").to_pylist()[0]
    path = data / row["video_path"]
    # h264 video + vorbis audio do not fit an mp4: yt-dlp merges into Matroska, we keep its choice
    assert path.suffix == ".mkv" and path.is_file() and row["video_path"] == f"videos/{row['video_id']}.mkv"
    p = probe(path)
    assert p.has_audio and p.has_video and row["has_audio"]
    assert row["height"] == p.height == probe(dash_shop / chosen).height <= max_height
    assert not list((data / "videos" / ".partial").iterdir())
