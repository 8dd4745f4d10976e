"""``c98k doctor``: is this machine ready to crawl and process? One ✓/✗ line per tool.

Each check returns a ``Check``; ``required`` ones make ``doctor`` fail. Nothing here needs
the network: a Ray address is only checked for a listening port.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import socket
import subprocess
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True

    def line(self) -> str:
        mark = "✓" if self.ok else "✗"
        return f"{mark} {self.name}: {self.detail}" + ("" if self.ok or self.required else " (optional)")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _first_line(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].split(" Copyright")[0] if text else "?"


def check_ytdlp() -> Check:
    v = _version("yt-dlp")
    return Check("yt-dlp", v is not None, v or "not installed: pip install yt-dlp")


def check_js_runtime() -> Check:
    from .sources.ytdlp import js_runtime_info

    found = js_runtime_info()
    if found is None:
        return Check("JS runtime", False, "no deno found: pip install deno (YouTube formats need it)")
    return Check("JS runtime", True, f"deno {found[1]} ({found[0]})")


def check_ejs() -> Check:
    v = _version("yt-dlp-ejs")
    return Check("EJS scripts", v is not None, f"yt-dlp-ejs {v}" if v else "not installed: pip install yt-dlp-ejs")


def check_ffmpeg() -> list[Check]:
    from commercial98k.media.ffmpeg_io import MediaError, ffmpeg_bin, ffprobe_bin

    from .faults import EnvironmentFault

    try:
        ff = ffmpeg_bin()
        out = [Check("ffmpeg", True, f"{_first_line([ff, '-version'])} ({ff})")]
    except (MediaError, OSError, EnvironmentFault) as e:
        out = [Check("ffmpeg", False, str(e))]
    probe = ffprobe_bin()
    av = _version("av")
    if probe:
        out.append(Check("ffprobe", True, f"{_first_line([probe, '-version'])} ({probe})", required=False))
    else:
        out.append(Check("ffprobe", False, f"not on PATH; PyAV {av} probes instead" if av else "not on PATH",
                         required=False))
    return out


def check_chromaprint() -> Check:
    fpcalc = shutil.which("fpcalc")
    if fpcalc:
        return Check("fpcalc/libchromaprint", True, f"{_first_line([fpcalc, '-version'])} ({fpcalc})")
    import ctypes.util

    lib = ctypes.util.find_library("chromaprint")
    return Check("fpcalc/libchromaprint", lib is not None,
                 f"libchromaprint ({lib})" if lib else "neither fpcalc nor libchromaprint: apt-get install libchromaprint-tools")


def check_onnxruntime() -> Check:
    try:
        import onnxruntime as ort
    except ImportError:
        return Check("onnxruntime", False, "not installed: pip install onnxruntime")
    return Check("onnxruntime", True, f"{ort.__version__} ({', '.join(ort.get_available_providers())})")


def check_torch(need_cuda: bool = False) -> Check:
    try:
        import torch
    except ImportError:
        return Check("torch/CUDA", False, "torch not installed")
    if torch.cuda.is_available():
        return Check("torch/CUDA", True, f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
                                         f"{torch.cuda.device_count()} GPU(s)")
    return Check("torch/CUDA", not need_cuda, f"torch {torch.__version__}, CUDA not available (CPU only)",
                 required=need_cuda)


def check_cookies(path: str) -> Check:
    p = Path(path)
    if not p.is_file():
        return Check("cookies", False, f"{path}: no such file")
    lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines or not lines[0].startswith(("# Netscape HTTP Cookie File", "# HTTP Cookie File")):
        return Check("cookies", False, f"{path}: not a Netscape cookies.txt (export one with a browser add-on "
                                        "or yt-dlp --cookies-from-browser)")
    rows = [ln.split("\t") for ln in lines if ln.strip() and (not ln.startswith("#") or ln.startswith("#HttpOnly_"))]
    domains = sorted({r[0].removeprefix("#HttpOnly_").lstrip(".") for r in rows if len(r) >= 7})
    return Check("cookies", bool(rows), f"{path}: {len(rows)} cookies for {', '.join(domains[:5]) or 'no domain'}"
                 + (" ..." if len(domains) > 5 else ""))


def check_free_space(folder: str, min_free_gb: float, name: str = "data root") -> Check:
    """Free space (and whether this user can write) on ``folder``'s file system."""
    import tempfile

    from .faults import free_bytes, free_root, mount_point, size_text

    free = free_bytes(folder)
    ok = free >= min_free_gb * 1e9
    detail = f"{folder}: {size_text(free)} free on {mount_point(folder)}" + (
        "" if ok else f" (less than {min_free_gb:g} GB)")
    try:  # a read-only or foreign folder fails every write of a stage: say so here
        with tempfile.TemporaryFile(dir=free_root(folder)):
            pass
    except OSError as e:
        return Check(name, False, f"{detail}; cannot write there ({e.strerror or e})")
    return Check(name, ok, detail)


def check_ray(address: str) -> Check:
    if _version("ray") is None:
        return Check("Ray", False, "not installed: pip install 'commercial98k[ray]'")
    if address in ("auto", "local"):
        return Check("Ray", True, f"ray {_version('ray')}, address {address}")
    parts = urllib.parse.urlsplit(address if "://" in address else f"ray://{address}")
    host, port = parts.hostname, parts.port or 10001
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError as e:
        return Check("Ray", False, f"{address}: cannot connect ({e.strerror or e})")
    return Check("Ray", True, f"ray {_version('ray')}, {host}:{port} answers")


def run_checks(cookies: str | None = None, data_root: str = "data", address: str | None = None,
               need_cuda: bool = False, min_free_gb: float = 5.0, manifest_dir: str = "manifests") -> list[Check]:
    """Every check, in the order ``c98k doctor`` prints them."""
    steps: list[Callable[[], Check | list[Check]]] = [
        check_ytdlp, check_js_runtime, check_ejs, check_ffmpeg, check_chromaprint, check_onnxruntime,
        lambda: check_torch(need_cuda)]
    if cookies:
        steps.append(lambda: check_cookies(cookies))
    steps.append(lambda: check_free_space(data_root, min_free_gb))
    steps.append(lambda: check_free_space(manifest_dir, 0.01, "manifest folder"))
    if address:
        steps.append(lambda: check_ray(address))
    out: list[Check] = []
    for step in steps:
        try:
            got = step()
        except Exception as e:  # a broken tool is a ✗ line, never a traceback
            got = Check(getattr(step, "__name__", "check").removeprefix("check_"), False, f"{type(e).__name__}: {e}")
        out += got if isinstance(got, list) else [got]
    return out
