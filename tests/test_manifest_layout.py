"""The manifest package's own structure: one part naming scheme read in order with the older one,
legacy rows upgraded alike by both readers, no import cycle and no reaching into another module's
private names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pyarrow.parquet as pq

from commercial98k.manifest.compact import compact, merge_parts
from commercial98k.manifest.io import ManifestWriter, list_parts, parts_dir, read_manifest, write_manifest
from commercial98k.manifest.parts import new_part_name, part_order, write_part
from commercial98k.manifest.scan import scan_manifest
from commercial98k.manifest.schema import rows_to_table

PACKAGE = Path(__file__).resolve().parents[1] / "commercial98k" / "manifest"
STAGE_COLUMNS = ["fetch_status", "fetch_error", "split_status", "split_error", "label_status", "label_error"]


def stored_part(path: Path, name: str, rows: list[dict], kind: str = "videos") -> None:
    """A part file under ``name``, as a run of an earlier version left it (no schema conforming)."""
    parts_dir(path).mkdir(exist_ok=True)
    pq.write_table(rows_to_table(rows, kind), parts_dir(path) / f"{name}.parquet")


def titles(path: Path) -> dict[str, str]:
    return {r["video_id"]: r["title"] for b in scan_manifest(path, "videos", ["title"]) for r in b.to_pylist()}


def test_old_part_names_are_read_in_order_alongside_new_ones(tmp_path):
    path = tmp_path / "videos.parquet"
    write_manifest([{"video_id": f"v{i}", "status": "ok", "title": "base"} for i in range(4)], path, "videos")
    # an older version's parts: second-resolution local time, writer tag, sequence; one merged
    stored_part(path, "part-20260101T000000-ab12cd34-000000", [{"video_id": "v0", "status": "ok", "title": "old0"},
                                                                 {"video_id": "v1", "status": "ok", "title": "old0"}])
    stored_part(path, "part-20260101T000000-ab12cd34-000001", [{"video_id": "v1", "status": "ok", "title": "old1"}])
    stored_part(path, "part-20260101T000000-ab12cd34-000001@1", [{"video_id": "v2", "status": "ok", "title": "old2"}])
    # new parts (written now, and one by a writer whose clock is behind the old parts: still newer)
    write_part(path, "videos", [{"video_id": "v2", "status": "ok", "title": "new0"}], writer="w")
    write_part(path, "videos", [{"video_id": "v3", "status": "ok", "title": "new1"}], writer="w")
    names = [p.name for p in list_parts(path)]
    assert names[:3] == ["part-20260101T000000-ab12cd34-000000.parquet", "part-20260101T000000-ab12cd34-000001.parquet",
                         "part-20260101T000000-ab12cd34-000001@1.parquet"]
    assert all(re.fullmatch(r"part-\d{8}T\d{6}\.\d{9}Z-w\.parquet", n) for n in names[3:])
    want = {"v0": "old0", "v1": "old1", "v2": "new0", "v3": "new1"}
    assert {r["video_id"]: r["title"] for r in read_manifest(path, "videos").to_pylist()} == want
    assert titles(path) == want
    compact(path, "videos", full=True)
    assert not list_parts(path) and titles(path) == want


def test_a_new_part_sorts_after_a_part_from_a_clock_ahead(tmp_path):
    """Part order is write order even when another machine's clock (or an old local-time name) is ahead."""
    path = tmp_path / "videos.parquet"
    stored_part(path, "part-29990101T000000.000000000Z-ahead", [{"video_id": "v0", "status": "ok", "title": "ahead"}])
    stored_part(path, "part-29990101T000000.000000000Z-ahead@1", [{"video_id": "v0", "status": "ok", "title": "merged"}])
    written = [write_part(path, "videos", [{"video_id": "v0", "status": "ok", "title": f"now{k}"}]) for k in range(3)]
    assert list_parts(path)[-3:] == written and titles(path) == {"v0": "now2"}
    assert part_order(written[0]) > part_order(list_parts(path)[1])
    stored_part(path, "part-stray", [{"video_id": "v0", "status": "ok", "title": "by hand"}])  # a name with no time
    after = write_part(path, "videos", [{"video_id": "v0", "status": "ok", "title": "after the stray"}])
    assert after.name == "part-stray@1.parquet" and titles(path) == {"v0": "after the stray"}


