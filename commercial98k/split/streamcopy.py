"""``--clip-files copy``: cut a clip without re-encoding (stream copy), falling back to a re-encode.

A stream copy starts at the keyframe at or before the span's start; the MP4 edit list written by
ffmpeg makes players and decoders (ffmpeg, PyAV) start at the span's start. Streams that MP4
cannot hold by copy (VP8, Vorbis, ...) are re-encoded with ``clips.cut_clip``. The manifest's
span (``clip_start_s``/``clip_end_s``) stays the truth either way.
"""

from __future__ import annotations

from pathlib import Path

import ffmpeg

from commercial98k.media.ffmpeg_io import MediaError, run_ffmpeg
from commercial98k.split.cut import cut_clip
from commercial98k.storage.files import atomic_path

#: Codecs an MP4 holds by stream copy.
MP4_VIDEO = {"h264", "hevc", "av1", "mpeg4"}
MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus"}

CLIP_FILES = ("none", "copy", "encode")


def _codecs(path: Path) -> tuple[str | None, str | None]:
    import av

    with av.open(str(path)) as c:
        v = next(iter(c.streams.video), None)
        a = next(iter(c.streams.audio), None)
        return (v.codec_context.name if v else None), (a.codec_context.name if a else None)


def copy_clip(video_path: str | Path, out_path: str | Path, start_s: float, end_s: float, *,
              with_audio: bool = True, **encode_options) -> Path:
    """Stream-copy ``[start_s, end_s)`` into an MP4 (atomic); re-encode when the codecs need it."""
    video_path, out_path = Path(video_path), Path(out_path)
    try:
        vcodec, acodec = _codecs(video_path)
    except Exception as e:
        raise MediaError(f"{video_path}: cannot read it ({e})") from e
    if vcodec not in MP4_VIDEO or (with_audio and acodec is not None and acodec not in MP4_AUDIO):
        return cut_clip(video_path, out_path, start_s, end_s, with_audio=with_audio, **encode_options)
    inp = ffmpeg.input(str(video_path), ss=f"{start_s:.6f}")
    streams = [inp["v:0"]] + ([inp["a:0"]] if with_audio and acodec else [])
    with atomic_path(out_path, suffix=".mp4") as tmp:
        run_ffmpeg(ffmpeg.output(*streams, str(tmp), t=f"{end_s - start_s:.6f}", c="copy", movflags="+faststart",
                                 format="mp4").overwrite_output(),
                   f"{video_path}: copying {start_s:.3f}-{end_s:.3f} s", out_path)
    return out_path
