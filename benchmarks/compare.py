"""Side by side, in one process, interleaved A B A B: the pipeline against plain references.

* ``fetch vs yt-dlp -a``: ``benchmarks/fetch_vs_ytdlp.py``'s ``measure()`` when it is present
  (loopback URLs), else ``n/a``;
* ``split vs decode``: CPU seconds of ``c98k split``'s per-video step (``--clip-files none``, and
  the other modes for the record) over those of ``ffmpeg -threads 1 -i FILE -f null -`` on the same
  files; lower is better, the target is <= 1.2. Below it, the floor: the decode plus YAMNet and
  the shot detector alone on inputs decoded beforehand;
* ``label per core``: seconds of clip labelled per CPU second (default models, models built and
  warmed up first); the target is >= 25. Below it, the floor: the models alone on decoded inputs;
* ``loader vs raw tar``: samples/s of ``yuyin.data.make_loader`` over those of reading every member
  of the same shards with ``tarfile``; the target is >= 0.8;
* ``loader vs trainer``: loader samples/s over training samples/s (``train_throughput.trainer_rate``);
  the target is >= 10.

Inputs are real: the demo's videos, clips manifest and shards (``--demo``, the work folder of
``python -m pipelines.demo``). CPU time counts this process's threads and its children. The last
line is machine-readable::

    fetch_vs_ytdlp=... split_vs_decode=... label_rt_per_core=... loader_vs_tar=... loader_vs_trainer=...

    .venv/bin/python benchmarks/compare.py --demo demo_work [--videos 8] [--clips 16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus that of its finished children."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one call."""
    c, w = cpu_seconds(), time.perf_counter()
    fn()
    return cpu_seconds() - c, time.perf_counter() - w


# ---------------------------------------------------------------- fetch


def fetch_ratio() -> tuple[float | None, str]:
    if importlib.util.find_spec("fetch_vs_ytdlp") is None:
        return None, "benchmarks/fetch_vs_ytdlp.py not present"
    import fetch_vs_ytdlp

    r = fetch_vs_ytdlp.measure()
    return float(r["ratio_wall"]), (f"{r['urls']} loopback URLs, {r['rounds']} rounds: fetch {r['fetch_wall_s']:.2f} s "
                                    f"wall / {r['fetch_cpu_s']:.2f} s CPU, yt-dlp {r['ytdlp_wall_s']:.2f} / "
                                    f"{r['ytdlp_cpu_s']:.2f} s; CPU ratio {r['ratio_cpu']:.2f}")


# ---------------------------------------------------------------- split


def _copy_media(src: Path, dst: Path, rels: list[str | None]) -> None:
    """Copy (hard-link where possible) the files a stage reads into a scratch data root."""
    for rel in sorted({r for r in rels if r}):
        if not (src / rel).is_file():
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src / rel, dst / rel)
        except OSError:
            shutil.copy2(src / rel, dst / rel)


def split_ratio(demo: Path, n_videos: int, repeats: int, modes: tuple[str, ...]) -> dict:
    """Interleaved per video: ffmpeg null decode, then the split step in each ``--clip-files`` mode."""
    from commercial98k.engine.threads import set_worker_threads
    from commercial98k.manifest.io import read_manifest
    from commercial98k.media.ffmpeg_io import ffmpeg_bin, probe
    from commercial98k.split.music import get_detector
    from commercial98k.split.step import SplitConfig, SplitStep

    set_worker_threads(1)
    rows = [r for r in read_manifest(demo / "manifests" / "videos.parquet", "videos").to_pylist()
            if r.get("status") == "ok"][:n_videos]
    src = demo / "data"
    media_s = sum(probe(src / r["video_path"]).duration_s for r in rows)
    get_detector()
    cpu: dict[str, list[float]] = {"decode": [], **{m: [] for m in modes}}
    with tempfile.TemporaryDirectory(prefix="c98k-compare-") as tmp:
        root = Path(tmp)
        _copy_media(src, root, [r["video_path"] for r in rows])  # paths must stay inside the data root
        steps = {m: SplitStep(SplitConfig(data_root=str(root), clip_files=m), threads=1) for m in modes}
        steps[modes[0]](rows[0])  # warm-up: imports, model
        model_runs = _split_model_runs([src / r["video_path"] for r in rows])
        cpu.update({k: [] for k in model_runs})
        for _ in range(repeats):
            totals = dict.fromkeys(cpu, 0.0)
            for r in rows:
                path = src / r["video_path"]
                totals["decode"] += timed(lambda p=path: subprocess.run(
                    [ffmpeg_bin(), "-nostdin", "-v", "error", "-threads", "1", "-i", str(p), "-f", "null", "-"],
                    check=True))[0]
                for m in modes:
                    result: dict = {}
                    totals[m] += timed(lambda r=r, m=m, out=result: out.update(steps[m](r)))[0]
                    if result.get("status") == "failed":
                        raise RuntimeError(f"split failed on {r['video_id']}: {result.get('error')}")
                    for sub in ("clips", "audio"):
                        shutil.rmtree(root / sub, ignore_errors=True)
            for name, run in model_runs.items():
                totals[name] = timed(run)[0]
            for k, v in totals.items():
                cpu[k].append(v)
    med = {k: median(v) for k, v in cpu.items()}
    return {"videos": len(rows), "media_s": media_s, "cpu": med}


