"""What every fetch source shares: the item dict, probing a finished file into its row, hashtags."""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, timezone
from pathlib import Path

from commercial98k.media.ffmpeg_io import MediaError
from commercial98k.storage.files import DataRoot, sha256_file

#: Extensions a folder source imports (lower case, with the dot).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".flv", ".ts", ".mpg", ".mpeg", ".wmv", ".3gp")

_HASHTAG = re.compile(r"(?<![\w#&])#(?![\d_-]*(?![\w-]))(\w[\w-]{0,63})", re.UNICODE)  # not "#1"


def videos_dir(data_root: str | Path) -> Path:
    """``<data_root>/videos``: where fetched videos live."""
    return DataRoot(data_root).resolve("videos")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def hashtags(*texts: str | None) -> list[str]:
    """``#words`` found in the texts, in order, without repeats (kept with their ``#``)."""
    seen: dict[str, None] = {}
    for text in texts:
        for m in _HASHTAG.finditer(text or ""):
            seen.setdefault("#" + m.group(1), None)
    return list(seen)


def merge_tags(tags: list[str] | None, *texts: str | None) -> list[str]:
    """Platform tags followed by the hashtags of ``texts`` (title, description), without repeats."""
    out: dict[str, None] = {}
    for t in list(tags or []) + hashtags(*texts):
        t = str(t).strip()
        if t:
            out.setdefault(t, None)
    return list(out)


def iso_date(yyyymmdd: str | None) -> str | None:
    """yt-dlp's ``20230501`` as ``2023-05-01``; other strings unchanged."""
    if yyyymmdd and re.fullmatch(r"\d{8}", yyyymmdd):
        return f"{yyyymmdd[:4]}-{yyyymmdd[4:6]}-{yyyymmdd[6:]}"
    return yyyymmdd or None


def one_line(text: str, limit: int = 500) -> str:
    """An error message as one line (manifest ``error`` column)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def finish_row(row: dict, file: Path, data_root: str | Path, remove_unreadable: bool = True,
               reported_s: float | None = None) -> dict:
    """Probe, check and hash a complete file and fill ``row``: ``ok``, ``no_audio`` or ``failed``.

    The file must lie inside ``<data_root>/videos``. An empty, unreadable or truncated file
    (streams shorter than the container's or the platform's ``reported_s`` duration) is
    ``failed`` and deleted: it is useless, and the next run downloads it again.
    """
    from .inspect import inspect_media, truncation

    rel = DataRoot(data_root).relative(file)  # raises if the file escaped the data root

    def fail(error: str) -> dict:
        row.update(status="failed", error=one_line(error), video_path=None)
        if remove_unreadable:
            with contextlib.suppress(OSError):
                Path(file).unlink()
        return row

    row["video_path"] = rel
    size = Path(file).stat().st_size
    if size == 0:
        return fail("empty file (0 bytes)")
    try:
        check = inspect_media(file)
    except MediaError as e:
        return fail(f"MediaError: {e}")
    p = check.probe
    cut = truncation(check, reported_s) if p.has_video else None
    if cut:
        return fail(cut)
    row.update(
        filesize=size,
        content_sha256=sha256_file(file),
        duration_s=p.duration_s if p.duration_s > 0 else row.get("duration_s"),
        width=p.width,
        height=p.height,
        fps=p.fps,
        has_audio=p.has_audio,
    )
    if not p.has_video:
        row.update(status="failed", error=f"MediaError: {file.name}: no video stream")
    elif not p.has_audio:
        row.update(status="no_audio", error=f"{file.name}: no audio stream (nothing to learn music from)")
    else:
        row.update(status="ok", error=None)
    return row


def is_retryable(status: str | None, error: str | None) -> bool:
    """Rows a rerun tries again without ``--retry-failed``: blocked, truncated or empty downloads."""
    if status == "blocked":
        return True
    return status == "failed" and bool(error) and error.startswith(("truncated (", "empty file ("))