def test_every_writer_uses_the_one_naming_scheme(tmp_path):
    from commercial98k.engine.stage import write_part as stage_write_part
    from commercial98k.manifest.io import write_rows_part

    path = tmp_path / "videos.parquet"
    with ManifestWriter(path, "videos", flush_every=1) as w:
        for i in range(9):  # 9 one-row parts: 8 of them merge into one
            w.add({"video_id": f"v{i}", "status": "ok", "title": f"writer{i}"})
        write_rows_part(path, "videos", [{"video_id": "v0", "status": "ok", "title": "single"}])
        stage_write_part(path, "videos", [{"video_id": "v1", "status": "ok", "title": "stage"}], "20260101T000000-tag-000000")
        names = [p.name for p in list_parts(path)]
        assert all(re.fullmatch(r"part-\d{8}T\d{6}\.\d{9}Z-[\w-]+(@\d+)?\.parquet", n) for n in names), names
        assert any("@" in n for n in names)  # the merge's output: named after its newest input
        merge_parts(path, "videos")
        assert titles(path)["v0"] == "single" and titles(path)["v1"] == "stage"
    assert titles(path) == {"v0": "single", "v1": "stage", **{f"v{i}": f"writer{i}" for i in range(2, 9)}}


def test_new_part_names_increase_within_a_process(tmp_path):
    names = [new_part_name(tmp_path / "videos.parquet", "w") for _ in range(1000)]
    assert names == sorted(names) and len(set(names)) == 1000


def legacy_rows() -> list[dict]:
    return [{"clip_id": "a-c000", "video_id": "a", "status": "ok"},
            {"clip_id": "b-c000", "video_id": "b", "status": "failed", "error": "FileNotFoundError: gone"},  # label's
            {"clip_id": "c-none", "video_id": "c", "status": "failed", "error": "MediaError: corrupt"},  # split's
            {"clip_id": "d-none", "video_id": "d", "status": "no_music", "error": "no background music"}]


def test_a_legacy_row_gets_the_same_upgraded_columns_from_both_readers(tmp_path):
    path = tmp_path / "c98k.parquet"
    table = rows_to_table(legacy_rows(), "clips").drop(STAGE_COLUMNS)  # as written before the stage columns
    pq.write_table(table, path)
    stored_part(path, "part-20260101T000000-old-000000",  # a legacy row in a part too
                [{"clip_id": "e-c000", "video_id": "e", "status": "failed", "error": "X: y"}], "clips")
    write_part(path, "clips", [{"clip_id": "f-c000", "video_id": "f", "status": "ok", "fetch_status": "ok",
                                "split_status": "ok"}])  # a current row: left as it is
    full = {r["clip_id"]: {c: r[c] for c in STAGE_COLUMNS} for r in read_manifest(path, "clips").to_pylist()}
    streamed = {r["clip_id"]: {c: r[c] for c in STAGE_COLUMNS}
                for b in scan_manifest(path, "clips", STAGE_COLUMNS, batch_rows=2) for r in b.to_pylist()}
    only_split = {r["clip_id"]: r["split_status"] for b in scan_manifest(path, "clips", ["split_status"])
                  for r in b.to_pylist()}  # the columns the upgrade reads are read even when not asked for
    assert full == streamed
    assert only_split == {k: v["split_status"] for k, v in full.items()}
    assert full["a-c000"] == dict(fetch_status="ok", fetch_error=None, split_status="ok", split_error=None,
                                  label_status=None, label_error=None)
    assert full["b-c000"] == dict(fetch_status="ok", fetch_error=None, split_status="ok", split_error=None,
                                  label_status="failed", label_error="FileNotFoundError: gone")
    assert full["c-none"]["split_status"] == "failed" and full["c-none"]["split_error"] == "MediaError: corrupt"
    assert full["c-none"]["label_status"] is None
    assert full["d-none"]["split_status"] == "no_music"
    assert full["e-c000"]["label_status"] == "failed" and full["e-c000"]["split_status"] == "ok"
    assert full["f-c000"] == dict(fetch_status="ok", fetch_error=None, split_status="ok", split_error=None,
                                  label_status=None, label_error=None)
    compact(path, "clips", full=True)  # upgraded once: the folded base stores the upgraded columns
    stored = {r["clip_id"]: {c: r[c] for c in STAGE_COLUMNS} for r in pq.read_table(path).to_pylist()}
    assert stored == full


