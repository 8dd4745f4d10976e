"""Embedding speed of the audio models, per core, against a plain ffmpeg decode of the same audio.

For each model: seconds of audio embedded per second of compute (``x real time``, one torch
thread), and the ratio of embedding time to the time ffmpeg takes to decode the same span to
the model's sample rate (the reference, measured in the same run, best of ``--repeat``).
musicnn runs with the wheel's MSD weights; OpenL3 with random weights (speed does not depend
on the weight values; the official weights cannot be fetched everywhere).

    .venv/bin/python benchmarks/audio_models.py [--audio FILE] [--seconds 30] [--openl3-seconds 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from commercial98k.media import ffmpeg_io as media
from commercial98k.models import openl3
from commercial98k.models.registry import AUDIO

ROOT = Path(__file__).resolve().parent.parent
AUDIO_FILE = ROOT.parent / "shared" / "media" / "emotify" / "audio" / "rock_1.mp3"


def best_time(fn, repeat: int) -> tuple[float, object]:
    """Fastest wall time of ``repeat`` calls and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def row(name: str, audio_s: float, embed_s: float, decode_s: float, shape: tuple) -> str:
    return (f"{name:<34} {audio_s:6.1f} s  {embed_s:8.3f} s  {audio_s / embed_s:9.1f}x  "
            f"{decode_s:8.3f} s  {embed_s / decode_s:8.1f}  {shape}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audio", default=str(AUDIO_FILE))
    ap.add_argument("--seconds", type=float, default=30.0, help="span embedded by musicnn")
    ap.add_argument("--openl3-seconds", type=float, default=5.0, help="span embedded by OpenL3 (slow)")
    ap.add_argument("--openl3-hop", type=float, default=0.1)
    ap.add_argument("--openl3-reprs", default="mel128,mel256,linear")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 = per core)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    print(f"audio: {args.audio}; torch threads: {args.threads}")
    print(f"{'model':<34} {'audio':>8}  {'embed':>10}  {'speed':>10}  {'ffmpeg':>10}  {'embed/ffmpeg':>8}  output")

    seconds = args.seconds
    decode_s, audio = best_time(lambda: media.load_audio(args.audio, 16000, duration_s=seconds), args.repeat)
    for name in ("MSD_musicnn", "MTT_musicnn"):
        model = AUDIO.create("musicnn", model=name)
        model.embed(audio[:16000 * 3])  # warm-up
        embed_s, emb = best_time(lambda m=model: m.embed(audio), args.repeat)
        print(row(f"musicnn {name} (hop {model.hop_s:.2f} s)", len(audio) / 16000, embed_s, decode_s, emb.shape))

    seconds = args.openl3_seconds
    decode_s, audio = best_time(lambda: media.load_audio(args.audio, openl3.SR, duration_s=seconds), args.repeat)
    hop = int(args.openl3_hop * openl3.SR)
    for repr_ in args.openl3_reprs.split(","):
        net = openl3.OpenL3Audio(repr_, 6144).eval().requires_grad_(False).to(memory_format=torch.channels_last)
        openl3.embed_audio(net, audio[:openl3.SR], hop, center=False)  # warm-up
        embed_s, emb = best_time(lambda n=net: openl3.embed_audio(n, audio, hop), max(1, args.repeat - 2))
        print(row(f"openl3 {repr_} 6144 (hop {args.openl3_hop} s)", len(audio) / openl3.SR, embed_s, decode_s,
                  emb.shape))
    print("speed = seconds of audio per second of compute; embed/ffmpeg = embedding time / decode time")


if __name__ == "__main__":
    main()
