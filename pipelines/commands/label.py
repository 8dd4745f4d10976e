"""``c98k label``: embeddings, emotion, tags and category confidence for every clip."""

from __future__ import annotations

import click

from commercial98k.manifest.corrections import is_corrections_file
from pipelines.crashes import exit_if_crashed
from pipelines.options import DEFAULT_CLIPS_MANIFEST, data_root, device_option, engine_options, gpu_option


def _weights(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    from commercial98k.label.extractors import WEIGHT_KINDS

    pairs = []
    for v in values:
        kind, sep, path = v.partition("=")
        if not sep or kind not in WEIGHT_KINDS or not path:
            raise click.BadParameter(f"{v!r}: expected KIND=PATH with KIND one of {', '.join(WEIGHT_KINDS)}",
                                     param_hint="--weights")
        pairs.append((kind, path))
    return tuple(pairs)


def _unless_locked(ctx: click.Context, param: click.Parameter, wait: bool) -> bool:
    """A second writer exits at once, before --device loads torch (seconds); the stage then locks."""
    from commercial98k.manifest.lock import check_unlocked

    if not wait and ctx.params.get("manifest"):
        check_unlocked(ctx.params["manifest"])
    return wait


@click.command("label")
@click.option("--manifest", default=DEFAULT_CLIPS_MANIFEST, show_default=True, type=click.Path(dir_okay=False),
              is_eager=True,
              help="Clips manifest written by `c98k split`; updated in place.")
@data_root
@click.option("--audio-model", default="musicnn", show_default=True,
              help="Audio embedding model (registry name: musicnn, openl3).")
@click.option("--frame-model", default="efficientnet-lite0", show_default=True,
              help="Frame embedding model: efficientnet-lite0 (offline) or clip (needs open_clip_torch).")
@click.option("--text-model", default="use-multilingual", show_default=True,
              help="Text model for tag embeddings and the zero-shot category match.")
@click.option("--emotion-model", default="gems-head", show_default=True,
              help="Emotion head over audio embeddings (`c98k emotion train` makes one); 'none' leaves "
                   "emotion columns empty.")
@click.option("--speech-pooling", type=click.Choice(["weighted", "none"]), default="weighted", show_default=True,
              help="weighted: the emotion leans on each clip's music-only audio frames (speech_segments from "
                   "`c98k split`; voiced frames corrected and down-weighted; emotion_model tag "
                   "'-speech-weighted'); none: every frame alike, as before.")
@click.option("--frame-fps", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Frames sampled per second of clip for frame embeddings.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=None,
              help="Inference batch size (frames / audio patches per forward pass) [default: measured per "
                   "model on CPU (frames 1, audio 8), 32 on CUDA].")
@click.option("--clips-per-batch", type=click.IntRange(1, 1024), default=8, show_default=True,
              help="Clips whose frames and texts go through the models together (local engine).")
@click.option("--music-tag-threshold", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Keep music tags whose clip-level probability is at least this.")
@device_option
@click.option("--weights", "weights", multiple=True, metavar="KIND=PATH",
              help="Local weights overriding the default (KIND: audio, frames, emotion); repeatable.")
@engine_options
@gpu_option
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Label at most this many clips.")
@click.option("--ocr/--no-ocr", default=True, show_default=True,
              help="Read on-screen text (RapidOCR PP-OCRv4, Chinese + English) of a few keyframes per clip.")
@click.option("--ocr-frames", type=click.IntRange(1, 16), default=3, show_default=True,
              help="Keyframes (shot middles, near-duplicates dropped) read per clip.")
@click.option("--visual-evidence", type=click.Choice(["table", "embedding", "none"]), default="table",
              show_default=True, help="How frame class scores become category evidence (clip: zero-shot prompts).")
@click.option("--category-calibration", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Calibration JSON of the combined category score (benchmarks/labels.py --fit-calibration), "
                   "or a corrections file (<manifest>.corrections.json from `c98k browse`): the weights are then "
                   "fitted on the corrected clips and every labelled clip is rescored with them.")
@click.option("--wait", is_flag=True, is_eager=True, callback=_unless_locked,
              help="When another process is writing the manifest, wait for it to finish instead of exiting 1.")
@click.option("--retry-failed", is_flag=True, help="Label clips whose labelling failed before again.")
def command(manifest: str, data_root: str, audio_model: str, frame_model: str, text_model: str,
            emotion_model: str, frame_fps: float, batch_size: int | None, clips_per_batch: int,
            music_tag_threshold: float, device: str, weights: tuple[str, ...], workers: int, engine: str,
            address: str | None, gpus_per_worker: float, limit: int | None, ocr: bool = True, ocr_frames: int = 3,
            visual_evidence: str = "table", category_calibration: str | None = None,
            retry_failed: bool = False, wait: bool = False, speech_pooling: str = "weighted") -> None:
    """Compute what YuYin learns from, for every `ok` clip not yet labelled by these models.

    \b
    Per clip: audio-embedding sequence, frame embeddings, music tags, emotion (valence, arousal,
    GEMS class + probabilities), tags from page text, on-screen text and music (with
    tag_sources), and one calibrated category distribution from page text, on-screen text
    (OCR) and the frames (category_probs, predicted_category, category_confidence). Features go to DATA_ROOT/features/; the manifest
    records them with the provenance of every model. Run again to resume.

    \b
    Examples:
      c98k label
      c98k label --device cuda --batch-size 64 --clips-per-batch 16
      c98k label --audio-model openl3 --emotion-model none --limit 100
      c98k label --weights emotion=models/emotion_head.npz
      c98k label --retry-failed                 # once the missing clip files are back
    """
    from commercial98k.label.extractors import LabelConfig
    from pipelines.label import LabelOptions, run_label

    if category_calibration and is_corrections_file(category_calibration):
        from commercial98k.label.category import calibrate_from_corrections

        cal, path, rescored = calibrate_from_corrections(manifest, category_calibration)
        click.echo(f"category calibration {cal.tag()} fitted on {cal.fitted_on}: ECE {cal.ece_before:.3f} -> "
                   f"{cal.ece_after:.3f}; rescored {rescored} labelled clips; saved {path}")
        category_calibration = str(path)
    config = LabelConfig(audio_model=audio_model, frame_model=frame_model, text_model=text_model,
                         emotion_model=emotion_model, device=device, batch_size=batch_size,
                         weights=_weights(weights), ocr=ocr, ocr_frames=ocr_frames,
                         visual_evidence=visual_evidence, category_calibration=category_calibration,
                         speech_pooling=speech_pooling)
    options = LabelOptions(frame_fps=frame_fps, music_tag_threshold=music_tag_threshold,
                           clips_per_batch=clips_per_batch)
    counts = run_label(manifest, data_root, config, options, workers=workers, engine=engine,
                       address=address, limit=limit, retry_failed=retry_failed,
                       gpus_per_worker=gpus_per_worker, wait=wait, on_wait=lambda m: click.echo(m, err=True))
    click.echo(f"{manifest}: labelled {counts['labelled']}, failed {counts['failed']}, "
               f"already labelled {counts['skipped']}, not ok (left alone) {counts['not_ok']}"
               + (f", failed before {counts['failed_before']} (--retry-failed retries them)"
                  if counts["failed_before"] else ""))
    exit_if_crashed(counts["crashed"], "clip(s)")
