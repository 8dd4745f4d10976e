"""One writer per manifest: ``<manifest>.lock``, held by the process that writes the manifest.

``fetch``, ``split``, ``label`` and ``build-shards`` hold the lock of what they write for the
whole run (split's also covers the identity index ``<manifest>.identity/``; on Ray the driver
holds it, the actors write parts under it). Reading (``stats``, ``validate``, ``browse``) never
takes it. The lock is an ``flock`` on the file, so the kernel drops it when its holder dies
(``kill -9`` included): a lock file left by a dead process is taken over at once. The file
names its holder (pid, host, command, start time) for the message a second writer prints, and
is removed when its holder finishes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from commercial98k.errors import C98kError

log = logging.getLogger(__name__)

#: a lock held by this process: path -> (fd, depth); re-entered by nested stage calls (the demo)
_HELD: dict[str, list[int]] = {}

_GUARD = threading.Lock()


class ManifestLocked(C98kError, RuntimeError):
    """Another live process is writing this manifest."""


def lock_path(manifest: str | os.PathLike) -> Path:
    """``<manifest>.lock`` beside the manifest (the shards' is ``<out>/index.json.lock``)."""
    p = Path(os.path.abspath(os.fspath(manifest)))
    return p.with_name(p.name + ".lock")


def holder(path: str | os.PathLike) -> dict:
    """What the lock file says about its holder (empty when unreadable or blank)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def describe(info: dict) -> str:
    if not info:
        return "another process"
    since = time.strftime("%H:%M:%S", time.localtime(info["started"])) if info.get("started") else "?"
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')} (`{info.get('command', '?')}`, "
            f"since {since})")


def _command() -> str:
    argv = [Path(sys.argv[0]).name] + sys.argv[1:] if sys.argv and sys.argv[0] else ["python"]
    return " ".join(argv)[:200]


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


@contextlib.contextmanager
def manifest_lock(manifest: str | os.PathLike, wait: bool = False, poll_s: float = 0.5,
                  on_wait=None) -> Iterator[Path]:
    """Hold ``manifest``'s lock for the block.

    Another live holder: raise ``ManifestLocked`` naming it, or with ``wait`` block until it
    ends (``on_wait(message)`` is called once). Re-entrant within this process.
    """
    path = lock_path(manifest)
    key = str(path)
    with _GUARD:
        if key in _HELD:
            _HELD[key][1] += 1
            held = True
        else:
            held = False
    if held:
        try:
            yield path
        finally:
            with _GUARD:
                _HELD[key][1] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, manifest, wait, poll_s, on_wait)
    try:
        stale = holder(path)
        if stale and stale.get("pid") != os.getpid():  # its holder died without releasing it (kill -9)
            log.warning("taking over the lock of %s: %s is no longer running", manifest, describe(stale))
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        with _GUARD:
            _HELD[key] = [fd, 1]
        try:
            yield path
        finally:
            with _GUARD:
                del _HELD[key]
            with contextlib.suppress(OSError):  # removed while held: a waiter re-opens it (see _acquire)
                path.unlink()
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _locked(manifest: str | os.PathLike, who: str) -> ManifestLocked:
    return ManifestLocked(f"{manifest} is being written by {who}: wait for it to finish, or pass --wait to start "
                          "when it does")


def check_unlocked(manifest: str | os.PathLike) -> None:
    """Raise ``ManifestLocked`` when a live process holds ``manifest``'s lock (taking nothing): a
    command's early check, before it spends seconds importing models, of what its stage then locks."""
    path = lock_path(manifest)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # no lock file (or none readable): the stage's own lock decides
    try:
        if not _try_lock(fd):
            raise _locked(manifest, describe(holder(path)))
    finally:
        os.close(fd)


def _acquire(path: Path, manifest: str | os.PathLike, wait: bool, poll_s: float, on_wait) -> int:
    """An open descriptor of ``path`` holding its flock. The holder removes the file when done, so
    a lock taken on a file no longer at ``path`` is dropped and ``path`` opened again."""
    told = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if _try_lock(fd):
            try:
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)
            continue
        who = describe(holder(path))
        os.close(fd)
        if not wait:
            raise _locked(manifest, who)
        if on_wait is not None and not told:
            on_wait(f"waiting for {who} to finish writing {manifest}")
            told = True
        time.sleep(poll_s)


@contextlib.contextmanager
def stage_writes(manifest: str | os.PathLike, data_root: str | os.PathLike, *, wait: bool = False,
                 manifest_flag: str = "--manifest", on_wait=None) -> Iterator[dict]:
    """The frame of a stage that writes ``manifest``: its lock held (``wait``: for another writer
    to finish), and a machine fault raised inside leaving as one ``faults.EnvironmentFault`` whose
    advice names ``--data-root`` or ``manifest_flag``. Yields the places (``faults.stage_faults``)."""
    from commercial98k.faults import stage_faults

    places = {"data root": (os.path.abspath(os.fspath(data_root)), "--data-root"),
              "manifest folder": (os.path.dirname(os.path.abspath(os.fspath(manifest))), manifest_flag)}
    with stage_faults(places), manifest_lock(manifest, wait=wait, on_wait=on_wait):
        yield places
