"""A cache, across test runs, for inputs that are slow to build and fixed by what they are built from.

Entries live in ``$C98K_TEST_CACHE`` (default ``/tmp/c98k-test-cache-<uid>``: outside the clone,
so a fresh checkout on the same machine reuses them). An entry's name carries a hash of
everything it is built from (code, model weights, source media), so a change there makes a new
entry instead of reusing a stale one. Delete the folder to start cold.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_CACHE = Path(os.environ.get("C98K_TEST_CACHE", Path(tempfile.gettempdir()) / f"c98k-test-cache-{os.getuid()}"))


def content_key(*parts: object, files: Iterable[Path] = (), stamps: Iterable[Path] = ()) -> str:
    """A short hash of ``parts``, the bytes of ``files`` and the name, size and mtime of ``stamps``
    (large media, where a stamp is enough and reading every byte is not)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode() + b"\0")
    for f in files:
        h.update(str(f).encode() + b"\0" + Path(f).read_bytes())
    for f in stamps:
        st = Path(f).stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def code_files(*relpaths: str) -> list[Path]:
    """Paths of the repository's source files ``relpaths`` (for ``content_key(files=...)``)."""
    return [ROOT / rel for rel in relpaths]


def cache_folder(name: str, key: str) -> Path:
    """``TEST_CACHE/name-key`` for a store that writes each entry atomically (a ``FeatureStore``):
    a run killed midway leaves only whole entries, and the next run adds the rest."""
    folder = TEST_CACHE / f"{name}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cached_file(name: str, key: str, build: Callable[[Path], None]) -> Path:
    """``TEST_CACHE/name-key/<name>``, made by ``build(path)`` the first time. Written under a
    temporary name and renamed into place, so a run killed mid-build (or two runs at once) never
    leaves a half-written file behind."""
    final = cache_folder(name, key) / name
    if not final.is_file():
        work = final.with_name(f".{os.getpid()}.tmp.{name}")
        try:
            build(work)
            os.replace(work, final)
        finally:
            work.unlink(missing_ok=True)
    return final
