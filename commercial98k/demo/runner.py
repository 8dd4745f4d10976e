"""Run the offline demo end to end with resumable steps.

Each step leaves ``<work>/.steps/<name>.completed`` (lhotse-style) holding a fingerprint of its
inputs: the step's parameters and the fingerprints of the steps it depends on. On a re-run a
step is skipped when its marker matches and its outputs still exist; otherwise it runs again
(and the stage itself skips the items it already finished). Stages run as they would for a
user, ``python -m pipelines.cli <stage>`` / ``python -m yuyin.cli <command>`` with argument
lists (never a shell), so their own tqdm bars show.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..fsutil import atomic_write_json

STEPS_DIR = ".steps"


class StepFailed(RuntimeError):
    """A demo step that did not finish (the message names the step and the cause)."""


@dataclass
class DemoConfig:
    """What the demo builds and how much it trains."""

    work_dir: Path = Path("demo_work")
    categories: tuple[str, ...] = ()
    videos_per_category: int = 14
    seed: int = 0
    quick: bool = False
    workers: int = 2
    train_steps: int = 300
    batch_size: int = 32
    device: str = "cpu"
    split_fractions: str = "0.6,0.1,0.3"  # a test split big enough to compare methods
    baselines: tuple[str, ...] = ("cca", "cbvmr")  # yuyin benchmark's baselines (not its ablations)
    music_sources: tuple[str, ...] = ("immich", "music21")
    playlist_size: int | None = None  # tracks per category (None: two fifths of its videos)
    progress: bool = True

    @property
    def root(self) -> Path:
        return Path(self.work_dir)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)


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
    return cfg.path(STEPS_DIR, f"{name}.completed")


def read_marker(cfg: DemoConfig, name: str) -> dict | None:
    """The marker of a finished step, or None."""
    p = marker_path(cfg, name)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _say(text: str) -> None:
    print(text, flush=True)


def _python(module: str, args: list) -> list[str]:
    """The command line of ``python -m module args`` with this interpreter; echoes it."""
    args = [str(a) for a in args]
    _say("  $ " + " ".join(["python", "-m", module, *args]))
    return [sys.executable, "-m", module, *args]


def _env() -> dict[str, str]:
    """This environment with the repository on ``PYTHONPATH`` (works without an editable install)."""
    repo = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    return env


def run_python_module(module: str, args: list) -> None:
    """Run ``python -m module args`` (no shell; its progress bars show); ``StepFailed`` on failure."""
    proc = subprocess.run(_python(module, args), env=_env(), check=False)
    if proc.returncode != 0:
        raise StepFailed(f"`{module} {args[0] if args else ''}` exited with status {proc.returncode}")


def capture_python_module(module: str, args: list) -> str:
    """Like ``run_python_module`` but returns stdout (stderr, with the progress bars, still shows)."""
    proc = subprocess.run(_python(module, args), env=_env(), stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout)
        raise StepFailed(f"`{module} {args[0] if args else ''}` exited with status {proc.returncode}")
    return proc.stdout


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
        outputs_ok = all(p.exists() for p in step.outputs(cfg))
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
        if not force and old and old.get("fingerprint") == fp and outputs_ok:
            _say(f"{header}: done already ({old.get('seconds', 0):.0f} s on {old.get('finished', '?')}), skipped")
            markers[step.name] = {**old, "skipped": True}
            continue
        _say(f"\n{'=' * 78}\n{header}\n{'=' * 78}")
        marker_path(cfg, step.name).unlink(missing_ok=True)
        t0 = time.monotonic()
        step.run(cfg)
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
