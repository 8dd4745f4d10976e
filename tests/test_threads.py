"""Per-worker thread limits (``commercial98k.engine.threads``) in a fresh process, as a worker would set them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from commercial98k.engine.threads import threads_per_worker

ROOT = Path(__file__).resolve().parent.parent

_SCRIPT = """
import json, os
from commercial98k.engine.threads import set_worker_threads, worker_threads
done = set_worker_threads(1)
import cv2, torch
from threadpoolctl import threadpool_info
from commercial98k.split.music import get_detector
from commercial98k.split.music import YamnetMusicDetector


def ort2():
    set_worker_threads(2)  # a session built afterwards follows the new limit
    return YamnetMusicDetector()._session.get_session_options().intra_op_num_threads
print(json.dumps({"done": done, "torch": torch.get_num_threads(), "opencv": cv2.getNumThreads(),
                  "blas": sorted({p["num_threads"] for p in threadpool_info()}), "omp": os.environ["OMP_NUM_THREADS"],
                  "ort": get_detector()._session.get_session_options().intra_op_num_threads,
                  "worker": worker_threads(), "ort2": ort2()}))
"""


def test_threads_per_worker_divides_the_cores():
    assert threads_per_worker(2, total=8) == 4
    assert threads_per_worker(3, total=8) == 2
    assert threads_per_worker(16, total=8) == 1
    assert threads_per_worker(0, total=4) == 4


def test_set_worker_threads_caps_every_pool():
    run = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["torch"] == 1 and got["opencv"] == 1 and got["omp"] == "1" and got["worker"] == 1
    assert got["blas"] == [1]
    assert got["ort"] == 1 and got["ort2"] == 2
    assert got["done"]["torch"] == 1 and got["done"]["torch_interop"] == 1
