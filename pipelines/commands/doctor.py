"""``c98k doctor``: check the tools a crawl and the stages need, one ✓/✗ line each."""

from __future__ import annotations

import sys

import click


@click.command("doctor")
@click.option("--cookies", type=click.Path(dir_okay=False), default=None,
              help="A cookies.txt to check (the one you pass to c98k fetch).")
@click.option("--data-root", default="data", show_default=True, type=click.Path(file_okay=False),
              help="Folder whose free space is checked.")
@click.option("--manifest-dir", default="manifests", show_default=True, type=click.Path(file_okay=False),
              help="Manifest folder whose free space and write access are checked.")
@click.option("--address", default=None, help="Ray address to check (ray://host:10001, host:port or auto).")
@click.option("--cuda", is_flag=True, help="Require CUDA (otherwise a CPU-only torch is fine).")
@click.option("--min-free-gb", type=click.FloatRange(0), default=5.0, show_default=True,
              help="Free space the data root needs.")
def command(cookies: str | None, data_root: str, manifest_dir: str, address: str | None, cuda: bool,
            min_free_gb: float) -> None:
    """Check yt-dlp, its JS runtime (deno) and EJS scripts, ffmpeg/ffprobe, Chromaprint, onnxruntime,
    torch/CUDA, a cookies file, the free space of the data root and the manifest folder, and a Ray address.

    Exits 1 if a required check fails.

    \b
    Examples:
      c98k doctor
      c98k doctor --cookies cookies.txt --data-root /mnt/ads --address ray://head:10001
    """
    from commercial98k.doctor import run_checks

    checks = run_checks(cookies=cookies, data_root=data_root, address=address, need_cuda=cuda,
                        min_free_gb=min_free_gb, manifest_dir=manifest_dir)
    for c in checks:
        click.echo(c.line())
    failed = [c.name for c in checks if c.required and not c.ok]
    if failed:
        click.echo(f"error: not ready: {', '.join(failed)}", err=True)
        sys.exit(1)
