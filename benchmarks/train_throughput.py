"""Is the shard loader fast enough for the YuYin trainer? Loader samples/s vs training samples/s.

Both are measured in the same process on the same shards, in interleaved rounds (trainer,
loader, trainer, loader, ...; medians): the trainer alone (the default YuYin model's forward,
loss, backward and optimizer step on CPU at the trainer's default batch size and torch threads,
on batches already in memory) and the loader alone (``make_loader`` per epoch as the trainer
calls it: tar read, decode, pad, collate; no model), which shares the trainer's thread setting as
it does in training. The loader must deliver at least 10x what the trainer consumes, so that
data never starves training. It reads real shards: ``--shards`` (default: the demo's, ``demo_work/shards``).
``--synthetic`` builds a synthetic corpus with realistic feature sizes (efficientnet-lite0 frames
1280-d, musicnn audio 200-d, 512-d tag text) and real sequence lengths (24-64 steps) in a temp dir
instead, as a second opinion only.

    .venv/bin/python benchmarks/train_throughput.py [--shards demo_work/shards] [--batch-size 32] [--num-workers 0]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from yuyin.config import TrainConfig  # noqa: E402
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

    from commercial98k.export.shards import build_shards
    from commercial98k.manifest.io import read_manifest
    from commercial98k.storage.feature_store import FeatureStore

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

    from commercial98k.storage.files import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float16), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def loader_rate(shards: Path, batch_size: int, num_workers: int, min_samples: int = 1000) -> float:
    """Samples/s of the training loader alone, set up as the trainer sets it up (a new loader per
    epoch, shuffled, last partial batch dropped), over whole epochs of at least ``min_samples``."""
    n, epoch = 0, 0
    start = time.perf_counter()
    while n < min_samples:
        for batch in make_loader(shards, "train", batch_size, num_workers=num_workers, seed=epoch, drop_last=True,
                                 collate_fn=passthrough):
            n += len(batch["clip_id"])
        epoch += 1
    return n / (time.perf_counter() - start)


class TrainerBench:
    """Training steps of the YuYin model on batches held in memory (no data loading in the timed loop).

    ``model`` overrides ``YuYinConfig`` (``{}``: the default model); ``threads`` is the trainer's
    torch CPU thread count (``TrainConfig.threads``, default 1), which the loader then shares.
    """

    def __init__(self, shards: Path, batch_size: int, device: str = "cpu", model: dict | None = None,
                 threads: int = TrainConfig.threads):
        cfg = load_config(None, shards=str(shards), batch_size=batch_size, device=device, progress=False,
                          model=model or {}, threads=threads, checkpoint_dir=str(shards.parent / "throughput-run"))
        self.trainer = Trainer(cfg)
        self.batch_size = batch_size
        self.batches = list(itertools.islice(make_loader(shards, "train", batch_size, drop_last=True), 8))
        if not self.batches:
            raise ValueError(f"{shards}: the train split has fewer than {batch_size} samples (one batch)")
        self.trainer.train_step(self.batches[0])  # warm-up

    def rate(self, steps: int) -> float:
        """Samples/s over ``steps`` training steps (forward, loss, backward, optimizer step)."""
        start = time.perf_counter()
        for i in range(steps):
            self.trainer.train_step(self.batches[i % len(self.batches)])
        return steps * self.batch_size / (time.perf_counter() - start)


def trainer_rate(shards: Path, batch_size: int, steps: int, device: str, model: dict, threads: int,
                 repeats: int = 3) -> float:
    """Median samples/s of ``repeats`` runs of ``steps`` training steps on batches in memory."""
    bench = TrainerBench(shards, batch_size, device, model, threads)
    return median(bench.rate(steps) for _ in range(repeats))


def interleaved(shards: Path, batch_size: int, num_workers: int, steps: int, repeats: int, device: str = "cpu",
                model: dict | None = None, threads: int = TrainConfig.threads) -> tuple[list[float], list[float]]:
    """(trainer samples/s, loader samples/s) of ``repeats`` rounds, each a trainer run then a loader run."""
    bench = TrainerBench(shards, batch_size, device, model, threads)
    loader_rate(shards, batch_size, num_workers, batch_size)  # warm-up: imports, page cache, shard check
    train, load = [], []
    for _ in range(repeats):
        train.append(bench.rate(steps))
        load.append(loader_rate(shards, batch_size, num_workers, max(1000, 5 * batch_size)))
    return train, load


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=Path, default=ROOT / "demo_work" / "shards",
                    help="Shards folder [demo_work/shards: `python -m pipelines.demo --quick` makes it].")
    ap.add_argument("--synthetic", action="store_true", help="Build a synthetic corpus instead of --shards.")
    ap.add_argument("--clips", type=int, default=400, help="Synthetic corpus size.")
    ap.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="[the trainer's default, 32]")
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20, help="Timed training steps per repeat.")
    ap.add_argument("--repeats", type=int, default=5, help="Interleaved rounds (trainer, loader); medians are reported.")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=TrainConfig.threads,
                    help="Torch CPU threads for training, shared by the loader [the trainer's default, 1; 0: torch's].")
    ap.add_argument("--video-encoder", default="transformer", choices=["transformer", "gru", "mean"])
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    if not args.synthetic and not (args.shards / "index.json").is_file():
        print(f"error: {args.shards}: no shards (run `python -m pipelines.demo --quick`, pass --shards, "
              "or --synthetic)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="yuyin-throughput-") as tmp:
        shards = synthetic_shards(Path(tmp), args.clips) if args.synthetic else args.shards
        index = load_index(shards)
        model = {} if args.video_encoder == "transformer" else {"video_encoder": args.video_encoder}
        train, load = interleaved(shards, args.batch_size, args.num_workers, args.steps, args.repeats, args.device,
                                  model, args.threads)
    train_sps, load_sps = median(train), median(load)
    ratio = load_sps / train_sps
    print(f"shards: {'synthetic' if args.synthetic else args.shards}  train split {index['splits']['train']['samples']} "
          f"samples  dims: {index['dims']}")
    print(f"batch {args.batch_size}  loader workers {args.num_workers}  device {args.device}  "
          f"torch threads {torch.get_num_threads()}  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores  "
          f"{args.repeats} interleaved rounds (trainer, loader), medians")
    print(f"trainer: {train_sps:8.1f} samples/s  (YuYin model, {args.video_encoder} video encoder"
          f"{' = the default' if not model else ''}: forward + loss + backward + optimizer step, batches in memory)"
          f"  rounds: {' '.join(f'{x:.0f}' for x in train)}")
    print(f"loader:  {load_sps:8.1f} samples/s  (make_loader per epoch as the trainer does: shuffled, tar read + "
          f"decode + pad + collate, last partial batch dropped)  rounds: {' '.join(f'{x:.0f}' for x in load)}")
    print(f"ratio loader/trainer = {ratio:.1f}x  (target >= {TARGET:.0f}x): {'OK' if ratio >= TARGET else 'TOO SLOW'}")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
