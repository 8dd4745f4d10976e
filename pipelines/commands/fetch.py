"""``c98k fetch``: find and download ad videos of a category into the videos manifest."""

from __future__ import annotations

import sys

import click

from pipelines.crashes import exit_if_crashed
from pipelines.errors import fail
from pipelines.options import DEFAULT_VIDEOS_MANIFEST, data_root, engine_options


@click.command("fetch")
@click.option("--category", "-c", default=None, metavar="ID|all",
              help="Taxonomy category id (see commercial98k/data/categories.json), or 'all'. Without --source its "
                   "queries are searched; with --source it labels what the sources find.")
@click.option("--limit", "-n", type=click.IntRange(1), default=None,
              help="This many downloadable videos per category: further result pages and queries are walked "
                   "until it is met (also the search page size; default 20 a page, no limit).")
@click.option("--source", "-s", "sources", multiple=True, metavar="SRC",
              help="Repeatable. A yt-dlp search (ytsearch20:..., bilisearch10:...), an http(s) page "
                   "(video, channel, playlist, catalog), a .txt/.csv/.tsv/.parquet URL file (optional "
                   "'category' column) or a folder of video files.")
@click.option("--manifest", default=DEFAULT_VIDEOS_MANIFEST, show_default=True, type=click.Path(dir_okay=False),
              help="Videos manifest to append rows to.")
@data_root
@click.option("--sleep", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds to wait before each download and between requests (rate limit).")
@click.option("--retries", type=click.IntRange(0, 20), default=3, show_default=True,
              help="Retries per request/fragment and per video (exponential backoff).")
@click.option("--cookies", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Netscape cookies.txt for platforms that want a login.")
@click.option("--format", "format_", default=None, metavar="SELECTOR",
              help="yt-dlp format selector; default: best video up to --max-height plus best audio, merged.")
@click.option("--max-height", type=click.IntRange(144), default=480, show_default=True,
              help="Highest video resolution to download (lines).")
@click.option("--min-duration", type=click.FloatRange(0), default=5.0, show_default=True,
              help="Skip entries shorter than this many seconds (checked before download).")
@click.option("--max-duration", type=click.FloatRange(0), default=180.0, show_default=True,
              help="Skip entries longer than this many seconds: an ad, not a vlog (checked before download).")
@click.option("--block-limit", type=click.IntRange(0), default=5, show_default=True,
              help="Stop asking a platform after this many 'blocked' answers in a row (0: never).")
@click.option("--retry-failed", is_flag=True, help="Try rows with status 'failed' again.")
@click.option("--wait", is_flag=True,
              help="When another process is writing the manifest, wait for it to finish instead of exiting 1.")
@engine_options
def command(category: str | None, limit: int | None, sources: tuple[str, ...], manifest: str, data_root: str,
            sleep: float, retries: int, cookies: str | None, format_: str | None, max_height: int,
            min_duration: float, max_duration: float, block_limit: int,
            retry_failed: bool, workers: int, engine: str, address: str | None, wait: bool = False) -> None:
    """Find advertisement videos and download them, one manifest row per video.

    Every video gets a status: ok, no_audio, duplicate (same content as an earlier video),
    unsupported, skipped (too short or long, live, geo-blocked), blocked (bot wall, rate limit,
    login wall: tried again next run) or failed, with the cause in the error column. --limit
    counts downloadable ads per category: further result pages and queries are walked until
    it is met. Exits 1 when no source could be read at all. Files go to DATA_ROOT/videos/<video_id>.<ext>. Run the same command again after
    a crash or Ctrl-C: finished videos are skipped, partial downloads resume.

    \b
    Examples:
      c98k fetch --category cosmetics --limit 50
      c98k fetch -c food --limit 100 --max-duration 60 --cookies cookies.txt --sleep 3
      c98k fetch --category all --limit 20 --sleep 2 --workers 4
      c98k fetch -c food -s "ytsearch30:snack commercial" -s "bilisearch30:零食 广告"
      c98k fetch -c apparel -s https://www.youtube.com/@somebrand/videos --cookies cookies.txt
      c98k fetch -s urls.csv                       # url[,category] per line
      c98k fetch -c cosmetics -s ~/ads/cosmetics   # a folder of local video files
      c98k fetch -c all --engine ray --address auto --workers 32
    """
    from commercial98k.engine.ray_executor import DataRootError
    from commercial98k.manifest.io import ManifestError
    from commercial98k.sources import UnsafeSourceError, UrlFileError, YtdlpOptions
    from commercial98k.taxonomy import UnknownCategory
    from pipelines.fetch import fetch

    options = YtdlpOptions(max_height=max_height, format=format_, sleep_s=sleep, retries=retries, cookies=cookies,
                           min_duration_s=min_duration or None, max_duration_s=max_duration or None,
                           block_limit=block_limit)
    try:
        result = fetch(category, sources, manifest=manifest, data_root=data_root, limit=limit, options=options,
                       workers=workers, engine=engine, address=address, retry_failed=retry_failed, wait=wait)
    except (UnknownCategory, UnsafeSourceError, UrlFileError, ValueError, OSError, DataRootError) as e:
        # a bad flag value (category, source) is a usage error (2); a bad file is an input error (1)
        fail(e, 1 if isinstance(e, (ManifestError, UrlFileError, OSError)) else 2)
    if result.no_source_read:
        click.echo(f"error: {result.failure_line()}", err=True)
        sys.exit(1)
    click.echo(result.summary())
    exit_if_crashed(result.crashed, "video(s)")
