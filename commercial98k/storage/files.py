"""File-system helpers: atomic writes, hashing, safe names."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_SAFE_ID = re.compile(r"[^A-Za-z0-9_-]+")
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    Readers never see a half-written file: either the old content or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; the final file gets the usual permissions
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as e:
        if e.filename is None and e.errno is not None:  # a failed write() names no file: name the one written
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON to ``path`` atomically."""
    atomic_write_bytes(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str).encode("utf-8"))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safe_id(*parts: str, max_len: int = 120) -> str:
    """Join ``parts`` into an id safe as a file name and a WebDataset key (no dots, no slashes).

    Characters outside ``[A-Za-z0-9_-]`` become ``_``; long ids keep a hash suffix so they stay unique.
    """
    raw = "-".join(str(p) for p in parts if p is not None and str(p) != "")
    clean = _SAFE_ID.sub("_", raw).strip("_-") or "x"
    if len(clean) > max_len or clean != raw:
        digest = hashlib.sha1(raw.encode("utf-8")).hexdigest()[:8]
        if len(clean) > max_len - 9:
            clean = clean[: max_len - 9]
        if clean != raw:
            clean = f"{clean}_{digest}"
    return clean


class DataRoot:
    """The data root: manifests hold paths relative to it, files live under its absolute path.

    The one place that checks "a path under the data root". The root is resolved once; a
    reference is normalised lexically against it (no per-call ``resolve``: shards look up
    thousands), so ``..`` cannot leave the root while symlinks inside it (a ``videos`` folder
    on another disk) keep working.
    """

    def __init__(self, root: str | os.PathLike | DataRoot):
        self.root: Path = root.root if isinstance(root, DataRoot) else Path(root).resolve()

    def __repr__(self) -> str:
        return f"DataRoot({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    def _inside(self, path: str) -> bool:
        root = str(self.root)
        return path == root or path.startswith(root.rstrip(os.sep) + os.sep)

    def contains(self, path: str | os.PathLike) -> bool:
        """Whether an absolute path lies under the root (lexically, as given: resolve it first to
        follow symlinks)."""
        return self._inside(os.path.abspath(os.fspath(path)))

    def resolve(self, relative: str | os.PathLike) -> Path:
        """The absolute path of ``relative`` (a manifest reference, or an absolute path inside the root).

        Raises ``ValueError`` naming the path when it escapes the root.
        """
        path = os.path.normpath(os.path.join(self.root, os.fspath(relative)))
        if not self._inside(path):
            raise ValueError(f"path {os.fspath(relative)!r} escapes the data root {self.root}")
        return Path(path)

    def relative(self, absolute: str | os.PathLike) -> str:
        """The manifest reference (POSIX, relative to the root) of a path inside the root.

        Raises ``ValueError`` naming the path when it lies outside the root.
        """
        path = os.path.abspath(absolute)
        if not self._inside(path):
            path = os.path.realpath(absolute)  # reached through a symlink of the root itself
            if not self._inside(path):
                raise ValueError(f"path {os.fspath(absolute)!r} is outside the data root {self.root}")
        return Path(os.path.relpath(path, self.root)).as_posix()
