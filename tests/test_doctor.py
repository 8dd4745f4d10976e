"""``c98k doctor``: one ✓/✗ line per tool; CI runs it (Makefile `test`), so a machine without deno fails."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pipelines.commands.doctor import command


def test_doctor_passes_here_and_names_each_tool(tmp_path: Path) -> None:
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n"
                       ".youtube.com\tTRUE\t/\tTRUE\t2000000000\tPREF\tf6=40000000\n"
                       "#HttpOnly_.bilibili.com\tTRUE\t/\tFALSE\t2000000000\tSESSDATA\tx\n")
    run = CliRunner().invoke(command, ["--data-root", str(tmp_path / "data"), "--cookies", str(cookies),
                                       "--min-free-gb", "0.01"])
    print(run.output)
    assert run.exit_code == 0, run.output
    lines = run.output.splitlines()
    names = [ln[2:].split(":")[0] for ln in lines]
    assert names == ["yt-dlp", "JS runtime", "EJS scripts", "ffmpeg", "ffprobe", "fpcalc/libchromaprint",
                     "onnxruntime", "torch/CUDA", "cookies", "data root", "manifest folder"]
    assert all(ln[0] in "✓✗" for ln in lines)
    js = next(ln for ln in lines if ln[2:].startswith("JS runtime"))
    assert js.startswith("✓ JS runtime: deno ")
    assert "2 cookies for bilibili.com, youtube.com" in run.output


def test_doctor_fails_on_a_bad_cookies_file_and_dead_ray_address(tmp_path: Path) -> None:
    bad = tmp_path / "cookies.txt"
    bad.write_text("session=abc\n")
    run = CliRunner().invoke(command, ["--data-root", str(tmp_path), "--cookies", str(bad),
                                       "--address", "ray://127.0.0.1:1", "--min-free-gb", "0"])
    assert run.exit_code == 1
    assert "✗ cookies:" in run.output and "not a Netscape cookies.txt" in run.output
    assert "✗ Ray: ray://127.0.0.1:1: cannot connect" in run.output
    assert run.stderr.strip() == "error: not ready: cookies, Ray"
