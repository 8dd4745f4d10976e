"""Every ``c98k`` command turns bad input into ONE clear line naming the file and the cause.

Real generated inputs: a labelled clips manifest with feature files (``tests/synthetic.py``),
a videos manifest written through ``write_manifest``, and manifests damaged on purpose
(a column dropped, bytes that are not Parquet, the other kind of manifest).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from synthetic import make_labelled_corpus

from commercial98k.manifest.io import write_manifest
from commercial98k.models.registry import check_device
from pipelines.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cli_errors")
    clips, data_root = make_labelled_corpus(tmp, n_clips=8)
    videos = tmp / "manifests" / "videos.parquet"
    write_manifest([{"video_id": "local-ad1", "platform": "local", "platform_id": "ad1", "category": "food",
                     "status": "failed", "error": "MediaError: no video stream"}], videos, kind="videos")
    clips_no_status = tmp / "clips_no_status.parquet"
    pq.write_table(pq.read_table(clips).drop(["status"]), clips_no_status)
    videos_no_status = tmp / "videos_no_status.parquet"
    pq.write_table(pq.read_table(videos).drop(["status"]), videos_no_status)
    garbage = tmp / "garbage.parquet"
    garbage.write_bytes(b"video_id,status\nx,ok\n")  # a CSV with a .parquet name
    empty_dir = tmp / "empty"
    empty_dir.mkdir()
    return {"tmp": tmp, "clips": clips, "data_root": data_root, "videos": videos, "garbage": garbage,
            "clips_no_status": clips_no_status, "videos_no_status": videos_no_status, "empty_dir": empty_dir}


def run(args: list[str]) -> tuple[int, list[str]]:
    """Invoke ``c98k``; assert no traceback escaped; return (exit code, non-empty output lines)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, [line for line in result.output.splitlines() if line.strip()]


def one_error(args: list[str], *fragments: str) -> str:
    """The command fails with exactly one ``error:`` line holding every fragment."""
    code, lines = run(args)
    assert code != 0
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def usage_error(args: list[str], *fragments: str) -> str:
    """Click's usage error: exit 2 and one ``Error:`` line naming the flag."""
    code, lines = run(args)
    assert code == 2
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, lines
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# ---------------------------------------------------------------- the wrong kind of manifest
def test_fetch_refuses_a_clips_manifest_as_its_output_and_leaves_it_alone(inputs):
    before = inputs["clips"].read_bytes()
    one_error(["fetch", "-c", "food", "-s", inputs["empty_dir"], "--manifest", inputs["clips"],
               "--data-root", inputs["tmp"] / "fetched"],
              str(inputs["clips"]), "a clips manifest", "videos manifest is expected")
    assert inputs["clips"].read_bytes() == before
    assert not (inputs["tmp"] / "fetched").exists()  # stopped before creating anything


def test_split_refuses_a_clips_manifest_as_its_videos_input(inputs):
    one_error(["split", "--videos-manifest", inputs["clips"], "--manifest", inputs["tmp"] / "out.parquet",
               "--data-root", inputs["data_root"]],
              str(inputs["clips"]), "a clips manifest", "videos manifest is expected")
    assert not (inputs["tmp"] / "out.parquet").exists()


def test_split_refuses_a_videos_manifest_as_its_clips_output(inputs):
    before = inputs["videos"].read_bytes()
    one_error(["split", "--videos-manifest", inputs["videos"], "--manifest", inputs["videos"],
               "--data-root", inputs["data_root"]],
              str(inputs["videos"]), "a videos manifest", "clips manifest is expected")
    assert inputs["videos"].read_bytes() == before


def test_label_refuses_a_videos_manifest(inputs):
    before = inputs["videos"].read_bytes()
    one_error(["label", "--manifest", inputs["videos"], "--data-root", inputs["data_root"]],
              str(inputs["videos"]), "a videos manifest", "clips manifest is expected")
    assert inputs["videos"].read_bytes() == before


def test_build_shards_refuses_a_videos_manifest(inputs):
    out = inputs["tmp"] / "shards_videos"
    one_error(["build-shards", "--manifest", inputs["videos"], "--out", out, "--data-root", inputs["data_root"]],
              str(inputs["videos"]), "videos manifest", "clips manifest")
    assert not (out / "index.json").exists()


