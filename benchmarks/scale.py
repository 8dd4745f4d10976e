"""Scale: planning a 1 M-clip manifest, the music-identity index, split on 1 vs 2 Ray actors.

    PYTHONPATH=. .venv/bin/python benchmarks/scale.py                    # everything
    PYTHONPATH=. .venv/bin/python benchmarks/scale.py --rows 200000 --skip-split

1. **plan**: a synthetic clips manifest of ``--rows`` rows (99 % labelled by the current models,
   with an empty fake feature file each under ``features/audio/...``). Each planner runs in its
   own process; it prints the driver's peak RSS and wall time. ``streamed`` is
   ``manifest.scan.iter_pending`` + one listing of the feature folder; the reference is the old
   ``read_manifest(...).to_pylist()`` + one ``stat`` per row, on ``--ref-rows`` rows (it needs
   ~13 KB per row).
2. **identity**: seconds to add 10 k new clips (half of them cuts of known tracks) to a
   ``MusicIndex`` holding 10 k, 100 k and 1 M known clips (synthetic 32-item fingerprints with
   4 % bit errors). The ratio to the 10 k time shows the growth against linear (10x, 100x).
3. **manifest**: seconds to add ``--add-rows`` (10 k) rows to the ``--rows`` manifest through
   ``ManifestWriter`` (parts merged size-tiered, the base untouched) against the full rewrite
   every run's compaction used to do (``compact(full=True)``).
4. **split**: videos/s of the split stage (``SplitStage`` on ``run_stage`` with a ``RayExecutor``) with 1
   and with 2 actors on a local Ray cluster (``tests/ray_cluster.LocalCluster``: 127.0.0.1, its
   own temp dir, stopped at the end), ``--split-videos`` generated 6 s videos. Start-up (actors
   and YAMNet) is reported apart from the steady-state rate, which the ratio uses.

    PYTHONPATH=. .venv/bin/python benchmarks/scale.py --skip-plan --skip-identity --skip-manifest  # split only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from commercial98k.manifest.schema import schema_for  # noqa: E402

AUDIO_TAG = "musicnn 1 abcdef123456"


def make_manifest(path: Path, rows: int, data_root: Path, fake_files: bool) -> None:
    """``rows`` clip rows written in chunks (never all in memory), 1 % not yet labelled."""
    schema = schema_for("clips")
    feat = data_root / "features" / "audio" / "musicnn"
    feat.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            ids = [f"v{(start + i) // 10:07d}-c{(start + i) % 10:03d}" for i in range(n)]
            labelled = [(start + i) % 100 != 0 for i in range(n)]
            cols = {f.name: pa.nulls(n, f.type) for f in schema}
            cols["clip_id"] = pa.array(ids)
            cols["video_id"] = pa.array([c[:8] for c in ids])
            cols["status"] = pa.array(["ok"] * n)
            cols["audio_model"] = pa.array([AUDIO_TAG if lab else None for lab in labelled])
            cols["audio_embedding"] = pa.array([f"features/audio/musicnn/{c}.npy" if lab else None
                                                for c, lab in zip(ids, labelled, strict=True)])
            cols["title"] = pa.array([f"an ad title number {start + i} with some words" for i in range(n)])
            w.write_table(pa.Table.from_pydict(cols, schema=schema))
            if fake_files:
                for c, lab in zip(ids, labelled, strict=True):
                    if lab:
                        open(feat / f"{c}.npy", "wb").close()


def plan_streamed(manifest: str, data_root: str) -> int:
    import pyarrow.compute as pc

    from commercial98k.manifest.scan import iter_pending

    # one listing of the feature folder instead of one stat per row
    have = pa.array([e.name for e in os.scandir(Path(data_root) / "features" / "audio" / "musicnn")])

    def select(b: pa.RecordBatch) -> pa.Array:
        stale = pc.fill_null(pc.not_equal(b.column("audio_model"), AUDIO_TAG), True)
        names = pc.utf8_slice_codeunits(b.column("audio_embedding"), len("features/audio/musicnn/"), 1000)
        missing = pc.invert(pc.fill_null(pc.is_in(names, value_set=have), False))
        return pc.and_(pc.equal(b.column("status"), "ok"), pc.or_(stale, missing))

    return sum(len(chunk) for chunk in iter_pending(manifest, "clips", ["status", "audio_model", "audio_embedding"],
                                                    select))


def plan_reference(manifest: str, data_root: str) -> int:
    from commercial98k.manifest.io import read_manifest

    rows = read_manifest(manifest, "clips").to_pylist()
    root = Path(data_root)
    return sum(1 for r in rows if r["status"] == "ok" and (r.get("audio_model") != AUDIO_TAG
                                                           or not (root / (r.get("audio_embedding") or "x")).is_file()))


def split_child(data_root: str, start: str, stop: str) -> None:
    """Control for the split bench, no Ray: split videos s<start>..s<stop-1> in this process (1 thread)."""
    from commercial98k.engine.threads import set_worker_threads
    from commercial98k.split.music import get_detector

    set_worker_threads(1)
    get_detector()
    from commercial98k.split.step import SplitConfig, SplitStep

    step = SplitStep(SplitConfig(data_root=data_root), 1)
    t = time.perf_counter()
    for i in range(int(start), int(stop)):
        step({"video_id": f"s{i}", "video_path": f"videos/s{i}.mp4", "status": "ok"})
    print(json.dumps({"seconds": time.perf_counter() - t}))


def split_control(data_root: Path, n: int) -> dict[int, float]:
    """videos/s of 1 plain process over ``n`` videos and of 2 concurrent ones over half each (steady state)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    rates = {}
    for procs in (1, 2):
        bounds = [(k * n // procs, (k + 1) * n // procs) for k in range(procs)]
        running = [subprocess.Popen([sys.executable, __file__, "--split-child", str(data_root), str(a), str(b)],
                                    stdout=subprocess.PIPE, text=True, env=env) for a, b in bounds]
        secs = [json.loads(p.communicate()[0].strip().splitlines()[-1])["seconds"] for p in running]
        rates[procs] = n / max(secs)
    return rates


def child(kind: str, manifest: str, data_root: str) -> None:
    t = time.perf_counter()
    n = (plan_streamed if kind == "streamed" else plan_reference)(manifest, data_root)
    print(json.dumps({"pending": n, "seconds": time.perf_counter() - t,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_child(kind: str, manifest: Path, data_root: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(manifest), str(data_root)],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_plan(args, tmp: Path) -> None:
    print(f"== plan: {args.rows:,} clip rows (reference on {args.ref_rows:,})")
    for label, rows, kind in (("streamed", args.rows, "streamed"), ("reference", args.ref_rows, "reference")):
        d = tmp / f"plan-{rows}"
        if not (d / "c98k.parquet").exists():
            d.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            make_manifest(d / "c98k.parquet", rows, d / "data", True)
            print(f"   (made {rows:,} rows + fake feature files in {time.perf_counter() - t:.0f} s)")
        r = run_child(kind, d / "c98k.parquet", d / "data")
        print(f"{label:9s}: {rows:9,d} rows  plan {r['seconds']:7.1f} s  driver peak RSS {r['peak_rss_mb']:7.0f} MB  "
              f"pending {r['pending']:,}  ({r['peak_rss_mb'] * 1024 / rows:.1f} KB/row)")


def synthetic_fingerprints(n: int, tracks: np.ndarray, rng: np.random.Generator, prefix: str,
                           track_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``n`` noisy 32-item cuts of rows of ``tracks`` (4 % bit errors)."""
    t = track_ids if track_ids is not None else rng.integers(0, len(tracks), n)
    off = rng.integers(0, tracks.shape[1] - 32, n)
    cuts = tracks[t[:, None], off[:, None] + np.arange(32)[None, :]]
    noise = rng.integers(0, 2**32, cuts.shape, dtype=np.uint32)
    for _ in range(4):  # AND of 5 random words: each bit set with p = 1/32 (~3 %)
        noise &= rng.integers(0, 2**32, cuts.shape, dtype=np.uint32)
    cuts ^= noise
    return {f"{prefix}{i:07d}": cuts[i] for i in range(n)}


def bench_identity(args, tmp: Path) -> None:
    from commercial98k.identity.index import MusicIndex

    print("== identity: add 10k new clips to an index of N known clips")
    base = None
    for known in args.known:
        rng = np.random.default_rng(0)
        n_tracks = max(1, known // 5)
        tracks = rng.integers(0, 2**32, (n_tracks + 5000, 64), dtype=np.uint32)
        idx = MusicIndex(tmp / f"idx-{known}")
        t = time.perf_counter()
        for s in range(0, known, 200_000):
            m = min(200_000, known - s)
            ids = rng.integers(0, n_tracks, m)
            fps = synthetic_fingerprints(m, tracks, rng, f"k{s:08d}-", ids)
            idx.bulk_load({k: f"m-t{ids[i]}" for i, k in enumerate(fps)}, fps)
        load = time.perf_counter() - t
        new_ids = np.concatenate([rng.integers(0, n_tracks, 5000), n_tracks + rng.integers(0, 5000, 5000)])
        new = synthetic_fingerprints(10_000, tracks, rng, "new-", new_ids)
        t = time.perf_counter()
        got = idx.add(new)
        dt = time.perf_counter() - t
        base = base or dt
        joined = sum(1 for i, k in enumerate(sorted(new)) if got[k].startswith("m-t"))
        print(f"known {known:9,d}: add 10k in {dt:6.2f} s  ({dt / base:5.2f}x the 10k time, known x{known / args.known[0]:.0f}); "
              f"{joined:,} joined a known track (5,000 were cuts of one); segments {len(idx.segments)}; "
              f"bulk load {load:.0f} s")


def bench_manifest(args, tmp: Path) -> None:
    """Add 10k rows to a manifest of ``--rows`` rows: incremental (parts, size-tiered merges) vs a full rewrite."""
    from commercial98k.engine.stage import write_part
    from commercial98k.manifest.compact import merge_parts
    from commercial98k.manifest.io import ManifestWriter, compact, list_parts

    n_add = args.add_rows
    print(f"== manifest: add {n_add:,} rows to {args.rows:,} clip rows")
    d = tmp / f"manifest-{args.rows}"
    d.mkdir(parents=True, exist_ok=True)
    path = d / "c98k.parquet"
    t = time.perf_counter()
    make_manifest(path, args.rows, d / "data", False)
    print(f"   (made {args.rows:,} rows in {time.perf_counter() - t:.0f} s)")
    new = [{"clip_id": f"n{i:07d}-c000", "video_id": f"n{i:07d}", "status": "ok", "title": f"new ad {i}"}
           for i in range(n_add)]
    ino = os.stat(path).st_ino
    t = time.perf_counter()
    with ManifestWriter(path, "clips", flush_every=64) as w:  # split's flush size is 32, label's batches 8-32
        w.extend(new)
    incremental = time.perf_counter() - t
    parts = list_parts(path)
    assert os.stat(path).st_ino == ino, "the base was rewritten"
    t = time.perf_counter()
    compact(path, "clips", full=True)  # what every run's compaction did before: read and rewrite every row
    full = time.perf_counter() - t
    t = time.perf_counter()  # the flushes alone (the part of both ways that does not depend on the base)
    for i in range(0, n_add, 64):
        write_part(path, "clips", new[i:i + 64], f"bench-{i:07d}")
    flushes = time.perf_counter() - t
    t = time.perf_counter()
    merge_parts(path, "clips")
    merges = time.perf_counter() - t
    print(f"incremental (ManifestWriter): {incremental:6.2f} s, {n_add // 64} flushes -> {len(parts)} part(s), "
          f"base untouched; of which flushes alone ~{flushes:.2f} s, size-tiered merges ~{merges:.2f} s")
    print(f"full rewrite of the base (each run's compaction before): {full:6.2f} s on top of the flushes")
    print(f"compaction cost: incremental merges {merges:.2f} s vs full rewrite {full:.2f} s = "
          f"{full / max(merges, 1e-9):.1f}x less; whole add: {incremental:.1f} s vs {flushes + full:.1f} s")


def bench_split(args, tmp: Path) -> None:
    """items/s of split on 1 and 2 Ray actors, start-up (actor + YAMNet) apart from steady state."""
    print(f"== split: {args.split_videos} generated 6 s videos on a local Ray cluster (127.0.0.1, own temp dir), "
          "1 vs 2 actors")
    media = ROOT.parent / "shared" / "media" / "emotify" / "audio"
    track = next(iter(sorted(media.glob("*.mp3"))), None)
    base = tmp / "split"
    videos = base / "data" / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(args.split_videos):
        out = videos / f"s{i}.mp4"
        audio = ["-ss", str(5 + i % 20), "-i", str(track)] if track else ["-f", "lavfi", "-i", "sine=f=440"]
        if not out.exists():
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                            *audio, "-t", "6", "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset",
                            "ultrafast", "-c:a", "aac", "-shortest", str(out)], check=True)
        rows.append(dict(video_id=f"s{i}", platform="local", platform_id=f"s{i}", video_path=f"videos/s{i}.mp4",
                         category="cosmetics", status="ok"))
    from commercial98k.manifest.io import write_manifest

    write_manifest(rows, base / "videos.parquet", "videos")
    sys.path.insert(0, str(ROOT / "tests"))
    from ray_cluster import LocalCluster, connect_driver, disconnect_driver

    from commercial98k.engine.ray_executor import RayExecutor
    from commercial98k.engine.runner import WorkerParts, run_stage
    from commercial98k.split.step import SplitStage
    from pipelines.split import SplitConfig, pending_videos

    config = SplitConfig(data_root=str((base / "data").resolve()))
    cluster = LocalCluster(num_cpus=2)
    rates: dict[int, list[float]] = {1: [], 2: []}
    try:
        old = connect_driver(cluster.address)
        try:
            for rnd in range(args.split_rounds):  # alternate, so a change of the machine's load hits both
                for workers in (1, 2):
                    out = base / f"c98k-{rnd}-{workers}.parquet"
                    for stale in (out, out.with_name(out.stem + ".parts"), out.with_name(out.stem + ".identity")):
                        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
                    todo, _ = pending_videos(base / "videos.parquet", out)
                    executor = RayExecutor(workers, data_root=config.data_root, measure=True)
                    done: list[dict] = []
                    t = time.perf_counter()
                    stats = run_stage(SplitStage(config), todo, executor=executor, sink=WorkerParts(out, "clips"),
                                      progress=False, on_row=done.append).stats
                    wall = time.perf_counter() - t
                    rates[workers].append(len(todo) / stats["run_s"])
                    ok = len({r["clip_id"].rsplit("-", 1)[0] for r in done if r["status"] == "ok"})
                    print(f"round {rnd}, {workers} actor(s): steady {rates[workers][-1]:.3f} videos/s ({len(todo)} "
                          f"videos in {stats['run_s']:.1f} s, {ok} split ok); start-up {stats['setup_s']:.1f} s "
                          f"(actors + YAMNet); wall {wall:.1f} s = {len(todo) / wall:.3f} videos/s "
                          f"(load average {os.getloadavg()[0]:.1f})")
        finally:
            disconnect_driver(old)
    finally:
        cluster.stop()
    control = split_control(base / "data", args.split_videos)
    print(f"control without Ray (1 vs 2 plain processes, 1 thread each, same videos): {control[1]:.3f} vs "
          f"{control[2]:.3f} videos/s = {control[2] / control[1]:.2f}x: what this machine gives two processes now")
    best = {w: max(r) for w, r in rates.items()}  # the least-disturbed run of each
    print(f"2 vs 1 actors (steady state, best of {args.split_rounds}): {best[2] / best[1]:.2f}x  (target >= 1.7x; "
          f"cores here: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}: other processes share these cores)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--split-child":
        split_child(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--ref-rows", type=int, default=100_000)
    ap.add_argument("--known", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--split-videos", type=int, default=24)
    ap.add_argument("--split-rounds", type=int, default=2, help="Alternating 1- and 2-actor runs of the split bench")
    ap.add_argument("--add-rows", type=int, default=10_000, help="Rows added to the --rows manifest (manifest bench)")
    ap.add_argument("--skip-plan", action="store_true")
    ap.add_argument("--skip-identity", action="store_true")
    ap.add_argument("--skip-split", action="store_true")
    ap.add_argument("--skip-manifest", action="store_true")
    ap.add_argument("--tmp", default=None, help="Work folder (default: a temporary one, removed after)")
    args = ap.parse_args()
    tmp = Path(args.tmp) if args.tmp else Path(tempfile.mkdtemp(prefix="c98k-scale-"))
    try:
        if not args.skip_plan:
            bench_plan(args, tmp)
        if not args.skip_identity:
            bench_identity(args, tmp)
        if not args.skip_manifest:
            bench_manifest(args, tmp)
        if not args.skip_split:
            bench_split(args, tmp)
    finally:
        if not args.tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
