"""Steps for the Ray cluster tests (imported by the cluster's workers from ``tests/``)."""

from __future__ import annotations

import os
import time


def slow_step(item: dict) -> dict:
    """Sleeps, then reports which worker process ran the item."""
    time.sleep(item.get("sleep", 0.5))
    return {**item, "status": "ok", "error": None, "pid": os.getpid()}


def crashing_step(item: dict) -> dict:
    """Kills its worker process on the item marked ``crash`` (as a segfault or OOM kill would)."""
    if item.get("crash"):
        os._exit(1)
    return {**item, "status": "ok", "error": None}


def counting_stage(sleep: float = 0.0, batch_size: int = 3):
    """A stage whose rows record the worker pid and how many times ``setup`` ran in that worker."""
    from commercial98k.engine.stage import Stage

    class _Counting(Stage):
        key, kind = "video_id", "videos"

        def __init__(self):
            self.batch_size = batch_size
            self.setups = 0

        def setup(self) -> None:
            super().setup()
            self.setups += 1

        def process_batch(self, rows: list[dict]) -> list[dict]:
            out = []
            for r in rows:
                if r.get("crash"):
                    os._exit(1)
                time.sleep(sleep)
                out.append({**r, "status": "ok", "error": None, "pid": os.getpid(), "setups": self.setups})
            return out

    return _Counting()
