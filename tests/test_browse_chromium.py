"""``c98k browse`` in a real browser: headless Chromium (Debian's package, driven by Playwright; no
browser download) against a small generated corpus served by uvicorn.

The grid shows the clips, a filter narrows them, a clip plays within its span of the source video,
corrections saved from the page land in the corrections file, and the next build-shards uses them.
Skips (with the reason) only where Chromium or Playwright is not installed, never under CI.
Set ``C98K_BROWSE_SCREENSHOT=docs/browse.png`` to keep the page's screenshot.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_browse_app import make_browse_corpus, served

from commercial98k.manifest.corrections import load_corrections
from commercial98k.manifest.io import read_manifest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _need(ok: bool, reason: str) -> None:
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI installs it (make setup: scripts/install_system_deps.sh, requirements.lock)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    _need(sync_playwright is not None, "the playwright package is not installed (pip install -r requirements.lock)")
    _need(os.path.exists(CHROMIUM), f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                                    "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


def _cards(page) -> list[str]:
    return page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.clipId)")


def test_grid_filter_playback_and_corrections_in_chromium(browser, tmp_path):
    from commercial98k.browse.app import create_app
    from commercial98k.export.shards import build_shards

    manifest, root = make_browse_corpus(tmp_path, n_clips=40)
    rows = read_manifest(manifest).to_pylist()
    ids = [r["clip_id"] for r in rows]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    with served(create_app(manifest, root, who="chromium-test")) as base:
        page.goto(base + "/")
        page.wait_for_function("n => document.querySelectorAll('.card').length === n", arg=len(rows))
        assert _cards(page) == ids
        # the first page is streamed; the count follows once the index is built
        page.wait_for_function("() => document.querySelector('#count').textContent.endsWith('of 40')")
        assert page.eval_on_selector_all("select[name=category] option", "os => os.length") > 1

        # a filter narrows the grid: the free text matches titles "... spot 1", "... spot 10".."spot 19"
        page.fill("input[name=text]", "spot 1")
        page.wait_for_function("() => document.querySelectorAll('.card').length === 11")
        assert _cards(page) == [r["clip_id"] for r in rows if r["title"].split()[-1].startswith("1")]
        page.check("input[name=disagree]")
        page.wait_for_function("() => document.querySelectorAll('.card').length === 2")  # spot 12 and 16
        page.click("#clear-filters")
        page.wait_for_function("n => document.querySelectorAll('.card').length === n", arg=len(rows))

        # a clip plays its span of the source video (H.264 mp4), then stops at its end
        clip = rows[2]
        card = f".card[data-clip-id='{clip['clip_id']}']"
        page.click(f"{card} .play")
        video = f"{card} video"
        page.wait_for_function(f"() => document.querySelector(\"{video}\").currentTime > {clip['clip_start_s'] + 0.5}",
                               timeout=20_000)
        start, end = clip["clip_start_s"], clip["clip_end_s"]
        now = page.eval_on_selector(video, "v => v.currentTime")
        assert start <= now <= end + 0.3
        page.wait_for_function(f"() => document.querySelector(\"{video}\").paused", timeout=20_000)
        assert start + 2.0 < page.eval_on_selector(video, "v => v.currentTime") <= end + 0.35

        # corrections from the page: a category, and an unusable mark with its reason
        target = rows[4]
        new_cat = next(c for c in ("food", "apparel", "digital") if c != target["category"])
        card = f".card[data-clip-id='{target['clip_id']}']"
        page.click(f"{card} details.correct summary")
        page.select_option(f"{card} .fix-category", new_cat)
        page.click(f"{card} .set-category")
        page.wait_for_selector(f"{card} .msg.ok")
        card = f".card[data-clip-id='{rows[6]['clip_id']}']"
        page.click(f"{card} details.correct summary")
        page.click(f"{card} .set-unusable")  # no reason yet: the server refuses it, the card says why
        page.wait_for_selector(f"{card} .msg.err")
        assert "reason" in page.text_content(f"{card} .msg")
        page.fill(f"{card} .fix-reason", "a slideshow, no ad")
        page.click(f"{card} .set-unusable")
        page.wait_for_selector(f"{card} .msg.ok")

        # "all clips of this track" in one click, and a music-id join rejected there
        page.click(f".card[data-clip-id='{rows[1]['clip_id']}'] .music-link")
        page.wait_for_function("() => document.querySelectorAll('.card').length === 2")
        assert _cards(page) == [rows[1]["clip_id"], rows[3]["clip_id"]]
        card = f".card[data-clip-id='{rows[3]['clip_id']}']"
        page.click(f"{card} details.correct summary")
        page.click(f"{card} .join-reject")
        page.wait_for_selector(f"{card} .msg.ok")
        page.click("#scope button")

        # the failures view lists the stopped rows by cause and opens them in the grid
        page.click("#tab-failures")
        page.wait_for_selector("#failures tbody td")
        page.click("#failures tbody tr:first-child a")
        page.wait_for_function("() => document.querySelectorAll('.card.stopped').length === 2")
        shot = tmp_path / "browse.png"
        page.click("#scope button")
        page.wait_for_function("n => document.querySelectorAll('.card').length === n", arg=len(rows))
        page.screenshot(path=str(shot))
    assert not errors, errors
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("C98K_BROWSE_SCREENSHOT"):
        shutil.copyfile(shot, Path(os.environ["C98K_BROWSE_SCREENSHOT"]))

    saved = {(c.clip_id, c.kind): c for c in load_corrections(manifest)}
    assert saved[(target["clip_id"], "category")].value == new_cat
    assert saved[(target["clip_id"], "category")].who == "chromium-test"
    assert saved[(rows[6]["clip_id"], "unusable")].reason == "a slideshow, no ad"
    join = saved[(rows[3]["clip_id"], "music_join")]
    assert (join.value, join.other) == ("reject", rows[1]["clip_id"])

    # the next build-shards uses them
    index = build_shards(manifest, tmp_path / "shards", root, progress=False)
    assert index["corrections"]["categories"] == 1
    assert index["corrections"]["unusable"] == {"a slideshow, no ad": 1}
    assert index["corrections"]["rejected_joins"] == 1
    usable = [r for r in rows if r["status"] == "ok" and r["has_music"]]
    assert sum(s["samples"] for s in index["splits"].values()) == len(usable) - 1
    sources = {src: n for per in index["category_sources"].values() for src, n in per.items()}
    assert sources.get("corrected") == 1
