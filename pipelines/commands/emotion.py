"""``c98k emotion``: train and cross-validate the music-emotion head (flags only; see ``pipelines.emotion``, ``commercial98k.label.emotion_training``)."""

from __future__ import annotations

import click

from commercial98k.label.emotion_data import DATASETS
from pipelines.options import device_option


def _excerpt(value: str | None) -> tuple[float, float] | None:
    if not value:
        return None
    try:
        start, seconds = (float(x) for x in value.split(":"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected START:SECONDS, e.g. 20:20") from None
    if start < 0 or seconds <= 0:
        raise click.BadParameter(f"{value!r}: START must be >= 0 and SECONDS > 0")
    return start, seconds


def _common(f):
    f = click.option("--excerpt", default=None, metavar="START:SECONDS",
                     help="Use only this span of every excerpt (the bundled head: 20:20, the middle 20 s "
                          "of Emotify's 60-s excerpts). Default: the whole excerpt.")(f)
    f = click.option("--seed", default=0, show_default=True, help="Seed for folds and hyper-parameter search.")(f)
    f = click.option("--cache-dir", default="data/emotion_cache", show_default=True, type=click.Path(file_okay=False),
                     help="Where excerpt embeddings are cached (re-training never decodes audio again).")(f)
    f = device_option(f)
    f = click.option("--seconds", type=click.FloatRange(min=0), default=30.0, show_default=True,
                     help="Window length the head pools over (0: whole excerpt); clips are split into "
                          "half-overlapping windows of this length and their predictions averaged.")(f)
    f = click.option("--audio-model", default="musicnn", show_default=True, help="AUDIO registry model.")(f)
    f = click.option("--path", "path", required=True, type=click.Path(exists=True, file_okay=False),
                     help="Data set folder, e.g. ../shared/media/emotify.")(f)
    f = click.option("--dataset", type=click.Choice(DATASETS), default="emotify", show_default=True,
                     help="Data-set format.")(f)
    return f




@click.group("emotion")
def command() -> None:
    """Music emotion: train the GEMS/valence-arousal head that `c98k label` uses, and evaluate it.

    \b
    Examples:
      c98k emotion train --path ../shared/media/emotify --out models/emotion_head.npz
      c98k emotion evaluate --path ../shared/media/emotify --folds 5 --plot reports/emotion.png
    """


@command.command("train")
@_common
@click.option("--out", default="models/emotion_head.npz", show_default=True, type=click.Path(dir_okay=False),
              help="Head file to write (.npz); pass it to the labeller.")
def train_cmd(dataset: str, path: str, audio_model: str, seconds: float, device: str, cache_dir: str, seed: int,
              excerpt: str | None, out: str) -> None:
    """Fit the emotion head on a labelled data set (Emotify GEMS votes, PMEmo or DEAM valence/arousal).

    Audio embeddings of the excerpts are cached in --cache-dir, so training again is quick.

    \b
    Examples:
      c98k emotion train --path ../shared/media/emotify --out models/emotion_head.npz
      c98k emotion train --path ~/data/emotify --excerpt 20:20 --seconds 20   # original layout, 400 tracks
      c98k emotion train --dataset pmemo --path ~/data/PMEmo2019 --audio-model openl3 --device cuda
    """
    from pipelines import emotion

    head = emotion.train(dataset, path, audio_model, out, seconds or None, device, cache_dir, seed,
                         _excerpt(excerpt))
    m = head.meta
    click.echo(f"{out}: {head.info.tag()} trained on {m['items']} {dataset} items ({m['windows']} windows) "
               f"with {head.audio_model}; classes: {', '.join(head.classes)}")


@command.command("evaluate")
@_common
@click.option("--folds", type=click.IntRange(2, 50), default=5, show_default=True, help="Cross-validation folds.")
@click.option("--plot", default=None, type=click.Path(dir_okay=False),
              help="Also save a PNG of predicted vs human vote share per emotion (GEMS data sets).")
def evaluate_cmd(dataset: str, path: str, audio_model: str, seconds: float, device: str, cache_dir: str, seed: int,
                 excerpt: str | None, folds: int, plot: str | None) -> None:
    """k-fold cross-validation: agreement with human labels next to the training-fold-mean reference.

    Prints one row per metric: the head's out-of-fold score, the score of always predicting the
    training folds' mean, and their ratio.

    \b
    Examples:
      c98k emotion evaluate --path ../shared/media/emotify
      c98k emotion evaluate --dataset deam --path ~/data/DEAM --folds 10 --seed 1
    """
    from pipelines import emotion

    res, table = emotion.evaluate(dataset, path, audio_model, seconds or None, folds, seed, device, cache_dir,
                                  plot, _excerpt(excerpt))
    click.echo(f"{dataset}: {len(res.dataset)} items, {folds}-fold CV (seed {seed}), audio model {audio_model}")
    click.echo(table)
    if plot and res.probs:
        click.echo(f"plot: {plot}")
