"""A real local Ray cluster for tests: ``ray start --head`` in its own folder, on loopback, stopped by pid.

Only the processes of this cluster are stopped (found by its unique temp dir), never other Ray
instances on the machine. The cluster's workers import this worktree (``PYTHONPATH``) and the
``tests`` folder (test steps are pickled by reference).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port(start: int = 6390, stop: int = 6490, taken: tuple[int, ...] = ()) -> int:
    for port in range(start, stop):
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port for Ray")


def ray_env(**extra: str) -> dict[str, str]:
    """Environment for the cluster and its drivers: this worktree first, no inherited Ray address or auth."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    env.update(PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}", RAY_AUTH_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1",
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # makes Ray keep every address on loopback
               **extra)
    return env


class LocalCluster:
    """``ray start --head --port P --temp-dir T --node-ip-address 127.0.0.1`` run from its own folder."""

    def __init__(self, num_cpus: int = 2, object_store_mb: int = 500):
        self.port = free_port()
        ports = [self.port]
        for _ in range(4):  # the side services get free ports too, so clusters of other runs do not collide
            ports.append(free_port(self.port + 1, self.port + 400, tuple(ports)))
        self.temp_dir = Path(tempfile.mkdtemp(prefix="c98kray", dir="/tmp"))  # short: unix socket paths
        self.start_dir = self.temp_dir / "start"
        self.start_dir.mkdir()
        self.address = f"127.0.0.1:{self.port}"
        ray_bin = str(Path(sys.executable).parent / "ray")
        cmd = [ray_bin, "start", "--head", "--port", str(self.port), "--temp-dir", str(self.temp_dir),
               "--node-ip-address", "127.0.0.1", "--include-dashboard=false", "--num-cpus", str(num_cpus),
               "--num-gpus", "0", "--object-store-memory", str(object_store_mb * 1024 * 1024),
               "--disable-usage-stats", "--dashboard-port", str(ports[1]), "--ray-client-server-port", str(ports[2]),
               "--dashboard-agent-listen-port", str(ports[3]), "--metrics-export-port", str(ports[4])]
        for attempt in range(3):  # a loaded machine can miss Ray's fixed 30 s raylet start window
            # the marker is inherited by every process Ray starts (agents, proxies), so stop() finds them all
            proc = subprocess.run(cmd, cwd=self.start_dir, env=ray_env(C98K_TEST_CLUSTER=str(self.temp_dir)),
                                  capture_output=True, text=True, timeout=240)
            if proc.returncode == 0:
                return
            self.stop()
            if attempt == 2 or "timed out during startup" not in proc.stderr:
                raise RuntimeError(f"ray start failed: {proc.stderr[-2000:]}")

    def pids(self) -> list[int]:
        """Processes of this cluster: their command line or environment names its temp dir."""
        mark = str(self.temp_dir).encode()
        out = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit() or int(p.name) == os.getpid():
                continue
            try:
                if mark in (p / "cmdline").read_bytes() or b"C98K_TEST_CLUSTER=" + mark in (p / "environ").read_bytes():
                    out.append(int(p.name))
            except OSError:
                continue
        return out

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while pids and time.monotonic() < deadline:
                time.sleep(0.2)
                pids = self.pids()
            if not pids:
                break
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def connect_driver(address: str) -> dict[str, str | None]:
    """Make this process a driver of the cluster on loopback; returns the environment to restore."""
    keys = ("RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    os.environ.pop("RAY_ADDRESS", None)
    import ray
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # read at call time: keeps 127.0.0.1 even if ray was imported earlier
    ray.init(address=address, log_to_driver=False)
    return old


def disconnect_driver(old: dict[str, str | None]) -> None:
    import ray
    from ray._private import ray_constants

    ray.shutdown()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    ray_constants.ENABLE_RAY_CLUSTER = ray_constants.env_bool(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR,
                                                              not ray_constants.IS_WINDOWS_OR_OSX)
