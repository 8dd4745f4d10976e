"""Benchmark: what the integrity guarantees (per-stage status, fsync'd parts, locks) cost, as ratios against a reference in the same run.

* shard check - ``yuyin.data.make_dataset`` on a split the first time in a process (size + sha256
  of every shard against index.json) vs. a second time (already verified); both followed by reading
  every sample. Reference: the second (verified) pass.
* clip encode - ``split.cut.cut_clip`` (one x264 thread, bit-exact: byte-identical reruns) vs. the
  same encode with ffmpeg's default threading (the former settings). Reference: the threaded encode.
  Each is run twice, and whether its two outputs are byte-identical is printed.
* manifest read - ``read_manifest`` with ``validate_table`` (types, keys, spans, ranges) vs. without,
  on ``--rows`` generated clip rows with 20 shots each. Reference: the unvalidated read.

    .venv/bin/python benchmarks/integrity.py [--clips 600] [--video ../shared/media/videos/big_buck_bunny_0_30.webm]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import ffmpeg  # noqa: E402
from synthetic import make_labelled_corpus  # noqa: E402

import yuyin.data as data  # noqa: E402
from commercial98k.export.shards import build_shards  # noqa: E402
from commercial98k.manifest.io import read_manifest, write_manifest  # noqa: E402
from commercial98k.media.ffmpeg_io import ffmpeg_bin  # noqa: E402
from commercial98k.split.cut import cut_clip  # noqa: E402


def _read_all(shards: Path) -> tuple[float, int]:
    t0, n = time.perf_counter(), 0
    for _ in data.make_dataset(shards, "train"):
        n += 1
    return time.perf_counter() - t0, n


def _threaded_cut(src: Path, out: Path, start: float, end: float) -> None:
    inp = ffmpeg.input(str(src), ss=f"{start:.6f}")
    kw = {"t": f"{end - start:.6f}", "vcodec": "libx264", "preset": "veryfast", "crf": 23, "pix_fmt": "yuv420p",
          "movflags": "+faststart", "format": "mp4", "acodec": "aac", "audio_bitrate": "128k"}
    ffmpeg.output(inp.video.filter("scale", -2, 480), inp.audio, str(out), **kw).overwrite_output().run(
        cmd=ffmpeg_bin(), quiet=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=600)
    ap.add_argument("--rows", type=int, default=98000)
    ap.add_argument("--video", default=str(ROOT.parent / "shared" / "media" / "videos" / "big_buck_bunny_0_30.webm"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest, root = make_labelled_corpus(tmp, n_clips=args.clips, dims={"frames": 1280, "audio": 200, "tags": 512})
        build_shards(manifest, tmp / "shards", root, samples_per_shard=100, progress=False)
        data._VERIFIED.clear()
        first, n = _read_all(tmp / "shards")
        second, _ = _read_all(tmp / "shards")
        print(f"shard check: {n} samples; first open (sha256 check + read) {first:.2f} s, "
              f"verified already {second:.2f} s: ratio {first / second:.2f}")

        rows = [{"video_id": f"v{i // 3}", "clip_id": f"v{i // 3}-c{i % 3:03d}", "status": "ok", "duration_s": 60.0,
                 "clip_start_s": 0.0, "clip_end_s": 10.0, "music_start_s": 0.0, "music_end_s": 30.0,
                 "shots": [{"start_s": float(j), "end_s": float(j + 1)} for j in range(20)],
                 "music_segments": [{"start_s": 0.0, "end_s": 30.0}], "valence": 0.1, "arousal": 0.2,
                 "category_confidence": 0.5, "split": "train", "tags": ["a", "b"]} for i in range(args.rows)]
        write_manifest(rows, tmp / "big.parquet", "clips")
        best = {}
        for validate in (False, True, False, True):
            t0 = time.perf_counter()
            read_manifest(tmp / "big.parquet", "clips", validate=validate)
            best[validate] = min(best.get(validate, 1e9), time.perf_counter() - t0)
        print(f"manifest read: {args.rows} rows, unvalidated {best[False]:.2f} s, validated {best[True]:.2f} s: "
              f"ratio {best[True] / best[False]:.2f}")

        src, times = Path(args.video), {}
        digests: dict[str, set[str]] = {"deterministic": set(), "threaded": set()}
        for name, fn in (("threaded", _threaded_cut),
                         ("deterministic", lambda s, o, a, b: cut_clip(s, o, a, b, height=480))):
            t0 = time.perf_counter()
            for i in range(2):
                out = tmp / f"{name}{i}.mp4"
                fn(src, out, 2.0, 22.0)
                digests[name].add(hashlib.sha256(out.read_bytes()).hexdigest())
            times[name] = (time.perf_counter() - t0) / 2
        print(f"clip encode (20 s, 480p): threaded {times['threaded']:.2f} s "
              f"(byte-identical reruns: {len(digests['threaded']) == 1}), deterministic {times['deterministic']:.2f} s "
              f"(byte-identical reruns: {len(digests['deterministic']) == 1}): ratio "
              f"{times['deterministic'] / times['threaded']:.2f}")


if __name__ == "__main__":
    main()
