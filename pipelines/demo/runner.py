"""Named steps with lhotse-style ``<work>/.steps/<name>.completed`` markers (the demo's step runner).

A thin wrapper: each marker holds a fingerprint of the step's inputs (its parameters and the
fingerprints of the steps it depends on). On a re-run a step is skipped when its marker matches
and its outputs still exist; otherwise it runs again (and the stage itself skips the items it
already finished). Error capture is ``commercial98k.engine.stage.safe_call``'s (one ``Type: message``
line; the traceback under ``-vv`` logging); progress is each stage's own bar. A step runs in
this process inside ``isolation.fresh_state``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from commercial98k.engine.stage import safe_call
from commercial98k.errors import C98kError
from commercial98k.storage.files import atomic_write_json

from .config import DemoConfig
from .isolation import fresh_state

STEPS_DIR = ".steps"


class StepFailed(C98kError, RuntimeError):
    """A demo step that did not finish (the message names the step and the cause)."""


@dataclass
class Step:
    """One resumable step: ``run(cfg)`` makes ``outputs(cfg)``; ``params`` feed the fingerprint."""

    name: str
    title: str
    run: Callable[[DemoConfig], None]
    outputs: Callable[[DemoConfig], list[Path]]
    params: Callable[[DemoConfig], dict]
    after: tuple[str, ...] = ()


def _fingerprint(step: Step, cfg: DemoConfig, done: dict[str, str]) -> str:
    blob = {"step": step.name, "params": step.params(cfg), "after": {a: done.get(a) for a in step.after}}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:20]


def marker_path(cfg: DemoConfig, name: str) -> Path:
    """``<work>/.steps/<name>.completed``."""
    return cfg.path(STEPS_DIR, f"{name}.completed")


def read_marker(cfg: DemoConfig, name: str) -> dict | None:
    """The marker of a finished step, or None."""
    try:
        return json.loads(marker_path(cfg, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _say(text: str) -> None:
    print(text, flush=True)


def run_step(step: Step, cfg: DemoConfig) -> None:
    """Run one step in this process (fresh RNG, thread and cwd state); ``StepFailed`` with the one-line cause."""

    def call(item: dict) -> dict:
        with fresh_state(cfg.seed):
            step.run(cfg)
        return {**item, "status": "ok", "error": None}

    row = safe_call(call, {"step": step.name})
    if row["status"] != "ok":
        raise StepFailed(f"step {step.name!r} failed: {row['error']}")


def run_steps(steps: list[Step], cfg: DemoConfig, only: set[str] | None = None, force: bool = False) -> dict[str, dict]:
    """Run ``steps`` in order, skipping those whose marker matches; return each step's marker."""
    cfg.root.mkdir(parents=True, exist_ok=True)
    fingerprints: dict[str, str] = {}
    markers: dict[str, dict] = {}
    total = len(steps)
    t_all = time.monotonic()
    for i, step in enumerate(steps, 1):
        fp = _fingerprint(step, cfg, fingerprints)
        fingerprints[step.name] = fp
        old = read_marker(cfg, step.name)
        header = f"[{i}/{total}] {step.title}"
        if only is not None and step.name not in only:
            if old is not None:
                fingerprints[step.name] = old["fingerprint"]
                markers[step.name] = old
            else:
                fingerprints.pop(step.name)
            continue
        missing_deps = [a for a in step.after if a not in fingerprints]
        if missing_deps:
            raise StepFailed(f"step {step.name!r} needs {', '.join(missing_deps)} to have run first")
        if not force and old and old.get("fingerprint") == fp and all(p.exists() for p in step.outputs(cfg)):
            _say(f"{header}: done already ({old.get('seconds', 0):.0f} s on {old.get('finished', '?')}), skipped")
            markers[step.name] = {**old, "skipped": True}
            continue
        _say(f"\n{'=' * 78}\n{header}\n{'=' * 78}")
        marker_path(cfg, step.name).unlink(missing_ok=True)
        t0 = time.monotonic()
        run_step(step, cfg)
        missing = [str(p) for p in step.outputs(cfg) if not p.exists()]
        if missing:
            raise StepFailed(f"step {step.name!r} finished without writing {', '.join(missing)}")
        marker = {"step": step.name, "fingerprint": fp, "seconds": round(time.monotonic() - t0, 1),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "params": step.params(cfg)}
        atomic_write_json(marker_path(cfg, step.name), marker)
        markers[step.name] = {**marker, "skipped": False}
        _say(f"{header}: finished in {marker['seconds']:.0f} s")
    _say(f"\nall {total} steps done in {time.monotonic() - t_all:.0f} s (work folder: {cfg.root})")
    return markers
