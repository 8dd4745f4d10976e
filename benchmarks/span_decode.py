"""Label's frame decode with and without skipping the packets that cannot be a frame sample.

``c98k label`` samples frames at ``--frame-fps`` (1 by default) from a clip's span; packets away
from every sample time are decoded with ``skip_frame=NONREF`` (``media.pyav.decode_span``),
so the decoder drops the frames nothing refers to. For each real video (../shared/media by
default) this prints the CPU seconds of a whole-file 1 fps sampling with every packet decoded
(the reference) and with the skip, interleaved A B A B, best of ``--repeats``, their ratio, and
checks the frames are the same.

    .venv/bin/python benchmarks/span_decode.py [--fps 1] [--repeats 2] [VIDEO ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VIDEOS = ROOT.parent / "shared" / "media" / "videos"
DEFAULT = ["video2dataset_test_video.mp4", "big_buck_bunny_trailer_480p.mkv", "videollava_sample_demo_22.mp4",
           "big_buck_bunny_0_30.webm"]


def main(argv: list[str] | None = None) -> int:
    from commercial98k.engine.threads import set_worker_threads
    from commercial98k.media.ffmpeg_io import probe
    from commercial98k.media.pyav import decode_span

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="*", type=Path, help="Videos [the shared media's].")
    ap.add_argument("--fps", type=float, default=1.0, help="Frame samples per second [1, label's default].")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    paths = args.videos or [VIDEOS / n for n in DEFAULT]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        print(f"error: {missing[0]}: no such video", file=sys.stderr)
        return 2
    set_worker_threads(1)
    print(f"{'video':34s} {'size':>10s} {'s':>6s} {'full CPU s':>10s} {'skip CPU s':>10s} {'ratio':>6s}  same frames")
    for path in paths:
        info = probe(path)
        cpu: dict[bool, list[float]] = {False: [], True: []}
        frames: dict[bool, np.ndarray] = {}
        for _ in range(args.repeats):
            for skip in (False, True):
                c = time.process_time()
                frames[skip] = decode_span(path, None, None, None, args.fps, 224, skip_nonref=skip)[1]
                cpu[skip].append(time.process_time() - c)
        full, skipped = min(cpu[False]), min(cpu[True])
        same = np.array_equal(frames[False], frames[True])
        print(f"{path.name[:34]:34s} {info.width}x{info.height:<5d} {info.duration_s:6.1f} {full:10.2f} {skipped:10.2f} "
              f"{full / skipped:6.2f}  {'yes' if same else 'NO'}")
        if not same:
            print(f"error: {path.name}: the skip changed the sampled frames", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
