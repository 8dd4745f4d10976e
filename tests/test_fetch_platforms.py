"""``c98k fetch`` against platforms as they are: ad-length filter, paging, blocks, truncation, summaries.

All offline, on the loopback catalog server built from ../shared/media/videos.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from commercial98k.manifest.io import read_manifest
from commercial98k.sources import AdFilter, YtdlpOptions, classify_error, js_runtime_info
from commercial98k.sources.plan import resolve_specs, runtime_warning
from commercial98k.sources.ytdlp import _CaptureLogger, ytdlp_params
from commercial98k.taxonomy import load_taxonomy
from commercial98k.testing.catalog_server import CatalogServer, VideoMeta, default_meta
from pipelines.commands.fetch import command
from pipelines.fetch import fetch

FAST = YtdlpOptions(retries=0, retry_backoff_s=0.01)
VIDEOS = ("big_buck_bunny_0_30.webm", "videollava_sample_demo_22.mp4", "big_buck_bunny_trailer_480p.mkv",
          "pyscenedetect_fades.mp4")


@pytest.fixture
def shop_media(tmp_path: Path, shared_media: Path) -> Path:
    folder = tmp_path / "shop"
    folder.mkdir()
    for name in VIDEOS:
        (folder / name).symlink_to(shared_media / "videos" / name)
    for name in ("vlog_review.mp4", "compilation.mp4"):  # real files whose pages claim a long duration
        (folder / name).symlink_to(shared_media / "videos" / "videollava_sample_demo_22.mp4")
    return folder


def rows(manifest: Path) -> dict[str, dict]:
    return {r["video_id"]: r for r in read_manifest(manifest, "videos").to_pylist()}


def long_meta(category: str, name: str, seconds: float) -> VideoMeta:
    m = default_meta(category, name, 0)
    m.duration_s = seconds
    return m


@pytest.mark.parametrize("listing", ["feed", "html"])
def test_long_entries_never_downloaded_and_limit_met_across_two_pages(tmp_path: Path, shop_media: Path,
                                                                      listing: str) -> None:
    names = ["vlog_review.mp4", "big_buck_bunny_0_30.webm", "compilation.mp4",
             "videollava_sample_demo_22.mp4", "big_buck_bunny_trailer_480p.mkv", "pyscenedetect_fades.mp4"]
    meta = {"vlog_review.mp4": long_meta("food", "vlog_review.mp4", 1832),
            "compilation.mp4": long_meta("food", "compilation.mp4", 600)}
    manifest, data = tmp_path / "videos.parquet", tmp_path / "data"
    with CatalogServer(shop_media, {"food": names}, meta=meta, per_page=3) as shop:
        url = shop.feed_url("food") if listing == "feed" else shop.category_url("food")
        result = fetch("food", [url], manifest=manifest, data_root=data, limit=3, options=FAST, progress=False)
        assert not shop.media_hits("vlog_review.mp4") and not shop.media_hits("compilation.mp4")
        assert shop.requests["/food/v/pyscenedetect_fades.html"] == 0  # the limit was met before it
        if listing == "feed":  # the feed's flat metadata: the long pages are never even opened
            assert shop.requests["/food/v/vlog_review.html"] == 0
        again = fetch("food", [url], manifest=manifest, data_root=data, limit=3, options=FAST, progress=False)
        assert not again.counts and not shop.media_hits("vlog_review.mp4")
    got = rows(manifest)
    assert result.counts == {"ok": 3, "skipped": 2} and result.found == {"food": 3}
    assert {k for k, r in got.items() if r["status"] == "ok"} == {
        "generic-big_buck_bunny_0_30", "generic-videollava_sample_demo_22", "generic-big_buck_bunny_trailer_480p"}
    assert got["generic-vlog_review"]["error"] == "duration 1,832 s > --max-duration 180"
    assert got["generic-compilation"]["error"] == "duration 600 s > --max-duration 180"
    assert got["generic-vlog_review"]["status"] == "skipped" and got["generic-vlog_review"]["duration_s"] == 1832
    assert "--limit met for every category" in result.summary()
    # a longer --max-duration downloads what the shorter one skipped ...
    with CatalogServer(shop_media, {"food": names}, meta=meta, per_page=3) as shop:
        url = shop.feed_url("food") if listing == "feed" else shop.category_url("food")
        wider = fetch("food", [url], manifest=manifest, data_root=data, limit=5, progress=False,
                      options=YtdlpOptions(retries=0, max_duration_s=700))
        assert not shop.media_hits("vlog_review.mp4") and len(shop.media_hits("compilation.mp4")) == 1
    # ... and then finds the file (36 s) far shorter than the 600 s its page claims
    assert wider.counts == {"failed": 1, "no_audio": 1}
    assert rows(manifest)["generic-compilation"]["error"] == "truncated (decoded 36.3 s of 600.0 s)"


def test_limit_short_says_sources_exhausted(tmp_path: Path, shop_media: Path) -> None:
    with CatalogServer(shop_media, {"food": ["big_buck_bunny_0_30.webm"]}) as shop:
        result = fetch("food", [shop.feed_url("food")], manifest=tmp_path / "v.parquet", data_root=tmp_path / "d",
                       limit=4, options=FAST, progress=False)
    assert result.counts == {"ok": 1} and "sources exhausted before --limit: food 1/4" in result.summary()


def test_429_is_blocked_and_truncated_media_fails_then_both_retried(tmp_path: Path, shop_media: Path) -> None:
    manifest, data = tmp_path / "videos.parquet", tmp_path / "data"
    names = ["big_buck_bunny_0_30.webm", "videollava_sample_demo_22.mp4"]
    walls = {"/food/v/videollava_sample_demo_22.html": 429, "/toys/index.html": 429}  # a video page, a catalog
    with CatalogServer(shop_media, {"food": names, "toys": ["pyscenedetect_fades.mp4"]}, status_codes=walls,
                       truncate={"big_buck_bunny_0_30.webm": 0.3}) as shop:
        catalogs = [shop.category_url("food"), shop.category_url("toys")]
        first = fetch("food", catalogs, manifest=manifest, data_root=data, options=FAST, progress=False)
        got = rows(manifest)
        assert first.counts == {"blocked": 1, "failed": 1}  # the blocked catalog is no row: it is read next run
        (where, cause), = first.stats.failures
        assert where == catalogs[1] and "HTTP Error 429" in cause and "--cookies FILE" in cause
        assert "1 of 2 sources could not be read" in first.summary()
        blocked = got["generic-videollava_sample_demo_22"]
        assert blocked["status"] == "blocked" and "HTTP Error 429" in blocked["error"]
        assert "--cookies" in blocked["error"] and "--sleep" in blocked["error"]
        cut = got["generic-big_buck_bunny_0_30"]
        assert cut["status"] == "failed" and cut["video_path"] is None
        decoded, expected = (float(x) for x in
                             cut["error"].removeprefix("truncated (decoded ").removesuffix(" s)").split(" s of "))
        assert 3 < decoded < 15 and expected == pytest.approx(30.0, abs=0.1), cut["error"]
        assert not list((data / "videos").glob("generic-big_buck_bunny_0_30.*"))
        shop.status_codes.clear()
        shop.truncate.clear()
        second = fetch("food", catalogs, manifest=manifest, data_root=data, options=FAST,
                       progress=False)  # no --retry-failed: a cut or blocked download is tried again
    assert second.counts == {"ok": 2, "no_audio": 1}
    assert {r["status"] for r in rows(manifest).values()} == {"ok", "no_audio"}


def test_breaker_stops_a_blocking_platform_and_goes_on(tmp_path: Path, shop_media: Path) -> None:
    names = [f"ad{i}.mp4" for i in range(6)]
    for n in names:
        (shop_media / n).symlink_to(shop_media / "videollava_sample_demo_22.mp4")
    walls = {f"/food/v/ad{i}.html": 429 for i in range(6)}
    urls = tmp_path / "urls.txt"
    with CatalogServer(shop_media, {"food": names}, status_codes=walls) as wall, \
            CatalogServer(shop_media, {"food": ["big_buck_bunny_0_30.webm"]}) as fine:
        urls.write_text(f"{wall.category_url('food')}\n{fine.category_url('food')}\n")
        result = fetch("food", [str(urls)], manifest=tmp_path / "v.parquet", data_root=tmp_path / "d",
                       options=YtdlpOptions(retries=0, block_limit=3), progress=False)
        asked = [n for n in names if wall.requests[f"/food/v/{Path(n).stem}.html"]]
    assert asked == names[:3]  # after 3 blocks in a row, no more requests to that host
    assert result.counts == {"blocked": 6, "ok": 1}
    got = rows(tmp_path / "v.parquet")
    assert sum("not tried" in (r["error"] or "") for r in got.values()) == 3
    assert f"127.0.0.1:{wall.port}: stopped after repeated blocks (3 not asked)" in result.summary()


def test_folder_categories_hidden_and_empty_files(tmp_path: Path, shared_media: Path) -> None:
    ads = tmp_path / "ads"
    for sub in ("cosmetics", "food/summer", "misc", ".cache"):
        (ads / sub).mkdir(parents=True)
    src = shared_media / "videos"
    (ads / "cosmetics" / "lip.webm").symlink_to(src / "big_buck_bunny_0_30.webm")
    (ads / "food" / "summer" / "snack.mp4").symlink_to(src / "videollava_sample_demo_22.mp4")
    (ads / "misc" / "other.mkv").symlink_to(src / "big_buck_bunny_trailer_480p.mkv")
    (ads / "food" / "empty.mp4").write_bytes(b"")
    (ads / ".cache" / "thumb.mp4").symlink_to(src / "videollava_sample_demo_22.mp4")
    (ads / "food" / ".partial.mp4").write_bytes(b"x" * 10)
    (ads / "cosmetics" / "notes.txt").write_text("not a video")
    (ads / "misc" / "cover.jpg").write_bytes(b"\xff\xd8")
    result = fetch(None, [str(ads)], manifest=tmp_path / "v.parquet", data_root=tmp_path / "d", progress=False)
    got = {Path(r["title"]).name: r for r in rows(tmp_path / "v.parquet").values()}
    assert {k: (r["category"], r["status"]) for k, r in got.items()} == {
        "lip": ("cosmetics", "ok"), "snack": ("food", "ok"), "other": (None, "ok"), "empty": ("food", "failed")}
    assert got["empty"]["error"] == "empty file (0 bytes)"
    assert result.stats.skipped_files == {"hidden": 2, "not_media": 2}
    assert "files skipped: 2 hidden, 2 not media" in result.summary()
    forced = fetch("apparel", [str(ads)], manifest=tmp_path / "w.parquet", data_root=tmp_path / "e", progress=False)
    assert forced.counts["ok"] == 3
    assert {r["category"] for r in rows(tmp_path / "w.parquet").values()} == {"apparel"}  # -c overrides


def test_duplicate_lines_and_unknown_categories_are_counted(tmp_path: Path, shop_media: Path) -> None:
    with CatalogServer(shop_media, {"food": ["big_buck_bunny_0_30.webm", "videollava_sample_demo_22.mp4"]}) as shop:
        a = shop.video_page_url("food", "big_buck_bunny_0_30.webm")
        b = shop.video_page_url("food", "videollava_sample_demo_22.mp4")
        urls = tmp_path / "urls.csv"
        urls.write_text(f"url,category\n{a},food\n{a},apparel\n{b},spaceships\n{a},\n")
        result = fetch(None, [str(urls)], manifest=tmp_path / "v.parquet", data_root=tmp_path / "d", options=FAST,
                       progress=False)
    assert result.counts == {"ok": 1, "skipped": 1}
    line = result.summary()
    assert "2 duplicate URL lines dropped (first category kept)" in line
    assert "1 skipped for an unknown category ('spaceships')" in line
    assert "this run: ok 1, skipped 1" in line
    assert rows(tmp_path / "v.parquet")["generic-big_buck_bunny_0_30"]["category"] == "food"


def test_no_reachable_source_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["-c", "food", "-s", f"http://127.0.0.1:{port}/food/index.html", "-s", f"http://127.0.0.1:{port}/x.html",
            "--retries", "0", "--data-root", str(tmp_path / "d"), "--manifest", str(tmp_path / "v.parquet")]
    run = CliRunner().invoke(command, args)
    assert run.exit_code == 1, run.output
    lines = [ln for ln in run.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no source could be read (2 of 2 failed; first: "), lines
    assert "Connection refused" in lines[0]
    assert not (tmp_path / "v.parquet").exists()  # nothing recorded as failed for a network that is down


def test_ytdlp_sees_the_venv_deno() -> None:
    import yt_dlp

    found = js_runtime_info()
    assert found is not None and Path(found[0]).is_file()
    logger = _CaptureLogger()
    lines: list[str] = []
    logger.debug = lines.append  # type: ignore[method-assign]
    with yt_dlp.YoutubeDL(ytdlp_params(FAST, logger, verbose=True)) as ydl:
        ydl.print_debug_header()
    runtime = [ln for ln in lines if "JS runtimes:" in ln]
    assert runtime and f"deno-{found[1]}" in runtime[0], lines
    assert any("yt_dlp_ejs" in ln for ln in lines)  # the EJS solver scripts are installed


def test_ad_filter_and_blocked_messages() -> None:
    ad = AdFilter(5, 180)
    assert ad({"duration": 1832}) == "duration 1,832 s > --max-duration 180"
    assert ad({"duration": 2.5}) == "duration 2.5 s < --min-duration 5"
    assert ad({"duration": 30}) is None and ad({}, incomplete=True) is None
    assert ad({"duration": 30, "live_status": "is_live"}).startswith("live stream")
    assert ad({"live_status": "is_upcoming"}).startswith("premiere")
    assert AdFilter(None, None)({"duration": 10_000}) is None
    from yt_dlp.utils import DownloadError, ExtractorError

    def status(msg: str) -> tuple[str, str, bool]:
        e = ExtractorError(msg)
        return classify_error(DownloadError(f"ERROR: {msg}", (type(e), e, None)))

    for msg in ("[youtube] abc: Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser",
                "Unable to download webpage: HTTP Error 429: Too Many Requests",
                "[BiliBili] BV1: Request is blocked by server (412), please wait and try later.",
                "[BiliBili] BV1: Request is rejected by server (352)",
                "[bilibili:search] login required"):
        s, line, _ = status(msg)
        assert s == "blocked" and "--cookies" in line and "--sleep" in line, msg
    assert status("HTTP Error 404: Not Found")[0] == "failed"
    logging.getLogger(__name__).debug("ok")


def test_youtube_without_a_runtime_warns(tmp_path: Path) -> None:
    taxonomy = load_taxonomy()
    youtube = resolve_specs("cosmetics", ["ytsearch2:lipstick ad", "https://www.youtube.com/@brand/videos"],
                            taxonomy, None)
    missing = YtdlpOptions(js_runtime=str(tmp_path / "no-deno"))
    warning = runtime_warning(youtube, missing)
    assert warning and warning.startswith("warning: YouTube sources but no JavaScript runtime (deno) found")
    assert runtime_warning(youtube, YtdlpOptions()) is None  # the venv's deno
    shop = resolve_specs("cosmetics", ["http://127.0.0.1:9/cosmetics/index.html", "bilisearch2:口红"], taxonomy, None)
    assert runtime_warning(shop, missing) is None  # no YouTube source: nothing to say


def test_search_is_walked_page_by_page_until_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search's results come 4 a page here; long ones do not fill --limit, so page 3 is asked for."""
    from commercial98k.sources import expand

    asked: list[tuple[str, dict]] = []

    def fake_flat(url: str, options: YtdlpOptions, window: dict) -> dict:
        asked.append((url, window))
        start, end = window["playliststart"], window["playlistend"]
        entries = [{"_type": "url", "ie_key": "Youtube", "id": f"v{i:09d}xx", "title": f"ad {i}",
                    "url": f"https://www.youtube.com/watch?v=v{i:09d}xx", "duration": 30 if i % 2 else 1200}
                   for i in range(start, min(end, 10) + 1)]
        return {"_type": "playlist", "entries": entries, "extractor_key": "YoutubeSearch"}

    monkeypatch.setattr(expand, "_extract_flat", fake_flat)
    items = []
    for item in expand.iter_url("ytsearch4:lipstick ad", YtdlpOptions()):
        items.append(item)
        if sum(i["source"] == "ytdlp" for i in items) == 5:
            break
    assert [u for u, _ in asked] == ["ytsearch4:lipstick ad", "ytsearch8:lipstick ad", "ytsearch12:lipstick ad"]
    assert [(w["playliststart"], w["playlistend"]) for _, w in asked] == [(1, 4), (5, 8), (9, 12)]
    kept = [i["platform_id"] for i in items if i["source"] == "ytdlp"]
    assert kept == ["v000000001xx", "v000000003xx", "v000000005xx", "v000000007xx", "v000000009xx"]
    skipped = [i for i in items if i["source"] == "dead"]
    assert len(skipped) == 4 and all(i["error"] == "duration 1,200 s > --max-duration 180" for i in skipped)
    asked.clear()
    assert len(list(expand.iter_url("ytsearch4:lipstick ad", YtdlpOptions()))) == 10
    assert len(asked) == 3  # page 3 came back short: the results are exhausted
