"""Is the shard loader fast enough for the YuYin trainer? Loader samples/s vs training samples/s.

Both are measured in the same run on the same shards: the loader alone (decode + pad + collate,
no model) and the trainer alone (forward, loss, backward, optimizer step on batches already in
memory). The loader must deliver at least 10x what the trainer consumes, so that data never
starves training. It reads real shards: ``--shards`` (default: the demo's, ``demo_work/shards``).
``--synthetic`` builds a synthetic corpus with realistic feature sizes (efficientnet-lite0 frames
1280-d, musicnn audio 200-d, 512-d tag text) and real sequence lengths (24-64 steps) in a temp dir
instead, as a second opinion only.

    .venv/bin/python benchmarks/train_throughput.py [--shards demo_work/shards] [--batch-size 32] [--num-workers 0]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from yuyin.data import load_index, make_loader  # noqa: E402
from yuyin.train import Trainer, load_config, passthrough  # noqa: E402

TARGET = 10.0


def synthetic_shards(tmp: Path, n_clips: int, min_len: int = 24, max_len: int = 64) -> Path:
    """A synthetic corpus at real feature sizes and real sequence lengths, and its shards.

    The corpus generator makes short sequences; real clips (10-60 s, frames at 1 fps, audio
    embeddings about 1 per second) have 24-64 steps, which is what the trainer's cost depends on.
    Every frame/audio sequence is stretched to a random length in ``[min_len, max_len]``.
    """
    import numpy as np
    from synthetic import make_labelled_corpus

    from commercial98k.features import FeatureStore
    from commercial98k.manifest import read_manifest
    from commercial98k.shards import build_shards

    manifest, data_root = make_labelled_corpus(tmp, n_clips=n_clips, dims={"frames": 1280, "audio": 200, "tags": 512})
    store, rng = FeatureStore(data_root), np.random.default_rng(0)
    for row in read_manifest(manifest).to_pylist():
        for col in ("frame_embedding", "audio_embedding"):
            if row.get(col):
                seq = store.get(row[col])
                n = int(rng.integers(min_len, max_len + 1))
                longer = seq[np.linspace(0, len(seq) - 1, n).round().astype(int)] + 0.05 * rng.normal(size=(n, seq.shape[1]))
                _put(data_root / row[col], longer)
    build_shards(manifest, tmp / "shards", data_root, samples_per_shard=100, progress=False)
    return tmp / "shards"


def _put(path: Path, array) -> None:
    import io

    import numpy as np

    from commercial98k.fsutil import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float16), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def loader_rate(shards: Path, batch_size: int, num_workers: int, min_samples: int = 1000) -> float:
    """Samples/s of the training loader alone, set up as the trainer sets it up, over whole epochs."""
    n, epoch = 0, 0
    start = time.perf_counter()
    while n < min_samples:
        for batch in make_loader(shards, "train", batch_size, num_workers=num_workers, seed=epoch, drop_last=True,
                                 collate_fn=passthrough):
            n += len(batch["clip_id"])
        epoch += 1
    return n / (time.perf_counter() - start)


def trainer_rate(shards: Path, batch_size: int, steps: int, device: str, model: dict, threads: int,
                 repeats: int = 3) -> float:
    """Samples/s of training steps on batches held in memory (no data loading in the timed loop)."""
    cfg = load_config(None, shards=str(shards), batch_size=batch_size, steps=steps, device=device, progress=False,
                      model=model, threads=threads, checkpoint_dir=str(shards.parent / "throughput-run"))
    trainer = Trainer(cfg)
    batches = list(itertools.islice(make_loader(shards, "train", batch_size, drop_last=True), 8))
    trainer.train_step(batches[0])  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(steps):
            trainer.train_step(batches[i % len(batches)])
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return max(rates)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=Path, default=ROOT / "demo_work" / "shards",
                    help="Shards folder [demo_work/shards: `python -m pipelines.demo --quick` makes it].")
    ap.add_argument("--synthetic", action="store_true", help="Build a synthetic corpus instead of --shards.")
    ap.add_argument("--clips", type=int, default=400, help="Synthetic corpus size.")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20, help="Timed training steps per repeat.")
    ap.add_argument("--repeats", type=int, default=3, help="Best of N for both rates (other load on the machine).")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="Torch CPU threads for training (0: torch default).")
    ap.add_argument("--video-encoder", default="transformer", choices=["transformer", "gru", "mean"])
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    if not args.synthetic and not (args.shards / "index.json").is_file():
        print(f"error: {args.shards}: no shards (run `python -m pipelines.demo --quick`, pass --shards, "
              "or --synthetic)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="yuyin-throughput-") as tmp:
        shards = synthetic_shards(Path(tmp), args.clips) if args.synthetic else args.shards
        dims = load_index(shards)["dims"]
        model = {"video_encoder": args.video_encoder}
        train_sps = trainer_rate(shards, args.batch_size, args.steps, args.device, model, args.threads, args.repeats)
        load_sps = max(loader_rate(shards, args.batch_size, args.num_workers, max(1000, 5 * args.batch_size))
                       for _ in range(args.repeats))
    ratio = load_sps / train_sps
    print(f"shards: {'synthetic' if args.synthetic else args.shards}  dims: {dims}  batch {args.batch_size}  "
          f"workers {args.num_workers}  device {args.device}  torch threads {torch.get_num_threads()}")
    print(f"trainer: {train_sps:8.1f} samples/s  (forward + loss + backward + step, {args.video_encoder} encoders)")
    print(f"loader:  {load_sps:8.1f} samples/s  (decode + pad + collate, shuffled)")
    print(f"ratio loader/trainer = {ratio:.1f}x  (target >= {TARGET:.0f}x): {'OK' if ratio >= TARGET else 'TOO SLOW'}")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
