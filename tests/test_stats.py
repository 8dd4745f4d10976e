"""Manifest statistics and the HTML report (commercial98k.export.stats, c98k stats)."""

from __future__ import annotations

import re
from collections import Counter

from click.testing import CliRunner
from synthetic import make_labelled_corpus

from commercial98k.export.stats import format_summary, summarize, write_report
from commercial98k.manifest.io import read_manifest, write_manifest
from pipelines.cli import main as cli


def test_summary_counts_match_the_manifest(tmp_path):
    manifest, _ = make_labelled_corpus(tmp_path, n_clips=120, seed=2, failed_share=0.1)
    rows = read_manifest(manifest).to_pylist()
    s = summarize(read_manifest(manifest), top_n=5)
    assert s["kind"] == "clips" and s["rows"] == len(rows)
    for cat, counts in s["per_category"].items():
        assert counts == dict(Counter(r["status"] for r in rows if r["category"] == cat))
    assert s["failures_by_cause"] == dict(Counter(r["error"] for r in rows if r["status"] != "ok"))
    music = Counter(r["music_id"] for r in rows)
    assert s["music"]["tracks"] == len(music) and s["music"]["max_clips_per_track"] == max(music.values())
    assert sum(k * v for k, v in s["music"]["clips_per_track"].items()) == len(rows)
    assert s["top_tags"] == Counter(t for r in rows for t in r["tags"] or []).most_common(5)
    assert s["emotion_labelled"] == sum(r["valence"] is not None for r in rows)


def test_html_report_has_the_plots(tmp_path):
    manifest, _ = make_labelled_corpus(tmp_path, n_clips=60, seed=4, failed_share=0.1)
    report = tmp_path / "reports" / "stats.html"
    write_report(manifest, report)
    page = report.read_text()
    for title in ("Rows per category", "Durations", "Valence / arousal", "Top tags", "Music reuse", "Failures by cause"):
        assert title in page
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 6 and all(len(b) > 1000 for b in images)


def test_unlabelled_and_videos_manifests(tmp_path):
    clips = [{"video_id": f"v{i}", "clip_id": f"v{i}-c000", "status": "ok", "category": "food",
              "clip_start_s": 0.0, "clip_end_s": 5.0 + i, "duration_s": 20.0} for i in range(4)]
    path = write_manifest(clips, tmp_path / "c98k.parquet", kind="clips")
    report = tmp_path / "clips.html"
    s = write_report(path, report)
    assert s["emotion_labelled"] == 0 and s["music"]["tracks"] == 0 and s["duration_s"]["count"] == 4
    page = report.read_text()
    assert page.count("data:image/png") == 2 and page.count("no data in the manifest yet") == 4

    videos = [{"video_id": "a", "status": "ok", "category": "pets", "duration_s": 30.0, "platform_tags": ["dog"]},
              {"video_id": "b", "status": "failed", "category": "pets", "error": "DownloadError: HTTP 404"}]
    vpath = write_manifest(videos, tmp_path / "videos.parquet", kind="videos")
    res = CliRunner().invoke(cli, ["stats", "--manifest", str(vpath), "--report", str(tmp_path / "v.html")])
    assert res.exit_code == 0, res.output
    assert "videos manifest: 2 rows" in res.output and "1  DownloadError: HTTP 404" in res.output
    assert "dog (1)" in res.output and (tmp_path / "v.html").is_file()
    bad = CliRunner().invoke(cli, ["stats", "--manifest", str(tmp_path / "missing.parquet"), "--no-report"])
    assert bad.exit_code == 1 and "no such manifest" in bad.output


def test_predicted_vs_crawl_category_flags_strong_disagreements(tmp_path):
    manifest, _ = make_labelled_corpus(tmp_path, n_clips=60, seed=4)
    rows = read_manifest(manifest).to_pylist()
    ok = [r for r in rows if r["status"] == "ok" and r["category"] != "pets"]
    wrong = {r["clip_id"] for r in ok[:5]}
    edited = [dict(r, predicted_category="pets", category_confidence=0.05) if r["clip_id"] in wrong else r
              for r in rows]
    path = write_manifest(edited, tmp_path / "edited.parquet", kind="clips")
    pvc = summarize(read_manifest(path))["predicted_vs_crawl"]
    crawl_of = {r["clip_id"]: r["category"] for r in ok[:5]}
    assert sum(pvc["strong_disagreements"].values()) == 5
    assert pvc["strong_disagreements"] == dict(Counter(crawl_of.values()))
    for crawl, n in Counter(crawl_of.values()).items():
        assert pvc["table"][crawl]["pets"] >= n
    res = CliRunner().invoke(cli, ["stats", "--manifest", str(path), "--no-report"])
    assert res.exit_code == 0, res.output
    assert "predicted vs crawl category" in res.output and "strongly disagree" in res.output


def test_failures_are_grouped_by_normalised_cause_and_rows_by_where_they_stopped(tmp_path):
    from commercial98k.export.stats import _error_cause

    errors = ["ERROR: [generic] x: Unable to download webpage: HTTP Error 404: Not Found",
              "ERROR: [generic] y: Unable to download webpage: HTTP Error 404: Not Found",
              "ERROR: [generic] 'file:///tmp/a.mp4' is not a valid URL",
              "ERROR: [generic] 'javascript:alert(1)' is not a valid URL",
              "ERROR: [generic] z: Unable to download webpage: HTTP Error 403: Forbidden"]
    assert _error_cause(errors[0]) == _error_cause(errors[1]) == \
        "ERROR: [generic] <id>: Unable to download webpage: HTTP Error 404: Not Found"
    assert _error_cause(errors[2]) == _error_cause(errors[3])
    assert _error_cause(errors[4]) != _error_cause(errors[0])  # the HTTP code is part of the cause
    videos = [{"video_id": f"v{i}", "status": "failed", "fetch_status": "failed", "error": e, "fetch_error": e,
               "category": "pets"} for i, e in enumerate(errors)]
    s = write_report(write_manifest(videos, tmp_path / "videos.parquet", kind="videos"), None)
    assert sorted(s["failures_by_cause"].values()) == [1, 2, 2]
    assert s["stopped_at"] == {"fetch failed": 5}
    long_cause = "MediaError: " + "a very long explanation of what went wrong " * 3
    clips = [{"video_id": "v", "clip_id": f"v-c{i:03d}", "category": "food", "fetch_status": "ok",
              "split_status": "ok", "label_status": "failed", "status": "failed", "label_error": long_cause,
              "error": long_cause} for i in range(3)]
    report = tmp_path / "clips.html"
    s = write_report(write_manifest(clips, tmp_path / "c98k.parquet", kind="clips"), report)
    assert s["stopped_at"] == {"label failed": 3}
    assert "where rows stopped: label failed: 3" in format_summary(s)
    assert "Failures by cause" in report.read_text()
