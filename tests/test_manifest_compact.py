"""Incremental compaction: a flush never rewrites the base, parts merge size-tiered, crashes lose nothing."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from commercial98k.engine.stage import write_part
from commercial98k.manifest import compact as manifest_compact
from commercial98k.manifest.compact import merge_run
from commercial98k.manifest.io import (
    TOMBSTONE,
    ManifestWriter,
    compact,
    list_parts,
    parts_dir,
    problems_in,
    read_manifest,
    write_manifest,
    write_rows_part,
)
from commercial98k.manifest.parts import part_rows
from commercial98k.manifest.scan import scan_manifest
from commercial98k.manifest.schema import rows_to_table


def rows(start: int, n: int, status: str = "ok", **over) -> list[dict]:
    return [{"video_id": f"v{i:05d}", "status": status, "title": f"t{i}", **over} for i in range(start, start + n)]


def stored_part(path, name: str, part_rows: list[dict]) -> None:
    """A part file as an earlier run left it, under ``name``."""
    parts_dir(path).mkdir(exist_ok=True)
    pq.write_table(rows_to_table(part_rows, "videos"), parts_dir(path) / f"{name}.parquet")


def scanned(path) -> dict[str, dict]:
    return {r["video_id"]: r for b in scan_manifest(path, "videos", ["status", "title"]) for r in b.to_pylist()}


def test_adding_rows_never_rewrites_the_base(tmp_path):
    path = tmp_path / "videos.parquet"
    write_manifest(rows(0, 2000), path, "videos")
    before = os.stat(path)
    with ManifestWriter(path, "videos", flush_every=10) as w:
        w.extend(rows(2000, 150))
        w.extend(rows(0, 5, status="failed", error="X: y"))  # overrides of base rows
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    parts = list_parts(path)
    assert 1 <= len(parts) < 16  # 16 flushes merged size-tiered, not 16 small files
    assert sum(part_rows(p) for p in parts) == 155
    table = read_manifest(path, "videos")
    assert table.num_rows == 2150
    assert table.column("video_id").to_pylist() == [f"v{i:05d}" for i in range(2150)]  # first-seen order
    assert table.column("status").to_pylist()[:6] == ["failed"] * 5 + ["ok"]
    assert scanned(path) == {r["video_id"]: r for r in table.select(["video_id", "status", "title"]).to_pylist()}


def test_the_base_is_folded_once_the_parts_outweigh_it_or_on_request(tmp_path):
    path = tmp_path / "videos.parquet"
    write_manifest(rows(0, 100), path, "videos")
    ino = os.stat(path).st_ino
    with ManifestWriter(path, "videos", flush_every=7) as w:
        w.extend(rows(100, 30))
    assert os.stat(path).st_ino == ino and list_parts(path)  # 30 < 0.5 x 100: parts stay
    with ManifestWriter(path, "videos", flush_every=7) as w:
        w.extend(rows(130, 30))
    assert os.stat(path).st_ino != ino and not list_parts(path)  # 60 >= 50: folded
    assert pq.read_table(path).num_rows == 160
    write_rows_part(path, "videos", rows(0, 1, status="failed", error="X: y"))
    compact(path, "videos", full=True)
    assert not list_parts(path) and pq.read_table(path).column("status").to_pylist()[0] == "failed"


def test_a_crash_between_merge_steps_loses_nothing(tmp_path, monkeypatch):
    """The merged part is written before its inputs go: a crash in between leaves duplicates that
    newest-wins resolves to the same rows, and the next compaction cleans them up."""
    path = tmp_path / "videos.parquet"
    write_manifest(rows(0, 50), path, "videos")
    for k in range(5):  # five parts (five writers' names), each overriding the one before for v00000
        write_part(path, "videos", rows(0, 1, title=f"gen{k}") + rows(100 + k * 3, 3), f"w{k}")
    want = read_manifest(path, "videos").to_pylist()
    parts = list_parts(path)

    def crash(p, *a, **k):
        raise KeyboardInterrupt("killed between writing the merged part and deleting its inputs")

    monkeypatch.setattr(type(parts[0]), "unlink", crash)
    with pytest.raises(KeyboardInterrupt):
        merge_run(path, parts[1:4], "videos")
    monkeypatch.undo()
    assert len(list_parts(path)) == 6  # inputs and their merge side by side
    assert read_manifest(path, "videos").to_pylist() == want
    assert scanned(path) == {r["video_id"]: {k: r[k] for k in ("video_id", "status", "title")} for r in want}
    assert read_manifest(path, "videos").to_pylist()[0]["title"] == "gen4"
    manifest_compact.merge_parts(path, "videos")
    compact(path, "videos", full=True)
    assert not list_parts(path) and read_manifest(path, "videos").to_pylist() == want


def test_a_crash_while_folding_the_base_loses_nothing(tmp_path, monkeypatch):
    path = tmp_path / "videos.parquet"
    write_manifest(rows(0, 20), path, "videos")
    for k in range(3):
        write_rows_part(path, "videos", rows(0, 2, title=f"gen{k}"))
    want = read_manifest(path, "videos").to_pylist()
    calls = []

    def crash_after_one(p, *a, **k):
        if calls:
            raise KeyboardInterrupt("killed mid-fold")
        calls.append(p)
        os.remove(p)

    monkeypatch.setattr(type(path), "unlink", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        compact(path, "videos", full=True)
    monkeypatch.undo()
    assert len(list_parts(path)) == 2  # the oldest part went first; the newest ones remain
    assert read_manifest(path, "videos").to_pylist() == want


def test_a_tombstone_deletes_its_key_and_a_later_row_brings_it_back(tmp_path):
    path = tmp_path / "videos.parquet"
    write_manifest(rows(0, 10), path, "videos")
    write_rows_part(path, "videos", [{"video_id": "v00003", "status": TOMBSTONE}])
    assert "v00003" not in read_manifest(path, "videos").column("video_id").to_pylist()
    assert "v00003" not in scanned(path) and len(scanned(path)) == 9
    write_rows_part(path, "videos", rows(3, 1, title="back"))
    assert scanned(path)["v00003"]["title"] == "back"
    compact(path, "videos", full=True)
    assert read_manifest(path, "videos").num_rows == 10


def test_parts_written_in_the_same_second_keep_their_order(tmp_path):
    path = tmp_path / "videos.parquet"
    for k in range(9):  # same second: later parts are named after the newest one (part_order)
        write_rows_part(path, "videos", rows(0, 1, title=f"gen{k}"))
    assert read_manifest(path, "videos").column("title").to_pylist() == ["gen8"]
    manifest_compact.merge_parts(path, "videos")
    assert len(list_parts(path)) < 9 and read_manifest(path, "videos").column("title").to_pylist() == ["gen8"]


def test_a_merge_never_overwrites_the_output_of_an_interrupted_merge(tmp_path):
    """Inputs left beside their merged part (a crash) are not merged into a part of the same name."""
    path = tmp_path / "videos.parquet"
    stored_part(path, "part-20260101T000000-w-000000", rows(0, 3))  # names of an earlier version
    stored_part(path, "part-20260101T000000-w-000000@1", rows(0, 3, title="merged"))
    before = read_manifest(path, "videos").to_pylist()
    first = list_parts(path)[0]
    assert merge_run(path, [first], "videos") is None  # its output name is taken: nothing changes
    assert len(list_parts(path)) == 2 and read_manifest(path, "videos").to_pylist() == before
    assert [r["title"] for r in before] == ["merged"] * 3


def test_validate_checks_the_parts_that_outlived_a_run(tmp_path):
    path = tmp_path / "videos.parquet"
    write_manifest(rows(0, 100), path, "videos")
    with ManifestWriter(path, "videos", flush_every=10) as w:
        w.extend(rows(100, 20))  # 20 < half of 100: the parts stay beside the base
    write_rows_part(path, "videos", [{"video_id": "v00001", "status": TOMBSTONE}])
    assert list_parts(path) and problems_in(path, "videos") == []  # tombstones are not bad rows
    write_rows_part(path, "videos", [{"video_id": "v00200", "status": "ok", "duration_s": -3.0}])
    problems = problems_in(path, "videos")
    assert problems and all(p.message.endswith(".parquet)") and "(in part-" in p.message for p in problems)
