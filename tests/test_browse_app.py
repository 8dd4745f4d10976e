"""``c98k browse``: the API (grid, filters, paging, failures, corrections), media with HTTP Range,
thumbnails (what is never served or accepted: ``test_browse_security.py``).

The corpus is ``synthetic.make_labelled_corpus`` (features, so build-shards runs on it) with two
tiny generated videos and the label columns the grid shows (``make_browse_corpus``).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from synthetic import make_labelled_corpus

from commercial98k.manifest.corrections import corrections_path, load_corrections
from commercial98k.manifest.io import read_manifest, write_manifest, write_rows_part
from commercial98k.manifest.status import record

starlette_testclient = pytest.importorskip("starlette.testclient", reason="httpx is needed by Starlette's TestClient")

VIDEOS = {"videos/ad-a.mp4": ("libx264", 14.0), "videos/ad-b.webm": ("libvpx", 14.0)}


def _video(path: Path, codec: str, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = ["-pix_fmt", "yuv420p", "-preset", "ultrafast", "-movflags", "+faststart"] if codec == "libx264" \
        else ["-b:v", "200k", "-deadline", "realtime", "-cpu-used", "8"]
    acodec = ["-c:a", "aac"] if codec == "libx264" else ["-c:a", "libvorbis"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s=192x108:r=12:d={seconds}",
                    "-f", "lavfi", "-i", f"sine=f=440:d={seconds}", "-c:v", codec, *extra, *acodec, "-shortest",
                    str(path)], check=True)


def generated_videos(folder: Path) -> Path:
    """The corpus's two videos, generated once into ``folder`` (corpora copy them from there)."""
    for rel, (codec, seconds) in VIDEOS.items():
        if not (folder / rel).exists():
            _video(folder / rel, codec, seconds)
    return folder


def make_browse_corpus(tmp_path: Path, n_clips: int = 16, videos: Path | None = None) -> tuple[Path, Path]:
    """A labelled clips manifest of ``n_clips`` over two real (generated) videos, with the grid's columns:
    disagreeing predictions, category and emotion probabilities, tags with sources, on-screen text,
    one shared music id; from 10 clips on, two split ``no_music`` rows and a label failure."""
    manifest, root = make_labelled_corpus(tmp_path, n_clips=n_clips, failed_share=0.0, clips_per_video=2)
    videos = generated_videos(videos or tmp_path / "generated")
    for rel in VIDEOS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(videos / rel, root / rel)
    rows = read_manifest(manifest).to_pylist()
    cats = sorted({r["category"] for r in rows})
    for i, r in enumerate(rows):
        video = list(VIDEOS)[i % 2]
        start = 1.0 + 2.0 * (i % 5)
        pred = cats[(cats.index(r["category"]) + 1) % len(cats)] if i % 4 == 0 else r["category"]
        probs = {c: (0.7 if c == pred else 0.3 / (len(cats) - 1)) for c in cats}
        r.update(video_path=video, clip_start_s=start, clip_end_s=start + 3.0, duration_s=14.0,
                 music_start_s=start, music_end_s=start + 3.0,
                 predicted_category=pred, category_probs=probs, category_confidence=probs[r["category"]],
                 title=f"{r['category']} spot {i}", ocr_text=f"SALE {i} | shop now" if i % 3 == 0 else None,
                 tag_sources=["page"] * len(r["tags"] or []), fetch_status="ok", split_status="ok",
                 label_status="ok", clip_path=None)
    rows[1]["music_id"] = rows[3]["music_id"] = "m-000000shared"
    if len(rows) >= 10:
        for i in (5, 7):
            rows[i] = record({**rows[i], "has_music": False, "music_id": None}, "split", "no_music",
                             f"fingerprint of 'v{i}' is silence")
        rows[9] = record(rows[9], "label", "failed", "MediaError: videos/ad-b.webm: no frames at 12.5 s")
    write_manifest(rows, manifest, kind="clips")
    return manifest, root


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    return generated_videos(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, videos) -> tuple[Path, Path]:
    return make_browse_corpus(tmp_path_factory.mktemp("browse"), videos=videos)


