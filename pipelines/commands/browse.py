"""``c98k browse``: a local web app over a clips manifest (grid, playback, filters, failures, corrections)."""

from __future__ import annotations

import click

from pipelines.options import DEFAULT_CLIPS_MANIFEST


@click.command("browse")
@click.option("--manifest", default=DEFAULT_CLIPS_MANIFEST, show_default=True, type=click.Path(dir_okay=False),
              help="The clips manifest to show; corrections go beside it (<name>.corrections.json).")
@click.option("--data-root", default="data", show_default=True, type=click.Path(file_okay=False),
              help="Folder the manifest's paths are relative to; nothing outside it is served.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. A non-loopback one needs --allow-remote.")
@click.option("--port", type=click.IntRange(1, 65535), default=8098, show_default=True, help="Port to listen on.")
@click.option("--allow-remote", is_flag=True,
              help="Allow a non-loopback --host (no login: anyone reaching the port can watch and correct).")
@click.option("--who", default=None, help="Name recorded with each correction [default: your user name].")
def command(manifest: str, data_root: str, host: str, port: int, allow_remote: bool, who: str | None) -> None:
    """Look at the data set in a browser: a grid of clips (keyframe, predicted vs crawl category,
    emotions, tags with sources, on-screen text, music id, status), playback of each clip's span of
    its source video, filters and sort, a failures view, and corrections saved beside the manifest
    (used by the next c98k build-shards).

    \b
    Examples:
      c98k browse                                   # http://127.0.0.1:8098/
      c98k browse --manifest demo_work/manifests/c98k.parquet --data-root demo_work/data
      c98k browse --host 0.0.0.0 --allow-remote     # other machines too (prints a warning)
    """
    from commercial98k.browse.server import serve

    serve(manifest, data_root, host=host, port=port, allow_remote=allow_remote, who=who)
