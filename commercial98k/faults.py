"""Faults of the machine, not of an item: tell them apart and word them.

A full disk (ENOSPC, EDQUOT), a read-only file system (EROFS), a permission denied (EACCES,
EPERM) on the data root or the manifest folder, a missing or crashing ffmpeg/ffprobe/fpcalc, a
lost Ray cluster or a ``MemoryError`` say nothing about the video being processed: every
following item would fail the same way. ``classify`` turns such an exception into an
``EnvironmentFault``; a step re-raises it (``raise_if_environment``) instead of recording a
failed row, the engines pass it up, and the stage stops with one line naming the cause, the
path and what to do. Items already finished keep their rows, so the same command, run again
after the fix, finishes the rest.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from commercial98k.errors import C98kError
from commercial98k.storage.files import DataRoot

#: errnos that are the machine's fault wherever they happen
ALWAYS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
          errno.EROFS: "read-only file system"}
#: errnos that are the machine's fault on a path under the data root or the manifest folder
#: (elsewhere, e.g. one unreadable file in a folder being imported, they are that item's fault)
UNDER_PLACES = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}
#: the strerror texts tools print for them (ffmpeg, yt-dlp, pyarrow wrap the OSError in text)
_TEXTS = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
          "Read-only file system": errno.EROFS, "Permission denied": errno.EACCES}
_TOOL_MISSING = re.compile(r"^(ffmpeg|ffprobe|fpcalc) not found")
#: Ray errors raised in the driver when the cluster itself is gone (not one task's worker)
_RAY_LOST = ("RaySystemError", "GcsConnectionError", "RpcError", "ConnectionError")
TOOL_HINT = {"ffmpeg": "apt-get install ffmpeg (or pip install imageio-ffmpeg)",
             "ffprobe": "apt-get install ffmpeg", "fpcalc": "apt-get install libchromaprint-tools"}
AGAIN = "then run the same command again"


class EnvironmentFault(C98kError, RuntimeError):
    """The machine cannot go on: the stage stops and no item is recorded as failed for it.

    ``str()`` is the one line: cause, path, what to do. ``locate(places)`` words the advice
    with the flag that moves the place the path lies under (``--data-root``, ``--manifest``).
    """

    def __init__(self, cause: str, path: str | None = None, todo: str | None = None, code: int | None = None):
        super().__init__(cause, path, todo, code)
        self.cause, self.path, self.todo, self.code = cause, path, todo, code

    def __str__(self) -> str:
        where = f": {self.path}" if self.path else ""
        return f"{self.cause}{where}; {self.todo or advice(self.code, self.path)}"

    def locate(self, places: dict[str, tuple[str | os.PathLike, str]]) -> EnvironmentFault:
        """This fault with its advice naming the place (``{name: (path, flag)}``) ``path`` lies under."""
        if self.todo is not None or self.code is None:
            return self
        return EnvironmentFault(self.cause, self.path, advice(self.code, self.path, places), self.code)


def _under(path: str | os.PathLike | None, places: dict[str, tuple[str | os.PathLike, str]]) -> tuple[str, str,
                                                                                                     str] | None:
    """(place name, place path, flag) of the place holding ``path``, or None."""
    if not path:
        return None
    p = os.path.abspath(os.fspath(path))
    found = None
    for name, (root, flag) in places.items():
        r = os.path.abspath(os.fspath(root))
        if DataRoot(r).contains(os.path.realpath(p)) and (found is None or len(r) > len(found[1])):
            found = name, r, flag  # the innermost place (a manifest folder inside the data root)
    return found


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes an unprivileged user can still write on the file system holding ``path`` (or its
    nearest existing parent)."""
    st = os.statvfs(free_root(path))
    return st.f_bavail * st.f_frsize


def mount_point(path: str | os.PathLike) -> str:
    """The mount point of the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(os.path.realpath(free_root(path)))  # a symlinked folder lives on its target's disk
    return str(next((q for q in (p, *p.parents) if os.path.ismount(q)), p.anchor))


def size_text(n: float) -> str:
    """``1.2 GB``, ``0.7 MB``, ``512 B``: decimal units, as ``df -H`` prints them."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{int(n)} B"


def advice(code: int | None, path: str | None, places: dict[str, tuple[str | os.PathLike, str]] | None = None) -> str:
    """What to do about an errno on ``path``, naming the flag of the place it lies under."""
    place = _under(path, places or {})
    move = f" or pass {place[2]} on another disk" if place else ""
    target = place[1] if place else (os.path.dirname(path) if path else "it")
    if code in (errno.ENOSPC, errno.EDQUOT):
        target = os.path.dirname(path) if path else target  # its own disk (a folder may link elsewhere)
        try:
            free = f" ({size_text(free_bytes(target))} free on {mount_point(target)})" if path or place else ""
        except OSError:
            free = ""
        return f"free space there{free}{move}, {AGAIN}"
    if code == errno.EROFS:
        return f"remount {mount_point(target) if path else 'it'} read-write{move}, {AGAIN}"
    return f"give user {_user()} read and write access to {target}{move}, {AGAIN}"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _chain(e: BaseException) -> Iterator[BaseException]:
    """``e``, its causes (``raise .. from``, Ray's ``cause``) and yt-dlp's wrapped ``exc_info``."""
    seen: set[int] = set()
    todo = [e]
    while todo:
        x = todo.pop(0)
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        info = getattr(x, "exc_info", None)
        wrapped = info[1] if isinstance(info, tuple) and len(info) > 1 else None
        # not __context__: an error raised while handling a fault that was dealt with is the item's
        todo += [x.__cause__, getattr(x, "cause", None), wrapped]


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(\.\w+)?$")


