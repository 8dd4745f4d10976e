"""Manifest schema, validation and the `c98k validate` command."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from commercial98k.manifest.schema import CLIP_SCHEMA, VIDEO_SCHEMA, conform, rows_to_table, validate_table
from pipelines.cli import main as c98k


def clip_row(i: int, **over) -> dict:
    row = dict(video_id=f"v{i // 2}", clip_id=f"v{i // 2}-c{i % 2:03d}", status="ok", duration_s=30.0,
               clip_start_s=0.0 + 10 * (i % 2), clip_end_s=10.0 + 10 * (i % 2),
               shots=[{"start_s": 0.0, "end_s": 12.5}, {"start_s": 12.5, "end_s": 30.0}],
               music_start_s=0.0, music_end_s=28.0, has_music=True, valence=0.2, arousal=-0.4,
               emotion_probs=[("calmness", 0.7), ("power", 0.3)], tags=["lipstick", "口红"],
               category="cosmetics", category_confidence=0.9, split="train")
    row.update(over)
    return row


def write(tmp_path, table: pa.Table, name="m.parquet"):
    path = tmp_path / name
    pq.write_table(table, path)
    return path


def test_valid_manifest_has_no_problems():
    table = rows_to_table([clip_row(i) for i in range(4)], "clips")
    assert table.schema.equals(CLIP_SCHEMA)
    assert validate_table(table) == []


def test_video_schema_is_a_prefix_of_the_clip_columns():
    assert set(VIDEO_SCHEMA.names) <= set(CLIP_SCHEMA.names)
    assert "clip_id" not in VIDEO_SCHEMA.names


@pytest.mark.parametrize(
    ("mutate", "column", "words"),
    [
        (lambda t: t.drop_columns(["music_id"]), "music_id", "missing column"),
        (lambda t: t.set_column(t.schema.get_field_index("duration_s"), "duration_s",
                                pa.array(["30"] * t.num_rows)), "duration_s", "wrong type"),
    ],
)
def test_schema_problems_are_named(mutate, column, words):
    table = mutate(rows_to_table([clip_row(i) for i in range(2)], "clips"))
    problems = validate_table(table, "clips")
    assert [p.column for p in problems] == [column]
    assert words in str(problems[0])


def test_row_problems_name_row_and_column():
    rows = [clip_row(0), clip_row(1, clip_end_s=45.0), clip_row(2, clip_id="v0-c000"),
            clip_row(3, valence=1.7), clip_row(4, status="exploded"), clip_row(5, split="holdout"),
            clip_row(6, music_start_s=20.0, music_end_s=5.0),
            clip_row(7, shots=[{"start_s": 0.0, "end_s": 31.0}])]
    problems = validate_table(rows_to_table(rows, "clips"))
    found = {(p.row, p.column) for p in problems}
    assert found == {(1, "clip_end_s"), (2, "clip_id"), (3, "valence"), (4, "status"), (5, "split"),
                     (6, "music_end_s"), (7, "shots")}
    text = {p.row: str(p) for p in problems}
    assert "ends after the video (30.000 s)" in text[1]
    assert "duplicate clip_id 'v0-c000' (first at row 0)" in text[2]


def test_row_problems_keep_their_row_numbers_across_batches():
    """Rows are checked a batch at a time; problems still name the right row and key."""
    rows = [clip_row(i) for i in range(9000)]
    rows[4095]["valence"] = 1.5  # last row of the first batch
    rows[4096]["clip_end_s"] = 40.0  # first row of the second batch
    rows[8999]["split"] = "holdout"
    problems = validate_table(rows_to_table(rows, "clips"))
    assert [(p.row, p.key, p.column) for p in problems] == [
        (4095, rows[4095]["clip_id"], "valence"), (4096, rows[4096]["clip_id"], "clip_end_s"),
        (8999, rows[8999]["clip_id"], "split")]


def test_conform_adds_missing_columns_and_keeps_extras():
    table = pa.table({"video_id": ["a"], "status": ["ok"], "my_extra": [1]})
    out = conform(table, "videos")
    assert out.schema.names[: len(VIDEO_SCHEMA)] == VIDEO_SCHEMA.names
    assert out.column("my_extra").to_pylist() == [1]
    assert out.column("title").to_pylist() == [None]
    assert validate_table(out, "videos") == []


def test_validate_command_accepts_a_good_manifest(tmp_path):
    path = write(tmp_path, rows_to_table([clip_row(i) for i in range(3)], "clips"))
    result = CliRunner().invoke(c98k, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(": ok")


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: rows_to_table([clip_row(0)], "clips").drop_columns(["has_music"]), "column has_music: missing column"),
        (lambda: rows_to_table([clip_row(0)], "clips").set_column(
            CLIP_SCHEMA.get_field_index("valence"), "valence", pa.array(["high"])), "column valence: wrong type string"),
        (lambda: rows_to_table([clip_row(0, clip_start_s=25.0, clip_end_s=40.0)], "clips"),
         "row 0 (v0-c000), column clip_end_s: span 25.000-40.000 s ends after the video"),
        (lambda: rows_to_table([clip_row(0), clip_row(0)], "clips"), "row 1 (v0-c000), column clip_id: duplicate"),
    ],
)
def test_validate_command_rejects_each_fault_with_one_line(tmp_path, build, expected):
    path = write(tmp_path, build())
    result = CliRunner().invoke(c98k, ["validate", str(path)])
    assert result.exit_code == 1
    problem_lines = [ln for ln in result.stdout.splitlines() if ln.startswith(str(path))]
    assert len(problem_lines) == 1, result.output
    assert expected in problem_lines[0]


def test_validate_command_reports_an_unreadable_file(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    result = CliRunner().invoke(c98k, ["validate", str(path)])
    assert result.exit_code == 1
    assert "not a readable Parquet file" in result.output