# ---------------------------------------------------------------- a missing column
@pytest.mark.parametrize("command", [
    ["label", "--manifest", "{clips_no_status}", "--data-root", "{data_root}"],
    ["build-shards", "--manifest", "{clips_no_status}", "--out", "{tmp}/shards_nocol", "--data-root", "{data_root}"],
    ["stats", "--manifest", "{clips_no_status}", "--no-report"],
    ["split", "--videos-manifest", "{videos_no_status}", "--manifest", "{tmp}/split_nocol.parquet",
     "--data-root", "{data_root}"],
    ["fetch", "-c", "food", "-s", "{empty_dir}", "--manifest", "{videos_no_status}", "--data-root", "{tmp}/f2"],
], ids=["label", "build-shards", "stats", "split", "fetch"])
def test_a_manifest_without_its_status_column_is_one_error_line(inputs, command):
    args = [a.format(**inputs) for a in command]
    bad = next(a for a in args if a.endswith("_no_status.parquet"))
    one_error(args, bad, "missing column status")


def test_validate_names_the_missing_column(inputs):
    code, lines = run(["validate", inputs["clips_no_status"]])
    assert code == 1
    assert f"{inputs['clips_no_status']}: all rows, column status: missing column (expected string)" in lines


# ---------------------------------------------------------------- unreadable or absent files
@pytest.mark.parametrize("command", [
    ["validate", "{garbage}"],
    ["stats", "--manifest", "{garbage}", "--no-report"],
    ["label", "--manifest", "{garbage}", "--data-root", "{data_root}"],
    ["build-shards", "--manifest", "{garbage}", "--out", "{tmp}/shards_garbage", "--data-root", "{data_root}"],
    ["split", "--videos-manifest", "{garbage}", "--manifest", "{tmp}/split_garbage.parquet",
     "--data-root", "{data_root}"],
    ["fetch", "-c", "food", "-s", "{empty_dir}", "--manifest", "{garbage}", "--data-root", "{tmp}/f3"],
], ids=["validate", "stats", "label", "build-shards", "split", "fetch"])
def test_a_file_that_is_not_parquet_is_one_error_line(inputs, command):
    one_error([a.format(**inputs) for a in command], str(inputs["garbage"]), "not a readable Parquet file")


def test_validate_of_an_absent_file_says_so(inputs):
    missing = inputs["tmp"] / "nope.parquet"
    one_error(["validate", missing], f"{missing}: no such file")


def test_emotion_train_on_a_folder_without_annotations(inputs):
    out = inputs["tmp"] / "head.npz"
    one_error(["emotion", "train", "--path", inputs["empty_dir"], "--out", out,
               "--cache-dir", inputs["tmp"] / "emotion_cache"], str(inputs["empty_dir"]), "no such file")
    assert not out.exists()


# ---------------------------------------------------------------- bad flags
@pytest.mark.parametrize("command", [
    ["label", "--manifest", "{clips}", "--data-root", "{data_root}"],
    ["emotion", "train", "--path", "{empty_dir}", "--out", "{tmp}/h.npz"],
    ["emotion", "evaluate", "--path", "{empty_dir}"],
], ids=["label", "emotion-train", "emotion-evaluate"])
def test_an_unknown_device_is_a_usage_error(inputs, command):
    usage_error([a.format(**inputs) for a in command] + ["--device", "tpu"], "--device", "'tpu'",
                "not a torch device")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_is_a_usage_error(inputs):
    usage_error(["label", "--manifest", inputs["clips"], "--data-root", inputs["data_root"], "--device", "cuda"],
                "--device", "CUDA is not available here")


@pytest.mark.parametrize("command, flag", [
    (["build-shards", "--split-fractions", "0.5,0.6,0.1"], "--split-fractions"),
    (["split", "--clip-seconds", "5", "--min-clip-seconds", "8"], "--min-clip-seconds"),
    (["fetch", "--limit", "0"], "--limit"),
    (["label", "--weights", "audio"], "--weights"),
    (["stats", "--top", "0"], "--top"),
    (["emotion", "evaluate", "--path", "{empty_dir}", "--folds", "1"], "--folds"),
], ids=["build-shards", "split", "fetch", "label", "stats", "emotion"])
def test_bad_flag_values_name_the_flag(inputs, command, flag):
    usage_error([a.format(**inputs) for a in command], flag)


def test_check_device():
    assert check_device("cpu") == "cpu"
    assert check_device("cpu:0") == "cpu:0"
    for bad in ("tpu", "", "cuda:x", "meta"):
        with pytest.raises(ValueError, match=repr(bad)):
            check_device(bad)


# ---------------------------------------------------------------- help
COMMANDS = [["fetch"], ["split"], ["label"], ["emotion"], ["emotion", "train"], ["emotion", "evaluate"],
            ["build-shards"], ["stats"], ["validate"]]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_help_has_a_description_and_an_example(command):
    code, lines = run([*command, "--help"])
    assert code == 0
    description = lines[1]  # after the Usage line
    assert len(description.split()) >= 5
    examples = [line.strip() for line in lines if line.strip().startswith(f"c98k {' '.join(command)}")]
    assert examples, f"no example line in `c98k {' '.join(command)} --help`"