def _split_model_runs(paths: list[Path]) -> dict[str, Callable[[], object]]:
    """YAMNet and the shot detector alone on the videos' audio and scan-size frames decoded
    beforehand: with the decode, the floor of ``split vs decode`` for these detectors."""
    import av
    from scenedetect import FrameTimecode

    from commercial98k.media.ffmpeg_io import load_audio, video_stream
    from commercial98k.media.pyav import reformat
    from commercial98k.split.decode import scan_size
    from commercial98k.split.music import SAMPLE_RATE, get_detector
    from commercial98k.split.shots import make_detector

    tracks = [load_audio(p, SAMPLE_RATE) for p in paths]
    videos = []
    for p in paths:
        with av.open(str(p)) as container:
            vs = video_stream(container)
            size = scan_size(vs.codec_context.width, vs.codec_context.height)
            videos.append((float(vs.average_rate or 25.0), [reformat(f, size, "bgr24") for f in container.decode(vs)]))

    def shots() -> None:
        for rate, frames in videos:
            det = make_detector("adaptive")
            for n, img in enumerate(frames):
                det.process_frame(FrameTimecode(n, rate), img)
            det.post_process(FrameTimecode(len(frames), rate))

    return {"yamnet": lambda: [get_detector().frame_probs(t) for t in tracks], "shots": shots}


# ---------------------------------------------------------------- label


def label_rate(demo: Path, n_clips: int, repeats: int) -> dict:
    """Seconds of clip labelled per CPU second with the default models (built and warmed first)."""
    from commercial98k.engine.threads import set_worker_threads
    from commercial98k.label.batch import LabelOptions, label_batches
    from commercial98k.label.extractors import LabelConfig, models_for
    from commercial98k.manifest.io import read_manifest
    from commercial98k.storage.feature_store import FeatureStore

    set_worker_threads(1)
    rows = [r for r in read_manifest(demo / "manifests" / "c98k.parquet", "clips").to_pylist()
            if r.get("status") == "ok"][:n_clips]
    config = LabelConfig(emotion_model="none")
    models = models_for(config)
    models.provenance()
    opts = LabelOptions()
    media_s = sum(r["clip_end_s"] - r["clip_start_s"] for r in rows)
    runs = []
    with tempfile.TemporaryDirectory(prefix="c98k-compare-label-") as tmp:
        root = Path(tmp)
        _copy_media(demo / "data", root, [r.get(k) for r in rows for k in ("video_path", "clip_path", "audio_path")])
        store = FeatureStore(root)
        list(label_batches(rows[:1], models, store, opts, 1))  # warm-up
        model_runs = _model_runs(rows, models, opts, root)
        alone: dict[str, list[float]] = {k: [] for k in model_runs}
        for _ in range(repeats):
            out: list = []
            runs.append(timed(lambda out=out: out.extend(label_batches(rows, models, store, opts, 1)))[0])
            bad = [r for r in out if r["status"] != "ok"]
            if bad:
                raise RuntimeError(f"label failed: {bad[0]['clip_id']}: {bad[0]['error']}")
            shutil.rmtree(root / "features", ignore_errors=True)
            for name, run in model_runs.items():
                alone[name].append(timed(run)[0])
    return {"clips": len(rows), "media_s": media_s, "cpu": median(runs),
            "models": {k: median(v) for k, v in alone.items()}}