def final_name(path: str) -> str:
    """The file an ``storage.files.atomic_path`` temporary (``.<name>.<8 random>.<ext>``) was to become."""
    m = _TEMP_NAME.match(os.path.basename(path))
    return os.path.join(os.path.dirname(path), m.group("name")) if m else path


def _path_in(text: str) -> str | None:
    m = re.search(r"'(/[^']+)'|\"(/[^\"]+)\"|(/[^\s:'\"]+)", text)
    return next((g for g in m.groups() if g), None) if m else None


def classify(e: BaseException, places: dict[str, tuple[str | os.PathLike, str]] | None = None,
             roots: tuple[str | os.PathLike, ...] = ()) -> EnvironmentFault | None:
    """The ``EnvironmentFault`` ``e`` (or what it wraps) is, or None for an item's own fault.

    ``places``: ``{name: (path, flag)}`` where EACCES/EPERM count as the machine's fault (and
    whose flag the advice names); ``roots``: more such paths (a worker knows its data root).
    """
    places = dict(places or {})
    places.update({f"root{i}": (r, "--data-root") for i, r in enumerate(roots) if r})
    for x in _chain(e):
        if type(x) is EnvironmentFault:  # not Ray's RayTaskError(EnvironmentFault): its ``cause`` is the fault
            return x.locate(places)
    for x in _chain(e):
        fault = _classify_one(x, places)
        if fault is not None:
            return fault.locate(places)
    return None


def _classify_one(x: BaseException, places: dict[str, tuple[str | os.PathLike, str]]) -> EnvironmentFault | None:
    if isinstance(x, MemoryError):
        return EnvironmentFault("out of memory (MemoryError)", None,
                                f"use fewer --workers or a machine with more memory, {AGAIN}")
    name = type(x).__name__
    text = " ".join(str(x).split())
    if name in _RAY_LOST and "ray" in type(x).__module__:
        return lost_cluster(text)
    m = _TOOL_MISSING.search(text)
    if m:
        tool = m.group(1)
        return EnvironmentFault(f"{tool} not found", None, f"{TOOL_HINT[tool]}, {AGAIN}")
    code = x.errno if isinstance(x, OSError) and isinstance(x.errno, int) else None
    path = final_name(os.fspath(x.filename)) if isinstance(x, OSError) and x.filename else None
    if code is None:  # a message that carries the strerror (pyarrow, yt-dlp, ffmpeg)
        code = next((c for t, c in _TEXTS.items() if t in text), None)
        path = path or (_path_in(text) if code is not None else None)
        path = final_name(path) if path else None
    if code in ALWAYS:
        return EnvironmentFault(ALWAYS[code], path, None, code)
    if code in UNDER_PLACES and (path is None or _under(path, places)):
        return EnvironmentFault(UNDER_PLACES[code], path, None, code)
    return None


def lost_cluster(detail: str) -> EnvironmentFault:
    """The driver lost its Ray cluster (head down, network gone)."""
    return EnvironmentFault(f"lost the Ray cluster ({detail[:200]})", None,
                            f"check it with `ray status` (restart it with `ray start`) or pass --address, {AGAIN}")


def tool_crashed(tool: str, signal_number: int, path: str | os.PathLike | None) -> EnvironmentFault:
    """A tool binary killed by a signal (a broken build, the OOM killer): not the item's fault."""
    import signal

    try:
        sig = signal.Signals(signal_number).name
    except ValueError:
        sig = f"signal {signal_number}"
    return EnvironmentFault(f"{tool} crashed ({sig})", os.fspath(path) if path else None,
                            f"check `c98k doctor` and `{tool} -version` (reinstall it: {TOOL_HINT.get(tool, tool)}), "
                            f"{AGAIN}")


def raise_if_environment(e: BaseException, *roots: str | os.PathLike | None) -> None:
    """In a step's ``except``: re-raise ``e`` as an ``EnvironmentFault`` when it is one (so no
    failed row is recorded for it); return for an item's own fault. ``roots``: the data root."""
    fault = classify(e, roots=tuple(r for r in roots if r))
    if fault is not None:
        raise fault from e


@contextlib.contextmanager
def stage_faults(places: dict[str, tuple[str | os.PathLike, str]]) -> Iterator[None]:
    """Around a stage in the driver: an exception that is a machine fault leaves as an
    ``EnvironmentFault`` worded for ``places`` (``{name: (path, flag)}``); others unchanged."""
    try:
        yield
    except EnvironmentFault as f:
        raise f.locate(places) from f.__cause__
    except Exception as e:
        fault = classify(e, places)
        if fault is None:
            raise
        raise fault from e


