"""Parquet manifests: parts, compaction, newest-row-wins, atomic writes, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest

from commercial98k.manifest.done_keys import done_keys
from commercial98k.manifest.io import (
    ManifestError,
    ManifestWriter,
    manifest_exists,
    parts_dir,
    read_manifest,
    write_manifest,
)


def video(i: int, status: str = "ok", **over) -> dict:
    row = dict(video_id=f"vid{i}", status=status, title=f"ad {i}", duration_s=10.0 + i)
    row.update(over)
    return row


def test_writer_flushes_parts_and_compacts(tmp_path):
    path = tmp_path / "videos.parquet"
    with ManifestWriter(path, "videos", flush_every=2) as w:
        for i in range(5):
            w.add(video(i))
        assert len(list(parts_dir(path).glob("part-*.parquet"))) == 2  # 4 rows flushed, 1 buffered
        assert read_manifest(path).num_rows == 4  # readers see flushed parts before compaction
    assert not parts_dir(path).exists()
    table = pq.read_table(path)
    assert table.column("video_id").to_pylist() == [f"vid{i}" for i in range(5)]


def test_newest_row_wins_and_order_is_kept(tmp_path):
    path = tmp_path / "videos.parquet"
    write_manifest([video(0), video(1, "failed", error="HTTP Error 404"), video(2)], path, "videos")
    with ManifestWriter(path, "videos") as w:
        w.add(video(1, "ok", title="retried"))
        w.add(video(3))
    table = read_manifest(path)
    assert table.column("video_id").to_pylist() == ["vid0", "vid1", "vid2", "vid3"]
    assert table.column("status").to_pylist() == ["ok"] * 4
    assert table.column("title").to_pylist()[1] == "retried"
    assert done_keys(path, "videos", "fetch") == {"vid0", "vid1", "vid2", "vid3"}


def test_write_refuses_an_invalid_manifest_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "videos.parquet"
    write_manifest([video(0)], path, "videos")
    before = path.read_bytes()
    with pytest.raises(ManifestError, match="duplicate video_id"):
        write_manifest([video(1), video(1)], path, "videos")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["videos.parquet"]  # no temp file left behind


def test_missing_and_corrupt_manifests_give_clear_errors(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ManifestError, match="bad.parquet: not a readable Parquet file"):
        read_manifest(bad)


def test_a_manifest_of_the_other_kind_or_without_status_is_refused(tmp_path):
    videos = tmp_path / "videos.parquet"
    write_manifest([video(0), video(1)], videos, "videos")
    clips = tmp_path / "c98k.parquet"
    write_manifest([dict(video(0), clip_id="vid0-c000")], clips, "clips")
    with pytest.raises(ManifestError, match="videos.parquet: a videos manifest .* where a clips manifest is expected"):
        read_manifest(videos, "clips")
    with pytest.raises(ManifestError, match="c98k.parquet: a clips manifest .* where a videos manifest is expected"):
        read_manifest(clips, "videos")
    # a part of the other kind is named, not silently merged
    with ManifestWriter(videos, "videos") as w:
        w.add(video(2))
    parts_dir(videos).mkdir()
    stray = parts_dir(videos) / "part-stray-000000.parquet"
    pq.write_table(pq.read_table(clips), stray)
    with pytest.raises(ManifestError, match="part-stray-000000.parquet: a clips manifest"):
        read_manifest(videos, "videos")
    stray.unlink()
    no_status = tmp_path / "no_status.parquet"
    pq.write_table(pq.read_table(videos).drop(["status"]), no_status)
    with pytest.raises(ManifestError, match="no_status.parquet: not a videos manifest: missing column status"):
        read_manifest(no_status)


def test_done_keys_only_treats_an_absent_manifest_as_empty(tmp_path):
    path = tmp_path / "videos.parquet"
    assert not manifest_exists(path) and done_keys(path, "videos", "fetch") == set()
    path.write_bytes(b"PAR1 truncated")
    assert manifest_exists(path)
    with pytest.raises(ManifestError, match="not a readable Parquet file"):
        done_keys(path, "videos", "fetch")
    path.unlink()
    with ManifestWriter(path, "videos", flush_every=1) as w:
        w.add(video(0))
        assert manifest_exists(path) and not path.exists()  # only a flushed part so far
        assert done_keys(path, "videos", "fetch") == {"vid0"}


def test_killed_writer_keeps_every_flushed_row(tmp_path):
    """SIGKILL a process mid-run: the flushed parts survive and no partial part is read."""
    path = tmp_path / "videos.parquet"
    script = textwrap.dedent(f"""
        import os, sys, time
        from commercial98k.manifest.io import ManifestWriter
        w = ManifestWriter({str(path)!r}, "videos", flush_every=3)
        for i in range(1000):
            w.add(dict(video_id=f"vid{{i}}", status="ok"))
            if i == 10:
                print("flushed", flush=True)
            if i >= 10:
                time.sleep(0.01)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "flushed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    table = read_manifest(path)
    ids = table.column("video_id").to_pylist()
    assert len(ids) >= 9 and len(ids) % 3 == 0
    assert ids == [f"vid{i}" for i in range(len(ids))]
    # A resumed writer appends, and compaction folds everything into one valid file.
    with ManifestWriter(path, "videos") as w:
        w.add(dict(video_id="vid_resumed", status="ok"))
    assert pq.read_table(path).num_rows == len(ids) + 1
