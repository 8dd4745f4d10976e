"""Check a fetched file in-process with PyAV: streams, container duration, and how much is really there.

One ``av.open`` per file, no ffprobe subprocess. ``inspect_media`` demuxes every packet (no
decoding) and takes the end of the last video and audio packets: a download cut short but
still openable (a WebM or MPEG-TS whose header promises 30 s) shows up as a short stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from commercial98k.media.ffmpeg_io import MediaError, Probe, probe_container


@dataclass(frozen=True)
class MediaCheck:
    probe: Probe
    video_end_s: float | None  # end of the last video packet, from the stream's start
    audio_end_s: float | None


def inspect_media(path: str | Path) -> MediaCheck:
    """Probe ``path`` and measure its streams' real length; ``MediaError`` if PyAV cannot read it."""
    import av

    path = str(path)
    try:
        with av.open(path) as container:
            probe, v, a = probe_container(container)
            ends = _stream_ends(container, [s for s in (v, a) if s is not None], probe.duration_s)
            return MediaCheck(probe, ends.get(v.index) if v else None, ends.get(a.index) if a else None)
    except (av.FFmpegError, ValueError) as e:
        raise MediaError(f"{Path(path).name}: cannot read it ({getattr(e, 'strerror', None) or e})") from e


def _stream_ends(container, streams: list, duration_s: float = 0.0) -> dict[int, float]:
    """Stream index -> seconds from the stream's start to the end of its last packet.

    Demuxes only the last ~10 s (a seek; a cut file ends wherever its data ends), and the
    whole file when that seek fails or finds nothing for a stream.
    """
    if not streams:
        return {}
    ends: dict[int, float] = {}
    if duration_s > 12:
        ends = _scan(container, streams, duration_s - 10)
    if len(ends) < len(streams):
        ends = _scan(container, streams, None)
    return ends


def _scan(container, streams: list, from_s: float | None) -> dict[int, float]:
    import av

    tb = {s.index: float(s.time_base) for s in streams}
    start = {s.index: s.start_time or 0 for s in streams}
    last: dict[int, int] = {}
    try:
        container.seek(int(from_s * av.time_base) if from_s else 0, backward=True, any_frame=False)
    except Exception:  # not seekable: no tail to read
        if from_s:
            return {}
    try:
        for packet in container.demux(streams):
            if packet.pts is None:
                continue
            i = packet.stream.index
            end = packet.pts + (packet.duration or 0)
            if end > last.get(i, -1):
                last[i] = end
    except Exception:  # a corrupt tail: what was read so far is what is there
        pass
    return {i: (last[i] - start[i]) * tb[i] for i in last}


def truncation(check: MediaCheck, reported_s: float | None = None) -> str | None:
    """``truncated (decoded 3.1 s of 29.9 s)`` if a stream is short of the expected length, else None.

    Expected: the longer of the container's duration and the platform's reported one. A
    stream may be short by 1 s or 5 %, whichever is more (rounded platform durations, audio
    that ends a little before the picture).
    """
    expected = max(check.probe.duration_s or 0.0, reported_s or 0.0)
    got = [s for s in (check.video_end_s, check.audio_end_s) if s is not None]
    if expected <= 0 or not got:
        return None
    decoded = min(got)
    if expected - decoded > max(1.0, 0.05 * expected):
        return f"truncated (decoded {decoded:.1f} s of {expected:.1f} s)"
    return None
