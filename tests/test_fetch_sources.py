"""Fetch sources without the network: taxonomy searches, URL files, local folders, the shop server."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from commercial98k.manifest.io import read_manifest
from commercial98k.sources import (
    SourceSpec,
    UnsafeSourceError,
    YtdlpOptions,
    classify_error,
    parse_source,
    search_url,
)
from commercial98k.sources.plan import resolve_specs
from commercial98k.sources.ytdlp import _CaptureLogger, ytdlp_params
from commercial98k.storage.files import sha256_file
from commercial98k.taxonomy import UnknownCategory, load_taxonomy
from commercial98k.testing.catalog_server import CatalogServer
from pipelines.commands.fetch import command
from pipelines.fetch import fetch

FAST = YtdlpOptions(retries=0, retry_backoff_s=0.01)


@pytest.fixture
def shop_media(tmp_path: Path, shared_media: Path) -> Path:
    folder = tmp_path / "shop"
    folder.mkdir()
    for name in ("big_buck_bunny_0_30.webm", "pyscenedetect_testvideo.mp4", "videollava_sample_demo_22.mp4"):
        (folder / name).symlink_to(shared_media / "videos" / name)
    return folder


def statuses(manifest: Path) -> dict[str, str]:
    return {r["video_id"]: r["status"] for r in read_manifest(manifest, "videos").to_pylist()}


# --- default sources: the taxonomy's queries as yt-dlp searches ----------------------------------

def test_default_sources_are_taxonomy_searches() -> None:
    taxonomy = load_taxonomy()
    cosmetics = taxonomy.get("cosmetics")
    specs = resolve_specs("cosmetics", [], taxonomy, limit=7)
    assert [s.value for s in specs] == [search_url(q, 7) for q in cosmetics.queries]
    assert all(s.kind == "search" and s.category == "cosmetics" for s in specs)
    english = [s.value for s in specs if s.value.startswith("ytsearch7:")]
    chinese = [s.value for s in specs if s.value.startswith("bilisearch7:")]
    assert english and chinese and len(english) + len(chinese) == len(specs)
    assert "ytsearch7:lipstick commercial" in english and "bilisearch7:口红 广告" in chinese
    every = resolve_specs("all", [], taxonomy, limit=None)
    assert len(every) == sum(len(c.queries) for c in taxonomy.categories)
    assert all(s.value.split(":", 1)[0].endswith("search20") for s in every)  # default count
    with pytest.raises(UnknownCategory):
        resolve_specs("spaceships", [], taxonomy, limit=None)
    with pytest.raises(ValueError, match="give --category"):
        resolve_specs(None, [], taxonomy, limit=None)


def test_parse_source_accepts_and_refuses(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "urls.csv").write_text("url\nhttps://example.com/v/1\n")
    (tmp_path / "clip.mp4").write_bytes(b"x")
    assert parse_source("ytsearch5:lipstick ad", "cosmetics") == SourceSpec("search", "ytsearch5:lipstick ad", "cosmetics")
    assert parse_source("bilisearch3:口红").kind == "search"
    assert parse_source("https://www.youtube.com/@brand/videos").kind == "url"
    assert parse_source(str(tmp_path / "folder")).kind == "folder"
    assert parse_source(str(tmp_path / "urls.csv")).kind == "url_file"
    for bad in ("file:///etc/passwd", "ftp://example.com/a.mp4", "javascript:alert(1)", "just words",
                "http:///nohost", "nosuchsearch5:x", str(tmp_path / "clip.mp4")):
        with pytest.raises(UnsafeSourceError, match="not crawled|not a source"):
            parse_source(bad)
    for missing in (str(tmp_path / "missing.txt"), "./ads", "urls.csv"):
        with pytest.raises(UnsafeSourceError, match="no such file or folder"):
            parse_source(missing)


def test_cli_refuses_bad_sources_with_one_line(tmp_path: Path) -> None:
    common = ["--data-root", str(tmp_path / "d"), "--manifest", str(tmp_path / "m.parquet")]
    for args, needle in ((["-c", "food", "-s", "file:///etc/passwd"], "only http(s)"),
                         (["-c", "spaceships"], "unknown category 'spaceships'"),
                         ([], "give --category")):
        run = CliRunner().invoke(command, args + common)
        assert run.exit_code == 2, run.output
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and needle in errors[0], run.stderr
    assert not (tmp_path / "m.parquet").exists() and not (tmp_path / "d").exists()
    help_text = CliRunner().invoke(command, ["--help"]).output
    assert "Examples:" in help_text and "c98k fetch --category cosmetics --limit 50" in help_text


def test_ytdlp_params_carry_the_flags(tmp_path: Path) -> None:
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n")
    opts = YtdlpOptions(max_height=360, sleep_s=1.5, retries=4, cookies=str(cookies))
    params = ytdlp_params(opts, _CaptureLogger())
    assert params["cookiefile"] == str(cookies) and params["sleep_interval"] == 1.5
    assert params["retries"] == params["fragment_retries"] == 4 and params["quiet"] and params["noprogress"]
    assert opts.format_selector().startswith("bv*[height<=?360]+ba")
    assert YtdlpOptions(format="18").format_selector() == "18"
    for i, full in enumerate([2.0, 4.0, 8.0]):  # exponential with jitter: half to all of the step
        waits = {opts.backoff(i) for _ in range(20)}
        assert all(full / 2 <= w <= full for w in waits) and len(waits) > 1
    assert YtdlpOptions(retry_backoff_s=30).backoff(5) <= 60
    deno = params["js_runtimes"]["deno"]["path"]  # the venv's deno, handed to yt-dlp explicitly
    assert Path(deno).is_file() and Path(deno).parent == Path(sys.executable).parent


def test_classify_error_statuses() -> None:
    from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError, UnsupportedError

    def wrapped(e: Exception) -> DownloadError:
        return DownloadError(f"ERROR: {e}", (type(e), e, None))

    assert classify_error(wrapped(UnsupportedError("http://x/")))[0] == "unsupported"
    geo = classify_error(wrapped(GeoRestrictedError("This video is not available from your location")))
    assert geo[0] == "skipped" and "location" in geo[1]
    dead = classify_error(wrapped(ExtractorError("Unable to download webpage: HTTP Error 404: Not Found")))
    assert dead[0] == "failed" and not dead[2]
    busy = classify_error(wrapped(ExtractorError("Unable to download webpage: HTTP Error 503: Unavailable")))
    assert busy[0] == "failed" and busy[2]
    login = classify_error(wrapped(ExtractorError("Sign in to confirm your age")))
    assert "--cookies" in login[1]


# --- the shop server ---------------------------------------------------------------------------

def test_catalog_server_ranges_types_and_safety(shop_media: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        CatalogServer(shop_media, {}, host="0.0.0.0")
    with pytest.raises(ValueError, match="plain file names"):
        CatalogServer(shop_media, {"food": ["../secret.mp4"]})
    name = "big_buck_bunny_0_30.webm"
    data = (shop_media / name).read_bytes()
    with CatalogServer(shop_media, {"food": [name]}) as shop:
        url = shop.media_url(name)
        with urllib.request.urlopen(url) as r:
            assert r.headers["Content-Type"] == "video/webm" and r.read() == data
        req = urllib.request.Request(url, headers={"Range": "bytes=100-199"})
        with urllib.request.urlopen(req) as r:
            assert r.status == 206 and r.read() == data[100:200]
            assert r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=-10"})) as r:
            assert r.read() == data[-10:]
        for bad in (f"bytes={len(data)}-", "bytes=5-2", "lines=1-2"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(urllib.request.Request(url, headers={"Range": bad}))
            assert e.value.code == 416
        for path in ("/media/pyscenedetect_testvideo.mp4", "/media/..%2Fshop%2Fx.mp4", "/food/v/nope.html", "/x"):
            with pytest.raises(urllib.error.HTTPError) as e:  # only files listed in pages are served
                urllib.request.urlopen(shop.base_url + path)
            assert e.value.code == 404
        page = urllib.request.urlopen(shop.category_url("food")).read().decode()
        assert shop.video_page_url("food", name) in page and 'property="og:video"' in page
        assert [h.range_start for h in shop.media_hits(name)] == [None, 100, len(data) - 10]


# --- URL files and local folders ----------------------------------------------------------------

def test_url_files_txt_csv_parquet(tmp_path: Path, shop_media: Path) -> None:
    manifest, data = tmp_path / "videos.parquet", tmp_path / "data"
    with CatalogServer(shop_media, {"food": ["big_buck_bunny_0_30.webm", "videollava_sample_demo_22.mp4"],
                                    "digital": ["pyscenedetect_testvideo.mp4"]}) as shop:
        bunny = shop.video_page_url("food", "big_buck_bunny_0_30.webm")
        demo = shop.video_page_url("food", "videollava_sample_demo_22.mp4")
        quiet = shop.video_page_url("digital", "pyscenedetect_testvideo.mp4")
        txt = tmp_path / "urls.txt"
        txt.write_text(f"# product videos\n{bunny}\n\nfile:///etc/passwd\n{shop.base_url}/food/v/gone.html\n")
        csv = tmp_path / "urls.csv"
        csv.write_text(f"url,category\n{demo},apparel\n{quiet},\n{bunny},food\n")
        table = tmp_path / "urls.parquet"
        pq.write_table(pa.table({"url": [shop.category_url("digital")], "category": ["digital"]}), table)

        r1 = fetch("food", [str(txt)], manifest=manifest, data_root=data, options=FAST, progress=False)
        r2 = fetch("digital", [str(csv)], manifest=manifest, data_root=data, options=FAST, progress=False)
        r3 = fetch(None, [str(table)], manifest=manifest, data_root=data, options=FAST, progress=False)
    rows = {r["video_id"]: r for r in read_manifest(manifest, "videos").to_pylist()}
    assert (r1.planned, r2.planned, r3.planned) == (3, 3, 1)
    assert (r2.known, r3.known) == (1, 1)  # bunny from the txt, the quiet video from the csv
    bad = [r for r in rows.values() if r["url"] == "file:///etc/passwd"]
    assert len(bad) == 1 and bad[0]["status"] == "unsupported" and "only http(s)" in bad[0]["error"]
    gone = [r for r in rows.values() if r["url"] == f"{shop.base_url}/food/v/gone.html"]
    assert len(gone) == 1 and gone[0]["status"] == "failed" and "HTTP Error 404" in gone[0]["error"]
    assert rows["generic-big_buck_bunny_0_30"]["category"] == "food"
    assert rows["generic-big_buck_bunny_0_30"]["query"] == str(txt)
    assert rows["generic-videollava_sample_demo_22"]["category"] == "apparel"  # the csv column wins
    assert rows["generic-pyscenedetect_testvideo"]["category"] == "digital"  # blank: the --category
    assert rows["generic-pyscenedetect_testvideo"]["status"] == "no_audio"
    assert len(rows) == 5


def test_local_folder_source(tmp_path: Path, shared_media: Path) -> None:
    folder = tmp_path / "ads"
    (folder / "sub").mkdir(parents=True)
    for name in ("videollava_sample_demo_22.mp4", "big_buck_bunny_0_30.webm"):
        (folder / name).write_bytes((shared_media / "videos" / name).read_bytes())
    (folder / "sub" / "videollava_sample_demo_22.mp4").write_bytes(b"not a video at all" * 100)
    (folder / "notes.txt").write_text("ignored")
    manifest, data = tmp_path / "videos.parquet", tmp_path / "data"
    result = fetch("food", [str(folder)], manifest=manifest, data_root=data, progress=False)
    assert result.planned == 3 and result.counts == {"ok": 2, "failed": 1}
    rows = read_manifest(manifest, "videos").to_pylist()
    ids = sorted(r["video_id"] for r in rows)
    assert len(set(ids)) == 3 and all(i.startswith("local-") for i in ids)
    stems = sorted(r["platform_id"].rsplit("-", 1)[0] for r in rows)
    assert stems == ["big_buck_bunny_0_30", "videollava_sample_demo_22", "videollava_sample_demo_22"]
    for r in rows:
        assert r["platform"] == "local" and r["category"] == "food" and r["query"] == str(folder)
        if r["status"] == "ok":
            path = data / r["video_path"]
            assert path.parent == data / "videos" and r["content_sha256"] == sha256_file(path)
            assert r["fetcher"].startswith("commercial98k-local")
        else:
            assert "MediaError" in r["error"] and r["video_path"] is None
    assert fetch("food", [str(folder)], manifest=manifest, data_root=data, progress=False).counts == {}


def test_transient_errors_are_retried_with_backoff(tmp_path: Path, shop_media: Path) -> None:
    name = "videollava_sample_demo_22.mp4"
    flaky = {"/food/v/videollava_sample_demo_22.html": 2, f"/media/{name}": 1}
    with CatalogServer(shop_media, {"food": [name]}, flaky=flaky) as shop:
        page = shop.video_page_url("food", name)
        txt = tmp_path / "urls.txt"
        txt.write_text(shop.category_url("food") + "\n")
        ok = fetch("food", [str(txt)], manifest=tmp_path / "a.parquet", data_root=tmp_path / "a",
                   options=YtdlpOptions(retries=2, retry_backoff_s=0.01), progress=False)
        assert ok.counts == {"ok": 1} and shop.requests["/food/v/videollava_sample_demo_22.html"] == 3
        assert shop.requests[f"/media/{name}"] == 2 and len(shop.media_hits(name)) == 1  # yt-dlp's own retry
        shop.flaky["/food/v/videollava_sample_demo_22.html"] = 1
        b = {"manifest": tmp_path / "b.parquet", "data_root": tmp_path / "b", "progress": False,
             "options": YtdlpOptions(retries=0)}
        failed = fetch("food", [page], **b)
        row = read_manifest(b["manifest"], "videos").to_pylist()[0]
        assert failed.counts == {"failed": 1} and "HTTP Error 503" in row["error"]
        assert fetch("food", [page], **b).counts == {}  # failed rows are final unless retried
        retried = fetch("food", [page], retry_failed=True, **b)
    assert retried.counts == {"ok": 1, "skipped": 1}
    rows = {r["video_id"]: r for r in read_manifest(b["manifest"], "videos").to_pylist()}
    assert rows["generic-videollava_sample_demo_22"]["status"] == "ok"
    assert rows[row["video_id"]]["status"] == "skipped"
    assert rows[row["video_id"]]["error"] == "superseded by generic-videollava_sample_demo_22"