def test_a_legacy_videos_row_gets_fetchs_result(tmp_path):
    path = tmp_path / "videos.parquet"
    pq.write_table(rows_to_table([{"video_id": "v0", "status": "failed", "error": "HTTP Error 404"},
                                  {"video_id": "v1", "status": "ok"}], "videos").drop(["fetch_status", "fetch_error"]),
                   path)
    rows = read_manifest(path, "videos").to_pylist()
    assert [(r["fetch_status"], r["fetch_error"]) for r in rows] == [("failed", "HTTP Error 404"), ("ok", None)]
    assert [r["fetch_status"] for b in scan_manifest(path, "videos", ["fetch_status"]) for r in b.to_pylist()] == \
        ["failed", "ok"]


def manifest_imports(package: Path = PACKAGE) -> dict[str, list[tuple[str, list[str]]]]:
    """Per module of ``package``: (imported sibling module, names imported from it), lazy imports included."""
    out: dict[str, list[tuple[str, list[str]]]] = {}
    for path in sorted(package.glob("*.py")):
        found = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(
                    "commercial98k.manifest"):
                module = node.module.removeprefix("commercial98k.manifest").lstrip(".")
                if module:
                    found.append((module, [a.name for a in node.names]))
                else:  # from commercial98k.manifest import x: x is a module
                    found += [(a.name, []) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                found.append(((node.module or "").split(".")[0], [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                found += [(a.name.removeprefix("commercial98k.manifest."), [])
                          for a in node.names if a.name.startswith("commercial98k.manifest.")]
        out[path.stem] = found
    return out


def import_cycle(imports: dict[str, list[tuple[str, list[str]]]]) -> list[str] | None:
    """A cycle of modules importing each other (first module repeated at the end), or None."""
    graph = {m: sorted({dep for dep, _ in deps if dep in imports and dep != m}) for m, deps in imports.items()}
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> list[str] | None:
        state[m] = 1
        for dep in graph[m]:
            if state.get(dep) == 1:
                path = [*trail, m]
                return [*path[path.index(dep):], dep]
            if dep not in state and (cycle := visit(dep, [*trail, m])):
                return cycle
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m, [])):
            return cycle
    return None


def private_imports(imports: dict[str, list[tuple[str, list[str]]]]) -> list[tuple[str, str, str]]:
    """(module, sibling, name) of every ``_private`` name a module imports from a sibling."""
    return [(m, dep, n) for m, deps in imports.items() for dep, names in deps for n in names
            if n.startswith("_") and not n.startswith("__")]


def test_no_import_cycle_and_no_private_names_inside_the_manifest_package():
    imports = manifest_imports()
    assert {"io", "parts", "reader", "scan", "done_keys", "compact", "writer", "legacy", "files"} <= set(imports)
    assert import_cycle(imports) is None
    assert private_imports(imports) == []


def test_the_layout_checks_see_a_lazy_cycle_and_a_private_name(tmp_path):
    """The checks above can fail: two modules importing each other (one lazily, a private name) are reported."""
    (tmp_path / "a.py").write_text("from commercial98k.manifest.b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from commercial98k.manifest.a import _y\n")
    (tmp_path / "c.py").write_text("from commercial98k.manifest import a\n")
    imports = manifest_imports(tmp_path)
    assert import_cycle(imports) in (["a", "b", "a"], ["b", "a", "b"])
    assert private_imports(imports) == [("b", "a", "_y")]
    assert import_cycle({k: v for k, v in imports.items() if k != "b"}) is None
