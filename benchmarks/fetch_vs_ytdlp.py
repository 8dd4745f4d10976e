"""Benchmark: ``c98k fetch`` vs plain ``yt-dlp -a`` on the same N loopback URLs.

Serves N product-video pages of the loopback catalog (``commercial98k.testing``), each with a
real video from ../shared/media/videos, and times, interleaved (A B A B ...) in fresh folders:

* A - ``c98k fetch -s urls.txt`` (expansion, download, PyAV check, sha256, manifest rows)
* B - ``yt-dlp -a urls.txt`` with the same format selector and output folder: the reference

Prints median wall and CPU seconds (children's user+sys) and the ratios A/B; the target is
<= 1.5x. ``measure(...) -> dict`` is importable (``benchmarks/compare.py``). The last line is
machine-readable: ``fetch_vs_ytdlp=<wall ratio> fetch_vs_ytdlp_cpu=<cpu ratio>``.

    .venv/bin/python benchmarks/fetch_vs_ytdlp.py [--urls 20] [--rounds 3] [--workers 1] [--check]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from commercial98k.sources import YtdlpOptions  # noqa: E402
from commercial98k.testing.catalog_server import CatalogServer  # noqa: E402

TARGET = 1.5
SOURCES = ("videollava_sample_demo_22.mp4", "big_buck_bunny_0_30.webm")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(cmd: list[str], env: dict) -> tuple[float, float]:
    cpu0, t0 = _children_cpu(), time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({run.returncode}): {run.stderr.strip()[-400:]}")
    return wall, cpu


def measure(urls: int = 20, rounds: int = 3, workers: int = 1, media: Path | None = None) -> dict:
    """Run the interleaved comparison; returns medians (seconds) and the ratios fetch / yt-dlp."""
    media = media or ROOT.parent / "shared" / "media" / "videos"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fmt = YtdlpOptions().format_selector()
    times: dict[str, list[tuple[float, float]]] = {"fetch": [], "ytdlp": []}
    with tempfile.TemporaryDirectory(prefix="c98k-bench-fetch-") as tmp_s:
        tmp = Path(tmp_s)
        shop = tmp / "shop"
        shop.mkdir()
        names = []
        for i in range(urls):
            src = media / SOURCES[i % len(SOURCES)]
            name = f"ad{i:03d}{src.suffix}"
            (shop / name).symlink_to(src)  # repeats of two real videos (c98k marks repeats duplicate)
            names.append(name)
        with CatalogServer(shop, {"food": names}) as server:
            url_file = tmp / "urls.txt"
            url_file.write_text("".join(server.video_page_url("food", n) + "\n" for n in names))
            for r in range(rounds):
                a, b = tmp / f"a{r}", tmp / f"b{r}"
                fetch_cmd = [sys.executable, "-m", "pipelines.cli", "fetch", "-c", "food", "-s", str(url_file),
                             "--data-root", str(a), "--manifest", str(a / "videos.parquet"),
                             "--workers", str(workers)]
                ytdlp_cmd = [sys.executable, "-m", "yt_dlp", "-a", str(url_file), "-q", "--no-progress",
                             "-f", fmt, "-P", str(b), "-o", "%(id)s.%(ext)s", "-N", "1"]
                times["fetch"].append(_timed(fetch_cmd, env))
                times["ytdlp"].append(_timed(ytdlp_cmd, env))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    return {
        "urls": urls, "rounds": rounds, "workers": workers,
        "fetch_wall_s": med["fetch"][0], "fetch_cpu_s": med["fetch"][1],
        "ytdlp_wall_s": med["ytdlp"][0], "ytdlp_cpu_s": med["ytdlp"][1],
        "ratio_wall": med["fetch"][0] / med["ytdlp"][0], "ratio_cpu": med["fetch"][1] / med["ytdlp"][1],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--urls", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--check", action="store_true", help=f"exit 1 when the wall ratio exceeds {TARGET}")
    args = ap.parse_args()
    m = measure(args.urls, args.rounds, args.workers)
    print(f"{m['urls']} loopback URLs, {m['rounds']} interleaved rounds, --workers {m['workers']} (medians)")
    print(f"{'':14}{'wall s':>9}{'cpu s':>9}")
    print(f"{'yt-dlp -a':14}{m['ytdlp_wall_s']:9.2f}{m['ytdlp_cpu_s']:9.2f}   reference")
    print(f"{'c98k fetch':14}{m['fetch_wall_s']:9.2f}{m['fetch_cpu_s']:9.2f}   "
          f"{m['ratio_wall']:.2f}x wall, {m['ratio_cpu']:.2f}x cpu (target <= {TARGET}x)")
    print(f"fetch_vs_ytdlp={m['ratio_wall']:.2f} fetch_vs_ytdlp_cpu={m['ratio_cpu']:.2f}")
    return 1 if args.check and m["ratio_wall"] > TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
