"""A reference music library: which licensed track each clip plays (``c98k split --music-library DIR``).

A fingerprint can only match audio it shares, so two ads that play different parts of one track
are never joined by comparing the ads with each other. With the full tracks at hand they are:
every audio file under the library folder is fingerprinted once (landmarks of the whole track,
``split.landmarks``), kept in a ``LandmarkIndex`` in the cache (``<cache>/music-library/<sha12 of
the folder>/``, so a read-only library works), and updated incrementally (a file is fingerprinted
again only when its size or modification time changed). A clip whose landmarks match a track
gets ``music_track`` (the file's path inside the library), ``music_offset_s`` (where in the track
the clip starts) and the track's id ``t-`` + sha1(path)[:12] as its ``music_id``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from commercial98k.identity import landmarks as lm
from commercial98k.identity.landmark_index import LandmarkIndex
from commercial98k.media.ffmpeg_io import load_audio
from commercial98k.models.weights import cache_dir
from commercial98k.storage.files import atomic_write_json

LIBRARY_BATCH = 32  # tracks fingerprinted per index block
AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wma", ".aiff", ".aif",
                  ".mp4", ".mkv", ".webm", ".mov"}


def track_id(track: str) -> str:
    """The music id of a library track (its path inside the library)."""
    return f"t-{hashlib.sha1(track.encode('utf-8')).hexdigest()[:12]}"


def library_index_dir(library: str | os.PathLike) -> Path:
    """Where the library's fingerprints are cached."""
    key = hashlib.sha1(str(Path(library).resolve()).encode("utf-8")).hexdigest()[:12]
    return cache_dir() / "music-library" / key


def library_files(library: str | os.PathLike) -> dict[str, Path]:
    """Track path inside the library -> file, for every audio or video file below it."""
    root = Path(library)
    if not root.is_dir():
        raise FileNotFoundError(f"--music-library {library}: not a folder")
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not any(x.startswith(".") for x in p.parts)}


def _version(p: Path) -> str:
    st = p.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def open_library(library: str | os.PathLike, progress: bool = True) -> tuple[LandmarkIndex, dict[str, str]]:
    """The library's index, with new or changed files fingerprinted; also index key -> track path."""
    folder = library_index_dir(library)
    idx = LandmarkIndex(folder)
    tracks_file = folder / "tracks.json"
    known: dict[str, str] = json.loads(tracks_file.read_text(encoding="utf-8")) if tracks_file.is_file() else {}
    files = library_files(library)
    todo = {f"{t}@{_version(p)}": (t, p) for t, p in files.items()}
    todo = {k: v for k, v in todo.items() if k not in known}
    errors: list[str] = []
    batch: dict[str, tuple[str, str]] = {}

    def flush() -> None:  # a batch at a time: one index block each, and a killed run keeps what it saved
        idx.bulk_load({k: track_id(t) for k, (t, _) in batch.items()}, {k: f for k, (_, f) in batch.items()})
        known.update({k: t for k, (t, _) in batch.items()})
        atomic_write_json(tracks_file, known)
        batch.clear()

    for key, (track, path) in tqdm(sorted(todo.items()), desc="music library", unit="track",
                                   disable=not progress or len(todo) < 2):
        try:
            batch[key] = (track, lm.encode(lm.extract_peaks(load_audio(path, lm.SAMPLE_RATE))))
        except Exception as e:  # an unreadable file is reported, the rest of the library still works
            errors.append(f"{track}: {e}")
        if len(batch) >= LIBRARY_BATCH:
            flush()
    if batch:
        flush()
    for line in errors:  # one line each, as build-shards warns
        tqdm.write(f"warning: music library: {line}", file=sys.stderr)
    return idx, known


def match_library(idx: LandmarkIndex, keys: dict[str, str], clips: dict[str, str]) -> dict[str, tuple[str, float]]:
    """clip_id -> (track path, offset of the clip in the track, seconds) for clips matching a track."""
    ids = [c for c, v in sorted(clips.items()) if v and idx.usable(idx.decode_items(v))]
    if not ids or idx.size == 0:
        return {}
    found = idx.best_known([idx.decode_items(clips[c]) for c in ids])
    # t_clip = t_track + offset, so the clip starts -offset into the track
    return {ids[q]: (keys.get(key, key.rsplit("@", 1)[0]), round(-m.offset_s, 3)) for q, (key, m) in found.items()}


def with_library_ids(music: dict[str, str], tracks: dict[str, str]) -> dict[str, str]:
    """Pipeline music ids with library tracks applied: a matched clip takes its track's id, and the
    other clips of its pipeline group take the group's most frequent track."""
    by_group: dict[str, Counter] = {}
    for clip, track in tracks.items():
        if clip in music:
            by_group.setdefault(music[clip], Counter())[track] += 1
    out = {}
    for clip, mid in music.items():
        track = tracks.get(clip) or (by_group[mid].most_common(1)[0][0] if mid in by_group else None)
        out[clip] = track_id(track) if track else mid
    return out
