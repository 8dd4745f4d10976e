"""Time a full read of musicnn's TF1 checkpoint with CRC-32C checks on, against the same read
with checks off (the reference, in the same run). Target: under 0.5 s with checks on.

    python benchmarks/checkpoint_read.py [--model MSD_musicnn] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from commercial98k.models.musicnn import checkpoint_prefix
from commercial98k.models.tf_checkpoint import read_checkpoint


def _time_read(prefix: str, verify: bool) -> float:
    t0 = time.perf_counter()
    tensors = read_checkpoint(prefix, verify=verify)
    elapsed = time.perf_counter() - t0
    assert tensors, "checkpoint read returned no tensors"
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="MSD_musicnn")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    prefix = checkpoint_prefix(args.model)
    _time_read(prefix, True)  # warm the page cache
    on, off = [], []
    for _ in range(args.repeats):  # interleaved A B A B
        on.append(_time_read(prefix, True))
        off.append(_time_read(prefix, False))
    t_on, t_off = statistics.median(on), statistics.median(off)
    print(f"{args.model}: full read with CRC checks {t_on:.3f} s, without {t_off:.3f} s "
          f"(ratio {t_on / t_off:.2f}x; target < 0.5 s with checks)")
    print(f"checkpoint_read_s={t_on:.3f} checkpoint_read_nocrc_s={t_off:.3f}")
    return 0 if t_on < 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
