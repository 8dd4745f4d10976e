"""``c98k build-shards``: write WebDataset shards for YuYin from the labelled clips manifest."""

from __future__ import annotations

import click

from commercial98k.export.filters import SOURCE_MODES
from commercial98k.export.report import empty_split_warnings
from commercial98k.export.shards import ShardFilters
from commercial98k.manifest.schema import STATUSES
from commercial98k.taxonomy import load_taxonomy
from pipelines import shards as stage
from pipelines.options import DEFAULT_CLIPS_MANIFEST, data_root


def _fractions(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected three numbers like 0.8,0.1,0.1") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1) > 1e-6:
        raise click.BadParameter(f"{value!r}: expected three non-negative numbers summing to 1")
    return parts  # type: ignore[return-value]


@click.command("build-shards")
@click.option("--manifest", default=DEFAULT_CLIPS_MANIFEST, show_default=True, type=click.Path(dir_okay=False),
              help="Labelled clips manifest.")
@click.option("--out", default="shards", show_default=True, type=click.Path(file_okay=False),
              help="Output folder: <out>/<split>/<split>-NNNNNN.tar and <out>/index.json.")
@data_root
@click.option("--category", "categories", multiple=True, type=click.Choice(load_taxonomy().ids()), help="Keep only this category (repeatable).")
@click.option("--min-duration", type=float, default=None, help="Keep clips at least this long (s).")
@click.option("--has-music/--any-music", default=True, show_default=True,
              help="Keep only clips with background music, or all clips.")
@click.option("--category-source", type=click.Choice(SOURCE_MODES), default="any", show_default=True,
              help="Which category a clip trains with. A correction made in `c98k browse` always wins; then "
                   "any: the crawl category (search, folder, URL-list column), else the label's prediction; "
                   "crawl: only the crawl category; predicted: only the prediction.")
@click.option("--min-category-confidence", type=click.FloatRange(0, 1), default=None,
              help="Keep clips whose category the label gives at least this probability (the predicted "
                   "probability when the category is predicted; corrected categories are always kept).")
@click.option("--no-corrections", is_flag=True,
              help="Ignore the corrections file beside the manifest (<manifest>.corrections.json).")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES), default=("ok",),
              show_default=True, help="Row statuses to keep (repeatable).")
@click.option("--split-fractions", default="0.8,0.1,0.1", show_default=True, callback=_fractions,
              help="train,val,test shares (splits grouped by music_id and near-duplicate group).")
@click.option("--seed", default=0, show_default=True, help="Seed of the split assignment and sample order.")
@click.option("--samples-per-shard", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--min-shards", type=click.IntRange(1), default=8, show_default=True,
              help="Each split gets at least this many shards (smaller ones if needed), so every "
                   "`torchrun` rank x loader worker of `yuyin train` reads a shard.")
@click.option("--min-tag-count", type=click.IntRange(1), default=1, show_default=True,
              help="A tag enters the vocabulary when it occurs this often in the train split.")
@click.option("--with-media", is_flag=True, help="Also store each clip's mp4 and wav in the shards.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Re-hash existing shards (sha256) to find corrupt ones; --no-verify checks sizes only.")
@click.option("--wait", is_flag=True,
              help="When another process is writing the same --out folder, wait for it to finish instead of exiting 1.")
def command(manifest: str, out: str, data_root: str, categories: tuple[str, ...], min_duration: float | None,
            has_music: bool, category_source: str, min_category_confidence: float | None, no_corrections: bool,
            statuses: tuple[str, ...],
            split_fractions: tuple[float, float, float], seed: int, samples_per_shard: int, min_shards: int,
            min_tag_count: int, with_media: bool, verify: bool, wait: bool = False) -> None:
    """Write train/val/test WebDataset shards (features, emotion, tags, category, metadata).

    Re-running rebuilds only missing, stale or truncated shards. Each shard's _stats.json is
    written last and marks it complete.

    \b
    Examples:
      c98k build-shards
      c98k build-shards --category cosmetics --category food --min-duration 8 --out shards_small
      c98k build-shards --split-fractions 0.9,0.05,0.05 --samples-per-shard 500 --with-media
      c98k build-shards --category-source predicted --min-category-confidence 0.6
    """
    filters = ShardFilters(categories=categories, min_duration=min_duration,
                           has_music=True if has_music else None,
                           min_category_confidence=min_category_confidence, statuses=statuses,
                           category_source=category_source, use_corrections=not no_corrections)
    index = stage.run(manifest, out, data_root, filters=filters, fractions=split_fractions, seed=seed,
                      samples_per_shard=samples_per_shard, with_media=with_media, min_tag_count=min_tag_count,
                      verify_sha256=verify, min_shards=min_shards, wait=wait,
                      on_wait=lambda m: click.echo(m, err=True))
    for line in stage.summary_lines(index, out):
        click.echo(line)
    for line in empty_split_warnings(index):
        click.echo(line, err=True)
