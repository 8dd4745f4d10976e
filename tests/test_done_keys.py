"""One "done keys" reader per manifest kind (``manifest.done_keys``), used by fetch, split and label."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from commercial98k.manifest.done_keys import done_keys, finished, row_finished
from commercial98k.manifest.io import ManifestError, ManifestWriter, write_manifest
from commercial98k.manifest.status import record

ROOT = Path(__file__).resolve().parents[1]


def video(i: int, status: str, error: str | None = None) -> dict:
    return {"video_id": f"v{i}", "status": status, "error": error}


def clip(vid: str, idx: str, split: str, error: str | None = None, label: str | None = None) -> dict:
    row = record({"clip_id": f"{vid}-{idx}", "video_id": vid, "status": "pending"}, "fetch", "ok", None)
    row = record(row, "split", split, error)
    return record(row, "label", label, "X: y") if label else row


def test_videos_done_keys_honour_retryable_failures_and_retry_failed(tmp_path):
    path = tmp_path / "videos.parquet"
    write_manifest([video(0, "ok"), video(1, "failed", "HTTP Error 404"), video(2, "failed", "truncated (decoded 3.1 s of 29.9 s)"),
                    video(3, "blocked", "HTTP 429"), video(4, "skipped", "duration 200 s > --max-duration 180"),
                    video(5, "failed", "empty file (0 bytes)")], path, "videos")
    with ManifestWriter(path, "videos", flush_every=1) as w:  # a part overrides the base: newest wins
        w.add(video(1, "ok"))
        w.add(video(0, "failed", "HTTP Error 500"))
        w.flush()
        assert done_keys(path, "videos", "fetch") == {"v0", "v1", "v4"}
        assert done_keys(path, "videos", "fetch", retry_failed=True) == {"v1", "v4"}


def test_clips_done_keys_read_splits_own_result_not_labels(tmp_path):
    path = tmp_path / "c98k.parquet"
    write_manifest([clip("a", "c000", "ok", label="failed"), clip("b", "none", "no_music", "no background music"),
                    clip("c", "none", "failed", "MediaError: x"), clip("d", "none", "failed", "truncated (decoded 1 s of 9 s)"),
                    {"clip_id": "e-c000", "video_id": "e", "status": "failed", "error": "X: y"}],  # before stage columns
                   path, "clips")
    assert done_keys(path, "clips", "split", key="video_id") == {"a", "b", "c", "e"}
    assert done_keys(path, "clips", "split", retry_failed=True, key="video_id") == {"a", "b", "e"}
    assert done_keys(path, "clips", "split") == {"a-c000", "b-none", "c-none", "e-c000"}


def test_an_absent_manifest_has_no_done_keys_and_a_broken_one_is_an_error(tmp_path):
    assert done_keys(tmp_path / "nope.parquet", "videos", "fetch") == set()
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 truncated")
    with pytest.raises(ManifestError, match="bad.parquet: not a readable Parquet file"):
        done_keys(bad, "videos", "fetch")


def test_the_rule_is_the_same_for_every_stage():
    assert not finished(None, None) and not finished("blocked", "HTTP 429")
    assert finished("failed", "X: y") and not finished("failed", "X: y", retry_failed=True)
    assert not finished("failed", "truncated (decoded 1 s of 9 s)")
    label_failed = clip("a", "c000", "ok", label="failed")
    assert row_finished(label_failed, "label") and not row_finished(label_failed, "label", retry_failed=True)
    assert row_finished(label_failed, "split", retry_failed=True)


def test_fetch_split_and_label_read_done_keys_through_the_one_reader():
    """No stage keeps its own copy of the rule ("which keys are done" is defined once)."""
    fetch = (ROOT / "pipelines/fetch.py").read_text()
    fetch_plan = (ROOT / "commercial98k/sources/plan.py").read_text()
    split = (ROOT / "pipelines/split.py").read_text()
    label_plan = (ROOT / "commercial98k/label/plan.py").read_text()
    assert "stage_results(" in fetch and "not finished(" in fetch_plan
    assert "is_retryable(" not in fetch + fetch_plan
    assert "done_keys(" in split and "FINISHED" not in split + (ROOT / "commercial98k/split/step.py").read_text()
    assert "row_finished(" in label_plan
    assert not re.search(r'== "failed" and not retry_failed', label_plan)
    for path in [*ROOT.glob("commercial98k/**/*.py"), *ROOT.glob("pipelines/**/*.py")]:
        assert "def existing_keys" not in path.read_text(), path
