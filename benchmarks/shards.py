"""Benchmark: WebDataset shard write/read throughput vs reading per-clip .npy from the feature store.

Generates a synthetic labelled corpus (tests/synthetic.py) of a few thousand clips with
realistic feature sizes in a temp dir, then measures in the same run:

* store read  - the reference: every clip's frames/audio/tags .npy loaded through FeatureStore
* plain read  - the same files with bare ``np.load`` (no path checks), a second reference
* shard write - ``build_shards`` from scratch (reads the store, writes tars, hashes them)
* shard read  - every sample of every split through ``yuyin.data.make_dataset`` (decoded arrays)
* loader read - ``yuyin.data.make_loader`` batches (decode + pad + collate to torch)

and prints samples/s, MB/s and ratios against the reference. Page cache is warm for all
(each source is read once before timing), so the ratios compare formats, not disks.

    .venv/bin/python benchmarks/shards.py [--clips 3000] [--frames-dim 1280] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from synthetic import make_labelled_corpus  # noqa: E402

from commercial98k.export.shards import ShardFilters, build_shards  # noqa: E402
from commercial98k.manifest.io import read_manifest  # noqa: E402
from commercial98k.storage.feature_store import FeatureStore  # noqa: E402
from yuyin.data import make_dataset, make_loader  # noqa: E402


def _store_read(rows: list[dict], store: FeatureStore) -> tuple[int, int]:
    n = nbytes = 0
    for r in rows:
        for column in ("frame_embedding", "audio_embedding", "tag_embedding"):
            nbytes += store.get(r[column], dtype=None).nbytes
        n += 1
    return n, nbytes


def _raw_read(paths: list[Path]) -> int:
    return sum(np.load(p, allow_pickle=False).nbytes for p in paths)


def _file_bytes(rows: list[dict], data_root: Path) -> int:
    return sum((data_root / r[c]).stat().st_size for r in rows
               for c in ("frame_embedding", "audio_embedding", "tag_embedding"))


def _shard_read(out: Path) -> int:
    return sum(1 for split in ("train", "val", "test") for _ in make_dataset(out, split, max_frames=None,
                                                                               max_audio=None, max_tags=None))


def _loader_read(out: Path, batch: int) -> int:
    return sum(len(b["clip_id"]) for split in ("train", "val", "test")
               for b in make_loader(out, split, batch_size=batch, shuffle=False, max_frames=None, max_audio=None))


def timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=3000)
    ap.add_argument("--frames-dim", type=int, default=1280, help="efficientnet-lite0 gives 1280")
    ap.add_argument("--audio-dim", type=int, default=200, help="musicnn penultimate layer gives 200")
    ap.add_argument("--tags-dim", type=int, default=512, help="universal sentence encoder gives 512")
    ap.add_argument("--samples-per-shard", type=int, default=500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="c98k-bench-shards-"))
    try:
        print(f"generating {args.clips} clips in {work} ...", flush=True)
        manifest, data_root = make_labelled_corpus(
            work, n_clips=args.clips, seed=0, failed_share=0.0,
            dims={"frames": args.frames_dim, "audio": args.audio_dim, "tags": args.tags_dim})
        rows = [r for r in read_manifest(manifest).to_pylist() if r["status"] == "ok"]
        store = FeatureStore(data_root)
        npy_bytes = _file_bytes(rows, data_root)

        _store_read(rows, store)  # warm the page cache
        (n_ref, _), t_ref = timed(_store_read, rows, store)
        paths = [data_root / r[c] for r in rows for c in ("frame_embedding", "audio_embedding", "tag_embedding")]
        _, t_raw = timed(_raw_read, paths)

        out = work / "shards"
        shutil.rmtree(out, ignore_errors=True)
        index, t_write = timed(lambda: build_shards(manifest, out, data_root, filters=ShardFilters(),
                                                    samples_per_shard=args.samples_per_shard, progress=False))
        tar_bytes = sum(sh["bytes"] for s in index["splits"].values() for sh in s["shards"])
        n_shards = sum(len(s["shards"]) for s in index["splits"].values())

        _shard_read(out)  # warm
        n_read, t_read = timed(_shard_read, out)
        n_load, t_load = timed(_loader_read, out, args.batch)
        assert n_read == n_load == n_ref, (n_read, n_load, n_ref)

        def line(name: str, n: int, nbytes: int, t: float) -> float:
            rate = n / t
            print(f"{name:34s} {n:6d} samples {t:7.2f} s {rate:9.0f} samples/s {nbytes / t / 1e6:8.1f} MB/s")
            return rate

        print(f"\n{n_ref} clips; {npy_bytes / 1e6:.1f} MB of .npy in {3 * n_ref} files; "
              f"{tar_bytes / 1e6:.1f} MB in {n_shards} shards")
        ref = line("feature store read (reference)", n_ref, npy_bytes, t_ref)
        raw = line("np.load per .npy (no path checks)", n_ref, npy_bytes, t_raw)
        w = line("shard write (build_shards)", n_ref, tar_bytes, t_write)
        r = line("shard read (make_dataset)", n_read, tar_bytes, t_read)
        ld = line(f"shard loader (collate, batch {args.batch})", n_load, tar_bytes, t_load)
        print(f"\nratios vs feature store read: write {w / ref:.2f}x, read {r / ref:.2f}x, loader {ld / ref:.2f}x")
        print(f"ratios vs plain np.load:       write {w / raw:.2f}x, read {r / raw:.2f}x, loader {ld / raw:.2f}x")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