def test_top_level_help_does_not_import_torch_or_pandas():
    code = ("import sys, runpy; sys.argv = ['c98k', '--help']\n"
            "try:\n    runpy.run_module('pipelines.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'pandas', 'scipy.optimize', 'webdataset') if m in sys.modules)\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "Usage:" in out
    assert "HEAVY []" in out


# ================================================================ every command x every bad input
# Each case: exit code 1, exactly one non-empty stderr line, no "Traceback" anywhere.
def clean_failure(cli, args: list) -> str:
    """Run ``cli`` (c98k or yuyin); assert exit 1, one stderr line, no traceback; return that line."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _retype(src: Path, dst: Path, column: str) -> Path:
    """A copy of a manifest whose ``column`` is stored as strings (a hand-edited, wrong-typed manifest)."""
    import pyarrow as pa

    table = pq.read_table(src)
    i = table.schema.get_field_index(column)
    pq.write_table(table.set_column(i, column, table.column(i).cast(pa.string())), dst)
    return dst


def _truncate(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


@pytest.fixture(scope="module")
def damaged(inputs) -> dict[str, Path]:
    tmp = inputs["tmp"]
    return {**inputs, "missing": tmp / "no_such_manifest.parquet",
            "clips_retyped": _retype(inputs["clips"], tmp / "clips_retyped.parquet", "duration_s"),
            "videos_retyped": _retype(inputs["videos"], tmp / "videos_retyped.parquet", "duration_s"),
            "clips_truncated": _truncate(inputs["clips"], tmp / "clips_truncated.parquet"),
            "videos_truncated": _truncate(inputs["videos"], tmp / "videos_truncated.parquet")}


C98K_CASES = {
    "label": ["label", "--manifest", "{m}", "--data-root", "{data_root}"],
    "build-shards": ["build-shards", "--manifest", "{m}", "--out", "{tmp}/shards_{case}", "--data-root", "{data_root}"],
    "stats": ["stats", "--manifest", "{m}", "--no-report"],
    "split": ["split", "--videos-manifest", "{m}", "--manifest", "{tmp}/split_{case}.parquet", "--data-root", "{data_root}"],
    "fetch": ["fetch", "-c", "food", "-s", "{empty_dir}", "--manifest", "{m}", "--data-root", "{tmp}/fetch_{case}"],
    "validate": ["validate", "{m}"],
}
#: Which manifest a command reads for each damage; fetch creates a missing manifest (not an error).
DAMAGE = {"missing": ("missing", "missing"), "wrong-typed": ("clips_retyped", "videos_retyped"),
          "truncated": ("clips_truncated", "videos_truncated")}
C98K_MATRIX = [(cmd, dmg) for cmd in C98K_CASES for dmg in DAMAGE if not (cmd == "fetch" and dmg == "missing")]


@pytest.mark.parametrize("cmd, damage", C98K_MATRIX, ids=[f"{c}-{d}" for c, d in C98K_MATRIX])
def test_c98k_command_on_a_damaged_manifest_is_one_stderr_line(damaged, cmd, damage):
    clips_key, videos_key = DAMAGE[damage]
    m = damaged[videos_key if cmd in ("split", "fetch") else clips_key]
    args = [a.format(m=m, case=damage, **damaged) for a in C98K_CASES[cmd]]
    line = clean_failure(main, args)
    if cmd == "validate" and damage == "wrong-typed":
        assert "problem(s)" in line  # the problems themselves are listed on stdout
        return
    assert str(m) in line, line
    if damage == "wrong-typed":
        assert "column duration_s" in line and "expected double" in line, line
    if damage == "missing":
        assert "no such" in line, line


def test_build_shards_warns_loudly_about_an_empty_split_naming_the_flag(inputs):
    result = CliRunner().invoke(main, ["build-shards", "--manifest", str(inputs["clips"]), "--out",
                                       str(inputs["tmp"] / "shards_empty_val"), "--data-root", str(inputs["data_root"]),
                                       "--split-fractions", "1,0,0", "--any-music"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "EMPTY" in line]
    assert len(warnings) == 2 and all("--split-fractions" in w for w in warnings), result.stderr
    assert "'val'" in warnings[0] and "'test'" in warnings[1]
    assert "category" in result.stdout and "total" in result.stdout  # samples per split x category


# ---------------------------------------------------------------- yuyin: missing, truncated shard, empty split
SMALL = ["--model-opt", "hidden=16", "--model-opt", "embed_dim=8", "--model-opt", "heads=2"]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good shards, a copy with every shard truncated, a copy with no val/test split, and a 2-step checkpoint."""
    import shutil

    from commercial98k.export.shards import build_shards
    from yuyin.cli import main as yuyin

    tmp = tmp_path_factory.mktemp("yuyin_errors")
    manifest, data_root = make_labelled_corpus(tmp, n_clips=60, seed=5)
    good = tmp / "shards"
    build_shards(manifest, good, data_root, samples_per_shard=20, progress=False)
    truncated = tmp / "shards_truncated"
    shutil.copytree(good, truncated)
    for tar in truncated.glob("*/*.tar"):
        _truncate(tar, tar)
    empty = tmp / "shards_train_only"
    build_shards(manifest, empty, data_root, fractions=(1.0, 0.0, 0.0), samples_per_shard=20, progress=False)
    ckpt = tmp / "run"
    r = CliRunner().invoke(yuyin, ["train", "--shards", str(good), "--steps", "2", "--batch-size", "8",
                                   "--checkpoint-dir", str(ckpt), *SMALL])
    assert r.exit_code == 0, r.output
    assert "category" in r.stdout and "total" in r.stdout  # train shows samples per split x category
    video = tmp / "ad.mp4"
    video.write_bytes(b"not opened: the library is checked first")
    return {"good": good, "truncated": truncated, "empty": empty, "ckpt": ckpt, "video": video,
            "missing": tmp / "no_shards_here", "tmp": tmp}


YUYIN_CASES = {
    "train": ["train", "--shards", "{s}", "--steps", "1", "--batch-size", "8", "--checkpoint-dir", "{tmp}/t_{case}",
              "--eval-every", "1", *SMALL],
    "evaluate": ["evaluate", "--checkpoint", "{ckpt}", "--shards", "{s}", "--split", "val", "--out", "{tmp}/e_{case}"],
    "benchmark": ["benchmark", "--shards", "{s}", "--methods", "cca", "--split", "val", "--steps", "1",
                  "--out", "{tmp}/b_{case}"],
    "recommend": ["recommend", "--video", "{video}", "--library", "{s}", "--checkpoint", "{ckpt}",
                  "--index-dir", "{tmp}/i_{case}"],
}
YUYIN_MATRIX = [(c, d) for c in YUYIN_CASES for d in ("missing", "truncated", "empty")
                if not (c == "recommend" and d == "empty")]  # recommend uses every non-empty split


@pytest.mark.parametrize("cmd, damage", YUYIN_MATRIX, ids=[f"{c}-{d}" for c, d in YUYIN_MATRIX])
def test_yuyin_command_on_damaged_shards_is_one_stderr_line(library, cmd, damage):
    from yuyin.cli import main as yuyin

    s = library[damage]
    line = clean_failure(yuyin, [a.format(s=s, case=damage, **library) for a in YUYIN_CASES[cmd]])
    if damage == "truncated":
        assert str(library["truncated"]) in line and ".tar" in line and "c98k build-shards" in line, line
    elif damage == "empty":
        assert "split 'val' is empty" in line and ("--eval-every" in line or "--split" in line), line
    else:
        assert "no shards at" in line and str(s) in line, line


def test_verbose_shows_the_traceback(library):
    from yuyin.cli import main as yuyin

    args = ["-v", "recommend", "--video", str(library["video"]), "--library", str(library["truncated"]),
            "--checkpoint", str(library["ckpt"]), "--index-dir", str(library["tmp"] / "i_verbose")]
    result = CliRunner().invoke(yuyin, args)
    assert result.exit_code == 1 and "Traceback" in result.stderr and "ShardError" in result.stderr


@pytest.mark.parametrize("command", [
    ["build-shards", "--manifest", "{m}", "--out", "{tmp}/shards_noid", "--data-root", "{data_root}"],
    ["stats", "--manifest", "{m}", "--no-report"],
    ["label", "--manifest", "{m}", "--data-root", "{data_root}"],
], ids=["build-shards", "stats", "label"])
def test_a_clips_manifest_without_clip_id_is_named_as_such(inputs, command):
    m = inputs["tmp"] / "clips_no_id.parquet"
    pq.write_table(pq.read_table(inputs["clips"]).drop(["clip_id"]), m)
    line = clean_failure(main, [a.format(m=m, **inputs) for a in command])
    assert f"{m}: not a clips manifest: missing column clip_id" in line, line


def test_verbose_shows_the_traceback_of_a_handled_c98k_error(damaged):
    quiet = CliRunner().invoke(main, ["stats", "--manifest", str(damaged["clips_retyped"]), "--no-report"])
    assert quiet.exit_code == 1 and "Traceback" not in quiet.stderr
    loud = CliRunner().invoke(main, ["-v", "stats", "--manifest", str(damaged["clips_retyped"]), "--no-report"])
    assert loud.exit_code == 1 and "Traceback" in loud.stderr and "ManifestError" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1].startswith("error: ")
