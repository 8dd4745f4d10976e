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
