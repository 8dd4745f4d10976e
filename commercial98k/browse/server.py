"""Run the ``c98k browse`` app with uvicorn: loopback by default, other addresses only when asked."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

from commercial98k.errors import C98kError
from commercial98k.manifest.io import ManifestError, manifest_exists
from commercial98k.manifest.schema import guess_kind


class BrowseError(C98kError, ValueError):
    """A server that must not start (bad manifest, non-loopback address without consent); one line."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) resolves only to loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def check_manifest(manifest: str | os.PathLike) -> None:
    """Refuse a missing manifest or one that is not a clips manifest, naming it."""
    if not manifest_exists(manifest):
        raise BrowseError(f"{manifest}: no such manifest (run c98k split and c98k label first, or pass --manifest)")
    path = Path(manifest)
    if path.exists():
        import pyarrow.parquet as pq

        try:
            kind = guess_kind(pq.read_schema(path))
        except Exception as e:  # pyarrow raises several types for a file that is not Parquet
            raise ManifestError(f"{path}: not a readable Parquet file ({e})") from e
        if kind != "clips":
            raise BrowseError(f"{path}: a {kind} manifest; c98k browse shows a clips manifest (manifests/c98k.parquet)")


def check_port(host: str, port: int) -> None:
    """Refuse a port another process listens on, naming it (uvicorn would log and exit 3)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as e:
            raise BrowseError(f"cannot listen on {host}:{port} ({e.strerror}); pass another --port") from None


def serve(manifest: str | os.PathLike, data_root: str | os.PathLike, host: str = "127.0.0.1", port: int = 8098,
          allow_remote: bool = False, who: str | None = None, log_level: str = "warning") -> None:
    """Serve until interrupted. A non-loopback ``host`` needs ``allow_remote`` and prints a warning:
    the app has no login, and anyone who reaches it can watch the videos and write corrections."""
    check_manifest(manifest)
    if not Path(data_root).is_dir():
        raise BrowseError(f"{data_root}: the data root is not a folder (pass --data-root)")
    loopback = is_loopback(host)
    if not loopback and not allow_remote:
        raise BrowseError(f"--host {host} is not a loopback address; add --allow-remote to serve other machines "
                          f"(no login: anyone who reaches the port can watch the videos and write corrections)")
    check_port(host, port)
    import uvicorn

    from .app import create_app

    if not loopback:
        print(f"warning: serving {manifest} on {host}:{port} to other machines, without a login: anyone who "
              f"reaches this port can watch the videos under {data_root} and write corrections", file=sys.stderr)
    app = create_app(manifest, data_root, who=who, allowed_hosts=None if loopback else ["*"])
    print(f"c98k browse: http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/  "
          f"({manifest}, data root {data_root}; Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