@contextlib.contextmanager
def served(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port in a thread; yields the base URL."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the browse server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def client_for(manifest: Path, root: Path, **kw):
    from commercial98k.browse.app import create_app

    app = create_app(manifest, root, who="tester", **kw)
    app.state.browser.index.wait()
    return starlette_testclient.TestClient(app, base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def client(corpus):
    return client_for(*corpus)


def clips(client, **params) -> dict:
    r = client.get("/api/clips", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_grid_rows_carry_what_a_card_shows(client, corpus):
    page = clips(client, limit=60)
    rows = read_manifest(corpus[0]).to_pylist()
    assert page["total"] == len(rows) and [r["clip_id"] for r in page["rows"]] == [r["clip_id"] for r in rows]
    first = page["rows"][0]
    assert first["predicted_category"] != first["category"]  # row 0 disagrees by construction
    assert first["p_predicted"] == pytest.approx(0.7)
    assert len(first["top_emotions"]) == 3
    probs = rows[0]["emotion_probs"]
    assert [e for e, _ in first["top_emotions"]] == [k for k, _ in sorted(probs, key=lambda kv: -kv[1])][:3]
    assert first["ocr_text"] == "SALE 0 | shop now" and first["video_path"] == "videos/ad-a.mp4"
    stopped = {r["clip_id"]: r for r in page["rows"] if r["status"] != "ok"}
    assert {r["stopped"] for r in stopped.values()} == {"split no_music", "label failed"}
    assert all(r["error"] for r in stopped.values())


def test_filters_sort_and_paging(client, corpus):
    rows = read_manifest(corpus[0]).to_pylist()
    cat = rows[2]["category"]
    assert {r["category"] for r in clips(client, category=cat)["rows"]} == {cat}
    disagree = clips(client, disagree="true")
    assert disagree["total"] == sum(r["predicted_category"] != r["category"] for r in rows) > 0
    low = clips(client, conf_min="0", conf_max="0.5")
    assert low["total"] == sum(r["category_confidence"] <= 0.5 for r in rows)
    ranked = [r["category_confidence"] for r in clips(client, sort="-confidence")["rows"]]
    assert ranked == sorted(ranked, reverse=True)
    emotion = rows[0]["emotion"]
    assert {r["emotion"] for r in clips(client, emotion=emotion)["rows"]} == {emotion}
    assert clips(client, status="no_music")["total"] == 2
    assert [r["clip_id"] for r in clips(client, music_id="m-000000shared")["rows"]] == \
        [rows[1]["clip_id"], rows[3]["clip_id"]]
    assert clips(client, text="sale 4")["total"] == 0 and clips(client, text="sale 6")["total"] == 1  # OCR
    assert clips(client, text="SPOT 1")["total"] == 7  # title: spot 1, 10..15
    tag = next(t for r in rows for t in (r["tags"] or []))
    assert clips(client, text=tag)["total"] == sum(tag in " ".join(r["tags"] or []) or tag in r["title"]
                                                   for r in rows)
    pages = [clips(client, limit=5, offset=o)["rows"] for o in (0, 5, 10, 15)]
    assert [r["clip_id"] for p in pages for r in p] == [r["clip_id"] for r in rows]


@pytest.mark.parametrize("params, field", [({"limit": "0"}, "limit"), ({"conf_min": "high"}, "conf_min"),
                                           ({"conf_max": "2"}, "conf_max"), ({"sort": "title"}, "sort"),
                                           ({"colour": "red"}, "colour"), ({"disagree": "maybe"}, "disagree")])
def test_bad_query_is_a_400_naming_the_parameter(client, params, field):
    r = client.get("/api/clips", params=params)
    assert r.status_code == 400 and r.json()["error"].startswith(f"error: {field}:")


def test_streamed_pages_equal_indexed_pages(corpus):
    from commercial98k.browse.index import build_index
    from commercial98k.browse.queries import Query, run_query, stream_query

    data = build_index(corpus[0])
    for q in (Query(limit=4, offset=3), Query(disagree=True, limit=2, offset=1), Query(text="spot 1", limit=50),
              Query(status="ok", conf_max=0.5, limit=3, offset=2)):
        streamed = stream_query(corpus[0], q, batch_rows=3)
        assert [r["clip_id"] for r in streamed["rows"]] == [r["clip_id"] for r in run_query(data, q)["rows"]]


def test_index_follows_new_manifest_parts(tmp_path, videos):
    manifest, root = make_browse_corpus(tmp_path, n_clips=6, videos=videos)
    c = client_for(manifest, root)
    row = read_manifest(manifest).to_pylist()[2]
    write_rows_part(manifest, "clips", [{**row, "title": "a retitled clip"}])
    c.app.state.browser.index.wait()
    page = clips(c, text="retitled")
    assert page["total"] == 1 and page["rows"][0]["clip_id"] == row["clip_id"]
    assert clips(c)["total"] == 6  # the part replaced the row, it did not add one


def test_failures_grouped_by_stage_and_normalised_cause(client):
    r = client.get("/api/failures")
    groups = {(g["stopped"], g["cause"]): g for g in r.json()["groups"]}
    assert groups[("split no_music", "fingerprint of '<…>' is silence")]["count"] == 2
    label = next(g for (s, _), g in groups.items() if s == "label failed")
    assert label["count"] == 1 and label["stage"] == "label" and "<path>" in label["cause"]
    page = clips(client, stopped="split no_music", cause="fingerprint of '<…>' is silence")
    assert page["total"] == 2 and all(r["video_path"] for r in page["rows"])


def test_media_is_served_with_http_range(client, corpus):
    data = (corpus[1] / "videos/ad-a.mp4").read_bytes()
    whole = client.get("/media/videos/ad-a.mp4")
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    part = client.get("/media/videos/ad-a.mp4", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert client.get("/media/videos/ad-a.mp4", headers={"Range": f"bytes={len(data) + 10}-"}).status_code == 416


@pytest.mark.parametrize("video", list(VIDEOS))
def test_thumbnail_is_the_frame_at_its_time(client, corpus, video):
    import io

    import numpy as np
    from PIL import Image

    from commercial98k.media.ffmpeg_io import load_frames

    def thumb(t: float) -> np.ndarray:
        r = client.get("/thumb", params={"video": video, "t": str(t)})
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), np.float32)

    truth = load_frames(corpus[1] / video, fps=12, size=(192, 108), start_s=7.5, duration_s=0.2)[0]
    at, other = thumb(7.5), thumb(2.0)
    assert at.shape == truth.shape
    assert np.abs(at - truth).mean() < np.abs(other - truth).mean() / 2  # testsrc2 moves: another time differs
    assert client.get("/thumb", params={"video": video, "t": "soon"}).status_code == 400


def test_corrections_are_saved_at_once_with_who_and_when(tmp_path, videos):
    manifest, root = make_browse_corpus(tmp_path, n_clips=6, videos=videos)
    c = client_for(manifest, root)
    ids = [r["clip_id"] for r in read_manifest(manifest).to_pylist()]
    r = c.post("/api/corrections", json={"clip_id": ids[0], "kind": "category", "value": "food"})
    assert r.status_code == 201, r.text
    r = c.post("/api/corrections", json={"clip_id": ids[1], "kind": "unusable", "reason": "a slideshow",
                                         "who": "ana"})
    assert r.status_code == 201
    r = c.post("/api/corrections", json={"clip_id": ids[2], "kind": "music_join", "value": "reject",
                                         "other": ids[3]})
    assert r.status_code == 201
    saved = {(x.clip_id, x.kind): x for x in load_corrections(manifest)}
    assert saved[(ids[0], "category")].value == "food" and saved[(ids[0], "category")].who == "tester"
    assert saved[(ids[1], "unusable")].who == "ana" and saved[(ids[1], "unusable")].reason == "a slideshow"
    assert saved[(ids[2], "music_join")].other == ids[3] and saved[(ids[2], "music_join")].when.endswith("+00:00")
    page = clips(c, corrected="true")
    assert [r["clip_id"] for r in page["rows"]] == ids[:3]
    assert page["rows"][0]["corrections"][0]["value"] == "food"
    c.post("/api/corrections", json={"clip_id": ids[0], "kind": "category", "value": "apparel"})
    assert [x.value for x in load_corrections(manifest) if x.clip_id == ids[0]] == ["apparel"]
    assert read_manifest(manifest).num_rows == 6  # the manifest itself is never rewritten


def test_empty_manifest_serves_an_empty_grid(tmp_path):
    from commercial98k.manifest.schema import CLIP_SCHEMA

    manifest = tmp_path / "empty.parquet"
    write_manifest(pa.Table.from_pylist([], schema=CLIP_SCHEMA), manifest, kind="clips")
    (tmp_path / "data").mkdir()
    c = client_for(manifest, tmp_path / "data")
    assert clips(c) == {"total": 0, "offset": 0, "rows": [], "indexing": False}
    assert c.get("/api/failures").json()["groups"] == []


def test_first_page_streams_before_the_index(corpus):
    from commercial98k.browse.app import create_app

    c = starlette_testclient.TestClient(create_app(*corpus), base_url="http://127.0.0.1")
    assert c.get("/api/meta").json()["indexing"] is True
    first = clips(c, limit=5, text="spot")
    assert first["total"] is None and len(first["rows"]) == 5  # streamed, not counted
    c.app.state.browser.index.wait()
    counted = clips(c, limit=5, text="spot")
    assert counted["total"] == 16 and counted["rows"] == first["rows"]
    meta = c.get("/api/meta").json()
    assert meta["indexing"] is False and meta["facets"]["rows"] == 16
    assert "<title>c98k browse</title>" in c.get("/").text and c.get("/static/app.js").status_code == 200


def test_a_broken_corrections_file_is_one_error_line(tmp_path, videos):
    manifest, root = make_browse_corpus(tmp_path, n_clips=4, videos=videos)
    corrections_path(manifest).write_text("{ not json")
    c = client_for(manifest, root)
    c = starlette_testclient.TestClient(c.app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    r = c.get("/api/clips")
    assert r.status_code == 500
    assert r.json()["error"].startswith("error: ") and "corrections.json: not JSON" in r.json()["error"]


def test_a_nan_in_the_manifest_is_null_in_json(tmp_path, videos):
    manifest, root = make_browse_corpus(tmp_path, n_clips=4, videos=videos)
    row = read_manifest(manifest).to_pylist()[1]
    write_rows_part(manifest, "clips", [{**row, "category_confidence": float("nan"), "valence": float("nan")}])
    page = clips(client_for(manifest, root), limit=10)
    shown = next(r for r in page["rows"] if r["clip_id"] == row["clip_id"])
    assert shown["category_confidence"] is None and shown["valence"] is None


def test_match_cache_pages_like_a_fresh_query(corpus):
    from commercial98k.browse.index import build_index
    from commercial98k.browse.queries import MatchCache, Query, run_query

    data, cache = build_index(corpus[0]), MatchCache(size=2)
    for q in (Query(disagree=True, limit=2), Query(disagree=True, limit=2, offset=2),
              Query(disagree=True, sort="-confidence", limit=3), Query(text="spot", corrected=True),
              Query(text="spot", limit=4, offset=4), Query(disagree=True, limit=2, offset=1)):
        for corrections in ({}, {"synth-v00000-c000": []}):
            assert run_query(data, q, corrections, cache) == run_query(data, q, corrections)
    rebuilt = build_index(corpus[0])  # a new index (the manifest changed): nothing of the old one is reused
    assert cache.rows(rebuilt, Query(disagree=True), set()) is not cache.rows(data, Query(disagree=True), set())


def test_text_rows_matches_within_one_row_only():
    from commercial98k.browse.queries import text_rows

    search = pa.array(["red lipstick\x1fsale", "", None, "kick\x1f口红 新品", "ab", "cde"], pa.large_string())
    assert text_rows(search, "LIPSTICK").tolist() == [True, False, False, False, False, False]
    assert text_rows(search, "ck").tolist() == [True, False, False, True, False, False]
    assert text_rows(search, "口红").tolist() == [False, False, False, True, False, False]
    assert not text_rows(search, "bc").any()  # "ab" + "cde" are two rows: no match across them
    assert not text_rows(search, "lipstick sale").any()  # nor across two fields of a row
    assert text_rows(search.slice(3), "kick").tolist() == [True, False, False]


def test_an_absolute_video_path_inside_the_root_plays(tmp_path, videos):
    manifest, root = make_browse_corpus(tmp_path, n_clips=4, videos=videos)
    row = read_manifest(manifest).to_pylist()[0]
    write_rows_part(manifest, "clips", [{**row, "video_path": str(root.resolve() / row["video_path"])}])
    c = client_for(manifest, root)
    shown = next(r for r in clips(c)["rows"] if r["clip_id"] == row["clip_id"])
    assert shown["video_path"] == row["video_path"]
    assert c.get(f"/media/{shown['video_path']}").status_code == 200