def _model_runs(rows: list[dict], models, opts, root: Path) -> dict[str, Callable[[], object]]:
    """The label models' runs on the clips' inputs decoded beforehand: the floor of ``label per core``
    (what no decode, batching or threading change can go under with these models)."""
    import numpy as np

    from commercial98k.label.batch import decode_row
    from commercial98k.label.extractors import audio_features
    from commercial98k.models.ocr import clip_keyframes

    decoded = [decode_row(r, root, models, opts) for r in rows]
    frames = np.concatenate([d.frames for d in decoded])
    keyframes = [clip_keyframes(root / r["video_path"], r["clip_start_s"], r["clip_end_s"], r.get("shots"),
                                r.get("width"), r.get("height"), models.config.ocr_frames) for r in rows]
    run = {"frames": lambda: models.frames.embed_images(frames),
           "audio": lambda: [audio_features(d.audio, models) for d in decoded]}
    if models.ocr is not None:
        run["ocr"] = lambda: [models.ocr.read_frames(k) for k in keyframes]
    return run


# ---------------------------------------------------------------- loader


def _raw_tar(urls: list[str]) -> int:
    """The reference: open each shard with ``tarfile`` and read every member's bytes; returns samples."""
    n = 0
    for url in urls:
        with tarfile.open(url) as tf:
            keys = set()
            for member in tf:
                if member.isfile():
                    tf.extractfile(member).read()
                    keys.add(member.name.split(".", 1)[0])
            n += len(keys)
    return n


def loader_ratios(shards: Path, batch_size: int, repeats: int, min_samples: int, train_steps: int) -> dict:
    """Interleaved rounds of: raw tar read, loader, trainer (the default model on CPU, batches in memory).

    The trainer is built first, so the loader runs under the trainer's torch thread setting, as in
    training. The loader is one ``make_loader`` iterated epoch after epoch (shuffled, every batch kept).
    """
    import torch
    from train_throughput import TrainerBench

    from yuyin.data import load_index, make_loader, shard_urls
    from yuyin.train import passthrough

    urls = shard_urls(shards, "train")
    n_train = int(load_index(shards)["splits"]["train"]["samples"])
    batch_size = max(2, min(batch_size, n_train))  # the trainer needs one full batch
    trainer = TrainerBench(shards, batch_size)
    loader = make_loader(shards, "train", batch_size, num_workers=0, drop_last=False, collate_fn=passthrough)

    def read_loader() -> int:
        n = 0
        while n < min_samples:
            for batch in loader:
                n += len(batch["clip_id"])
        return n

    def read_tar() -> int:
        n = 0
        while n < min_samples:
            n += _raw_tar(urls)
        return n

    read_loader(), read_tar()  # warm the page cache and imports
    tar_rates, loader_rates, train_rates = [], [], []
    for _ in range(repeats):
        for rates, fn in ((tar_rates, read_tar), (loader_rates, read_loader)):
            t = time.perf_counter()
            n = fn()
            rates.append(n / (time.perf_counter() - t))
        train_rates.append(trainer.rate(train_steps))
    return {"tar": median(tar_rates), "loader": median(loader_rates), "trainer": median(train_rates),
            "batch": batch_size, "threads": torch.get_num_threads(), "samples": n_train}


# ---------------------------------------------------------------- main


def fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=ROOT / "demo_work", help="The demo's work folder [demo_work].")
    ap.add_argument("--videos", type=int, default=8, help="Videos to split.")
    ap.add_argument("--clips", type=int, default=12, help="Clips to label.")
    ap.add_argument("--repeats", type=int, default=2, help="Interleaved rounds; medians are reported.")
    ap.add_argument("--batch-size", type=int, default=32,
                    help="Loader and trainer batch size [32: the trainer's default; at most the train split's size].")
    ap.add_argument("--modes", default="none,copy,encode", help="--clip-files modes to time (the first is the ratio's).")
    ap.add_argument("--skip", default="", help="Comma-separated parts to skip: fetch,split,label,loader.")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    if not (args.demo / "manifests" / "c98k.parquet").is_file():
        print(f"error: {args.demo}: no demo corpus (run `python -m pipelines.demo --quick --work-dir {args.demo}`)",
              file=sys.stderr)
        return 2
    print(f"inputs: {args.demo}  load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores  "
          f"repeats {args.repeats} (interleaved, medians)", flush=True)
    class Rows(list):
        def append(self, row) -> None:  # show each result as soon as it is measured
            super().append(row)
            print("  " + "  ".join(row), flush=True)

    rows: list[tuple[str, str, str, str]] = Rows()
    summary: dict[str, float | None] = dict.fromkeys(
        ("fetch_vs_ytdlp", "split_vs_decode", "label_rt_per_core", "loader_vs_tar", "loader_vs_trainer"))

    if "fetch" not in skip:
        ratio, note = fetch_ratio()
        summary["fetch_vs_ytdlp"] = ratio
        rows.append(("fetch vs yt-dlp -a (wall)", fmt(ratio), "<= 1.5", note))
    if "split" not in skip:
        modes = tuple(m for m in args.modes.split(",") if m)
        s = split_ratio(args.demo, args.videos, args.repeats, modes)
        dec = s["cpu"]["decode"]
        summary["split_vs_decode"] = s["cpu"][modes[0]] / dec
        rows.append(("ffmpeg -f null decode", f"{s['media_s'] / dec:.1f}x rt/core", "reference",
                     f"{s['videos']} videos, {s['media_s']:.0f} s"))
        for m in modes:
            rows.append((f"split --clip-files {m} vs decode", f"{s['cpu'][m] / dec:.2f}", "<= 1.2" if m == modes[0] else "",
                         f"{s['media_s'] / s['cpu'][m]:.1f}x real time per core"))
        floor = dec + s["cpu"]["yamnet"] + s["cpu"]["shots"]
        rows.append(("  decode + its detectors (floor)", f"{floor / dec:.2f}", "",
                     f"YAMNet alone {s['cpu']['yamnet'] / dec:.2f} and the shot detector alone "
                     f"{s['cpu']['shots'] / dec:.2f} of the decode, on inputs decoded beforehand"))
    if "label" not in skip:
        lab = label_rate(args.demo, args.clips, args.repeats)
        summary["label_rt_per_core"] = lab["media_s"] / lab["cpu"]
        rows.append(("label per core", f"{summary['label_rt_per_core']:.1f}x rt", ">= 25",
                     f"{lab['clips']} clips, {lab['media_s']:.0f} s, {lab['cpu']:.1f} CPU s"))
        models_cpu = sum(lab["models"].values())
        rows.append(("  its models alone (floor)", f"{lab['media_s'] / models_cpu:.1f}x rt", "",
                     "decoded inputs, CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in lab["models"].items())))
    if "loader" not in skip:
        ld = loader_ratios(args.demo / "shards", args.batch_size, args.repeats, 2000, 10)
        summary["loader_vs_tar"] = ld["loader"] / ld["tar"]
        summary["loader_vs_trainer"] = ld["loader"] / ld["trainer"]
        rows.append(("loader vs raw tar", f"{summary['loader_vs_tar']:.2f}", ">= 0.8",
                     f"loader {ld['loader']:.0f}/s (tar read, decode, pad, collate to torch, batch {ld['batch']}); "
                     f"tarfile reading every member's bytes {ld['tar']:.0f}/s; train split, {ld['samples']} samples"))
        rows.append(("loader vs trainer", f"{summary['loader_vs_trainer']:.1f}", ">= 10",
                     f"trainer {ld['trainer']:.0f} samples/s (default YuYin model, CPU train step, batch {ld['batch']}, "
                     f"torch threads {ld['threads']})"))

    print(f"\n{'comparison':34s} {'ratio':>16s} {'target':>8s}  notes")
    for name, ratio, target, note in rows:
        print(f"{name:34s} {ratio:>16s} {target:>8s}  {note}")
    print(" ".join(f"{k}={fmt(v)}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
