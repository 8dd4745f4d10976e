"""Throughput of `c98k label`'s frame and text models: batched vs one item at a time.

Frames come from a real video (../shared/media by default), texts are normalised tags and
titles in Chinese and English. Prints items/s for each batch size and the speed-up of
batching over batch size 1, measured in the same run.

    .venv/bin/python benchmarks/label_throughput.py [--frames 64] [--texts 256] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from commercial98k.media import ffmpeg_io as media
from commercial98k.models.registry import FRAMES, TEXT

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT.parent / "shared" / "media" / "videos" / "big_buck_bunny_trailer_480p.mkv"
WORDS = ["口红", "lipstick", "makeup", "美妆", "sneakers", "运动鞋", "coffee", "咖啡", "smartphone", "手机",
         "sofa", "沙发", "baby", "宝宝", "dog food", "猫粮", "diamond ring", "项链", "vitamin", "汽车"]
TITLES = ["New matte lipstick, long-lasting colour", "夏日新款口红 超显白", "Wireless noise cancelling headphones",
          "婴儿纸尿裤 超薄透气", "Premium dog food for puppies", "舒适真皮沙发 客厅"]


def rate(fn, items, batch: int, repeats: int = 2) -> float:
    """Best-of-``repeats`` items per second of ``fn`` over ``items`` in chunks of ``batch``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(items), batch):
            fn(items[i:i + batch])
        best = min(best, time.perf_counter() - t0)
    return len(items) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=VIDEO)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    frames = media.load_frames(args.video, fps=2.0, size=224)[: args.frames]
    model = FRAMES.create("efficientnet-lite0", device=args.device, batch_size=256)
    model.embed_images(frames[:2])  # warm-up
    report(f"frames ({model.info.tag()}, {len(frames)} real frames, {args.device})", "frames",
           model.embed_images, frames, (8, 32))

    rng = np.random.default_rng(0)
    texts = [str(rng.choice(WORDS)) if i % 3 else str(rng.choice(TITLES)) for i in range(args.texts)]
    text = TEXT.create("use-multilingual")
    text.embed_texts(texts[:4])
    report(f"texts ({text.info.tag()}, {len(texts)} tags/titles)", "texts", text.embed_texts, texts, (32, 256))


def report(title: str, unit: str, fn, items, batch_sizes: tuple[int, ...]) -> None:
    """Print items/s at batch size 1 (the reference) and at each of ``batch_sizes``, with the ratio."""
    one = rate(fn, items, 1)
    print(f"{title}:")
    print(f"  batch   1: {one:8.1f} {unit}/s")
    for b in batch_sizes:
        r = rate(fn, items, b)
        print(f"  batch {b:3d}: {r:8.1f} {unit}/s   x{r / one:.2f} vs batch 1")

if __name__ == "__main__":
    main()
