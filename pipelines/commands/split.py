"""``c98k split``: shots, music segment, clips and music identity for every fetched video."""

from __future__ import annotations

import click

from commercial98k.split.shots import DEFAULT_THRESHOLDS, DETECTORS
from pipelines.crashes import exit_if_crashed
from pipelines.options import DEFAULT_CLIPS_MANIFEST, DEFAULT_VIDEOS_MANIFEST, data_root, engine_options


@click.command("split")
@click.option("--videos-manifest", default=DEFAULT_VIDEOS_MANIFEST, show_default=True,
              type=click.Path(dir_okay=False), help="Input: the manifest written by c98k fetch.")
@click.option("--manifest", default=DEFAULT_CLIPS_MANIFEST, show_default=True, type=click.Path(dir_okay=False),
              help="Output: the clips manifest (one row per clip; resumed if present).")
@data_root
@click.option("--detector", type=click.Choice(DETECTORS), default="adaptive", show_default=True,
              help="PySceneDetect shot detector.")
@click.option("--threshold", type=float, default=None,
              help="Detector threshold; default per detector: "
                   + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_THRESHOLDS.items()) + ".")
@click.option("--clip-seconds", type=click.FloatRange(1.0), default=30.0, show_default=True,
              help="Longest clip; longer music segments are cut into windows ending on shot boundaries.")
@click.option("--min-clip-seconds", type=click.FloatRange(0.0), default=4.0, show_default=True,
              help="Shorter windows are dropped.")
@click.option("--music-threshold", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="YAMNet P(music) that starts a music segment (it ends below 0.3x this; under a voice-over "
                   "it continues while P(music) stays above 0.05).")
@click.option("--clip-height", type=click.IntRange(0), default=480, show_default=True,
              help="Scale clips taller than this down to it (0: keep the source size).")
@click.option("--clip-files", type=click.Choice(["none", "copy", "encode"]), default="none", show_default=True,
              help="Write clips/<clip_id>.mp4: none (spans only; label reads the source video), copy (stream "
                   "copy, re-encoding only codecs MP4 cannot hold) or encode (H.264 re-encode at crf 12, frame-accurate; "
                   "about the source's bitrate, so features stay within cosine 0.99 of the span's). "
                   "build-shards --with-media needs copy or encode.")
@click.option("--fingerprint", type=click.Choice(["landmark", "chromaprint", "both"]), default="landmark",
              show_default=True,
              help="Which audio fingerprint joins clips of one track into a music_id: landmark (spectral-peak pairs "
                   "at one time offset; holds under a voice-over), chromaprint (the earlier identity; fails under "
                   "speech) or both (joined when either matches). Both are always stored in the manifest.")
@click.option("--music-library", type=click.Path(file_okay=False, exists=True), default=None,
              help="A folder of full music tracks (any audio or video files, searched recursively). Each is "
                   "fingerprinted once (cached, incremental); a clip that plays one gets its path as music_track, "
                   "its start in the track as music_offset_s, and the track's id as music_id, so ads playing "
                   "different parts of one track share it. Clips matching no track keep the pipeline's ids.")
@click.option("--retry-failed", is_flag=True, help="Split videos whose split failed before again.")
@click.option("--wait", is_flag=True,
              help="When another process is writing the clips manifest, wait for it to finish instead of exiting 1.")
@engine_options
def command(videos_manifest: str, manifest: str, data_root: str, detector: str, threshold: float | None,
            clip_seconds: float, min_clip_seconds: float, music_threshold: float, clip_height: int, clip_files: str,
            fingerprint: str, music_library: str | None, retry_failed: bool, workers: int, engine: str, address: str | None, wait: bool = False) -> None:
    """Cut every fetched video into clips where its background music plays.

    \b
    Per video, from one decode: shots (PySceneDetect), music segment (YAMNet) and clips of up
    to --clip-seconds (spans in the manifest; files in data/clips/<clip_id>.mp4 only with
    --clip-files copy|encode) with their audio in data/audio/<clip_id>.wav (mono 16 kHz), where
    a voice-over speaks (speech_segments, speech_ratio), landmark and Chromaprint fingerprints
    per clip and a perceptual hash of keyframes. A music bed under a voice-over stays one segment.
    Then clips of the same track get one music_id and re-uploaded videos one dup_group.
    Resumable: finished videos are skipped; failed ones too, unless --retry-failed.

    \b
    Examples:
      c98k split
      c98k split --clip-seconds 15 --detector content --workers 2
      c98k split --music-library ~/licensed-music      # name the track each ad plays
      c98k split --videos-manifest run2/videos.parquet --manifest run2/c98k.parquet --data-root run2/data
    """
    from pipelines.split import SplitConfig, run_split

    if min_clip_seconds > clip_seconds:
        raise click.BadParameter(f"{min_clip_seconds:g} is longer than --clip-seconds {clip_seconds:g}",
                                 param_hint="--min-clip-seconds")
    config = SplitConfig(data_root=data_root, detector=detector, threshold=threshold, clip_seconds=clip_seconds,
                         min_clip_seconds=min_clip_seconds, music_threshold=music_threshold,
                         clip_height=clip_height or None, clip_files=clip_files, fingerprint=fingerprint,
                         music_library=music_library)
    counts = run_split(videos_manifest, manifest, config, workers=workers, engine=engine, address=address,
                       retry_failed=retry_failed, wait=wait, on_wait=lambda m: click.echo(m, err=True))
    summary = ", ".join(f"{k} {v}" for k, v in counts.items())
    click.echo(f"{manifest}: {summary}")
    exit_if_crashed(counts.get("crashed", 0), "video(s)")
