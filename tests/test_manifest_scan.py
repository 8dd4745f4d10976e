"""Streaming manifest reads: compacted file + parts, newest row wins, only selected rows become dicts."""

from __future__ import annotations

import pyarrow.compute as pc

from commercial98k.manifest.io import ManifestWriter, read_manifest, write_manifest
from commercial98k.manifest.scan import iter_pending, scan_manifest


def test_scan_matches_read_manifest_with_parts(tmp_path):
    path = tmp_path / "videos.parquet"
    write_manifest([{"video_id": f"v{i:03d}", "status": "ok"} for i in range(100)], path, "videos")
    writer = ManifestWriter(path, "videos", flush_every=10)
    for i in range(0, 100, 7):  # parts override some rows (left uncompacted, as by a killed run)
        writer.add({"video_id": f"v{i:03d}", "status": "failed", "error": "X: y"})
    writer.add({"video_id": "v999", "status": "ok"})
    writer.flush()
    rows = [r for b in scan_manifest(path, "videos", ["status", "error"], batch_rows=16) for r in b.to_pylist()]
    want = read_manifest(path, "videos").select(["video_id", "status", "error"]).to_pylist()
    assert sorted(rows, key=lambda r: r["video_id"]) == sorted(want, key=lambda r: r["video_id"])
    assert len(rows) == 101
    failed = [r for chunk in iter_pending(path, "videos", ["status"], lambda b: pc.equal(b.column("status"), "failed"),
                                          batch_rows=16) for r in chunk]
    assert sorted(r["video_id"] for r in failed) == [f"v{i:03d}" for i in range(0, 100, 7)]
