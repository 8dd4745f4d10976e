"""Taxonomy, safe ids, atomic writes, the local stage runner and the CLI entry points."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import threading

import pytest

from commercial98k.engine.runner import DriverWriter, LocalExecutor, run_stage
from commercial98k.engine.stage import Stage
from commercial98k.faults import EnvironmentFault
from commercial98k.storage.files import DataRoot, atomic_path, safe_id
from commercial98k.taxonomy import UnknownCategory, load_taxonomy


def test_taxonomy_has_the_major_categories_in_two_languages():
    tax = load_taxonomy()
    assert len(tax) >= 10
    for must in ("cosmetics", "apparel", "food", "digital", "home", "mother_baby", "sports_outdoor",
                 "jewelry_accessories", "pets", "health", "automotive"):
        cat = tax.get(must)
        assert cat.name_en and cat.queries
        assert any("\u4e00" <= ch <= "\u9fff" for ch in cat.name_zh)  # a Chinese name
    assert tax.index("cosmetics") == 0
    with pytest.raises(UnknownCategory, match="unknown category 'toys'"):
        tax.index("toys")


def test_taxonomy_file_errors_are_named(tmp_path):
    path = tmp_path / "cats.json"
    path.write_text(json.dumps({"categories": [{"id": "a", "name_en": "A", "name_zh": "甲"}]}))
    with pytest.raises(ValueError, match="category #0 lacks 'queries'"):
        load_taxonomy(path)


@pytest.mark.parametrize("raw", ["../../etc/passwd", "a/b", "视频 标题!", "x.y", "a" * 300])
def test_safe_id_never_escapes(raw, tmp_path):
    sid = safe_id("youtube", raw)
    assert set(sid) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
    assert len(sid) <= 120
    assert DataRoot(tmp_path).resolve(f"videos/{sid}.mp4").parent == (tmp_path / "videos").resolve()


def test_safe_id_keeps_distinct_inputs_distinct():
    assert safe_id("yt", "a/b") != safe_id("yt", "a_b")
    assert safe_id("yt", "abc") == "yt-abc"


def test_data_root_rejects_escapes_and_round_trips(tmp_path):
    root = DataRoot(tmp_path)
    for bad in ("../outside.mp4", "videos/../../outside.mp4", "/etc/passwd"):
        with pytest.raises(ValueError, match=r"escapes the data root") as err:
            root.resolve(bad)
        assert repr(bad) in str(err.value)  # the message names the path
    with pytest.raises(ValueError, match="outside the data root"):
        root.relative(tmp_path.parent / "other.mp4")
    path = root.resolve("videos/./a.mp4")
    assert path == tmp_path.resolve() / "videos" / "a.mp4" and root.relative(path) == "videos/a.mp4"
    assert root.resolve(path) == path  # an absolute path inside the root is accepted as is
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")  # a symlinked root reaches the same files
    assert DataRoot(tmp_path / "link").relative(tmp_path / "link" / "x.npy") == "x.npy"


def test_atomic_path_leaves_old_content_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def _flaky_step(item: dict) -> dict:
    if item["n"] % 3 == 0:
        raise OSError(f"cannot open item {item['n']}")
    return {**item, "status": "skipped" if item["n"] % 3 == 1 else "ok", "thread": threading.get_ident()}


class _FlakyStage(Stage):
    key, kind, batch_size, threads = "video_id", "videos", 2, 0

    def process_batch(self, rows: list[dict]) -> list[dict]:
        return [_flaky_step(r) for r in rows]


@pytest.mark.parametrize("workers", [1, 3])
def test_run_stage_turns_exceptions_into_failed_rows(workers, capsys):
    rows: list[dict] = []
    result = run_stage(_FlakyStage(), [{"video_id": f"v{i}", "n": i} for i in range(9)],
                       executor=LocalExecutor(workers), sink=DriverWriter(), desc="t", on_row=rows.append)
    assert sorted(r["n"] for r in rows) == list(range(9))
    failed = [r for r in rows if r["status"] == "failed"]
    assert sorted(r["n"] for r in failed) == [0, 3, 6]  # the batch-mates of a raising item still finish
    assert failed[0]["error"].startswith("OSError: cannot open item")
    assert result.counts == {"failed": 3, "skipped": 3, "ok": 3} and result.items == 9 and not result.crashed
    err = capsys.readouterr().err
    assert err.count(": failed: OSError: cannot open item") == 3
    assert "error: v3: failed: OSError: cannot open item 3" in err


def test_a_machine_fault_stops_the_run():
    def full(item: dict) -> dict:
        raise OSError(errno.ENOSPC, "No space left on device", "/d/x")

    stage = _FlakyStage()
    stage.process_batch = lambda rows: [full(r) for r in rows]
    with pytest.raises(EnvironmentFault, match="^no space left on device"):
        run_stage(stage, [{"video_id": "v0", "n": 1}], executor=LocalExecutor(1), sink=DriverWriter(), progress=False)


@pytest.mark.parametrize(("module", "commands"), [
    ("pipelines.cli", ["validate"]),
    ("yuyin.cli", []),
])
def test_cli_help_lists_commands(module, commands):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True).stdout
    assert "Usage:" in out
    for c in commands:
        assert c in out
