"""Stages for the runner tests, importable by a Ray cluster's workers (``tests/`` is on their path)."""

from __future__ import annotations

import os
import threading
import time

from commercial98k.engine.stage import Stage
from commercial98k.label.stage import LabelStage
from commercial98k.split.step import SplitStage


def _crash_if_asked(item: dict) -> None:
    """``crash``: ``raise`` (a bug in the stage's code) or ``exit`` (the worker process dies, as a
    segfault or an OOM kill would)."""
    if item.get("crash") == "raise":
        raise RuntimeError(f"boom on {item.get('clip_id') or item.get('video_id')}")
    if item.get("crash") in ("exit", True):
        os._exit(1)


class CountingStage(Stage):
    """Rows record the worker's pid and thread and how many times ``setup`` ran in that worker."""

    key, kind = "video_id", "videos"

    def __init__(self, sleep: float = 0.0, batch_size: int = 3):
        self.sleep, self.batch_size = sleep, batch_size
        self.setups = 0
        self.setup_thread: int | None = None

    def setup(self) -> None:
        super().setup()
        self.setups += 1
        self.setup_thread = threading.get_ident()

    def process_batch(self, rows: list[dict]) -> list[dict]:
        out = []
        for r in rows:
            _crash_if_asked(r)
            time.sleep(self.sleep)
            out.append({**r, "status": "ok", "error": None, "pid": os.getpid(), "setups": self.setups,
                        "same_thread": self.setup_thread == threading.get_ident(), "threads": self.threads})
        return out


def counting_stage(sleep: float = 0.0, batch_size: int = 3) -> CountingStage:
    return CountingStage(sleep, batch_size)


class CrashingSplitStage(SplitStage):
    """``SplitStage`` whose work raises or kills its worker on marked videos (no models: the rows
    of the other videos come from ``SplitStep``'s own checks)."""

    def setup(self) -> None:
        Stage.setup(self)

    def process_batch(self, rows: list[dict]) -> list[dict]:
        for r in rows:
            _crash_if_asked(r)
        return super().process_batch(rows)


class CrashingLabelStage(LabelStage):
    """``LabelStage`` whose work raises or kills its worker on marked clips (no models are built)."""

    def setup(self) -> None:
        Stage.setup(self)

    def process_batch(self, rows: list[dict]) -> list[dict]:
        for r in rows:
            _crash_if_asked(r)
        return [dict(r, status="ok", error=None) for r in rows]