# Free-space estimates: what a stage will write, checked before any work. Deliberately rough
# (a stage refuses only when the disk clearly cannot hold its output, never on a close call).

#: split's clip audio: mono 16 kHz 16-bit WAV
WAV_BYTES_PER_S = 32_000
#: label's feature files per second of clip (float16 frame and audio sequences) ...
FEATURE_BYTES_PER_S = 6_000
#: ... plus one file-system block for each of its three files
FEATURE_FILE_BYTES = 3 * 4096
#: a download whose size is unknown before it starts (480p H.264 + AAC)
DOWNLOAD_BYTES_PER_S = 100_000
#: a download whose duration is unknown too
DOWNLOAD_DEFAULT_S = 30.0


def require_free(path: str | os.PathLike, need: float, what: str, flag: str) -> None:
    """Refuse to start ``what`` when the file system of ``path`` has less than ``need`` bytes free."""
    free = free_bytes(path)
    if need > free:
        raise EnvironmentFault(f"not enough free space for {what} in {os.fspath(path)}: about {size_text(need)} "
                               f"needed, {size_text(free)} free on {mount_point(path)}", None,
                               f"free {size_text(need - free)} there or pass {flag} on a larger disk, {AGAIN}")


def fetch_bytes(items: list[dict], data_root: str | os.PathLike) -> int:
    """What fetching ``items`` adds under the data root: a local file's size (nothing when it can
    be hard-linked: same file system), else its duration (or 30 s) at ~100 kB/s."""
    try:
        root_dev = os.stat(free_root(data_root)).st_dev
    except OSError:
        root_dev = None
    total = 0.0
    for it in items:
        if it.get("source") == "local" and it.get("path"):
            try:
                st = os.stat(it["path"])
            except OSError:
                continue
            total += 0 if st.st_dev == root_dev else st.st_size
        elif it.get("source") == "ytdlp":
            duration = (it.get("hint") or {}).get("duration") or it.get("duration_s") or DOWNLOAD_DEFAULT_S
            try:
                total += float(duration) * DOWNLOAD_BYTES_PER_S
            except (TypeError, ValueError):
                total += DOWNLOAD_DEFAULT_S * DOWNLOAD_BYTES_PER_S
    return int(total)


def split_bytes(videos: list[dict], clip_files: str = "none") -> int:
    """What splitting ``videos`` writes: clip WAVs for (at most) their whole duration, and with
    ``clip_files`` copy/encode about the source file again."""
    total = 0.0
    for v in videos:
        total += float(v.get("duration_s") or 0.0) * WAV_BYTES_PER_S
        if clip_files != "none":
            total += float(v.get("filesize") or 0)
    return int(total)


def label_bytes(clips: list[dict]) -> int:
    """What labelling ``clips`` writes: three feature files per clip."""
    total = 0.0
    for c in clips:
        span = float(c.get("clip_end_s") or 0.0) - float(c.get("clip_start_s") or 0.0)
        total += max(span, 0.0) * FEATURE_BYTES_PER_S + FEATURE_FILE_BYTES
    return int(total)


def free_root(path: str | os.PathLike) -> Path:
    """``path`` or its nearest existing parent."""
    p = Path(os.path.abspath(os.fspath(path)))
    return next((q for q in (p, *p.parents) if q.exists()), Path(p.anchor))


#: a sample's tar headers and json beside its feature arrays
SAMPLE_OVERHEAD_BYTES = 6_000


def shard_columns(with_media: bool = False) -> list[str]:
    """The clips manifest columns ``shard_bytes`` reads."""
    return ["status", "audio_embedding", "frame_embedding", "tag_embedding"] + (
        ["clip_path", "audio_path"] if with_media else [])


def shard_bytes(rows: Iterable[dict], data_root: str | os.PathLike, out: str | os.PathLike,
                with_media: bool = False, sample: int = 64) -> int:
    """What ``build-shards`` adds under ``out``: every ``ok`` clip's feature files (and media),
    their mean size measured on the first ``sample`` clips, less the shards already there.

    ``rows``: the clips manifest's rows (``shard_columns`` suffice), streamed by the caller, as
    for the other estimates: this module sits below the manifest readers."""
    refs = shard_columns(with_media)[1:]
    root = DataRoot(data_root)
    n, sizes = 0, []
    for r in rows:
        if r["status"] != "ok":
            continue
        n += 1
        if len(sizes) < sample:
            size = 0
            for ref in (r.get(c) for c in refs):
                with contextlib.suppress(OSError, ValueError):  # a missing file is build-shards' to report
                    size += os.path.getsize(root.resolve(ref)) if ref else 0
            sizes.append(size)
    need = n * (sum(sizes) / len(sizes) + SAMPLE_OVERHEAD_BYTES) if sizes else 0
    have = sum(p.stat().st_size for p in Path(out).glob("*/*.tar")) if Path(out).is_dir() else 0
    return int(max(0, need - have))
