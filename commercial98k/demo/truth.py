"""The generated corpus knows which track each ad plays: check ``music_id`` against it, or replace it.

``c98k split`` finds a track's identity from Chromaprint fingerprints (``identity``). On the
benchmark corpus's short ads, where a voice-over covers half of an 8-14 s music bed, it splits a
track into several ``music_id`` s (690 ids for 321 tracks, 206 tracks with several; 4 ids hold two tracks). A grouped
train/test split by ``music_id`` then puts clips of one track on both sides, and the retrieval
gallery holds one track several times. A benchmark of the *recommender* must not inherit that,
so the benchmark corpus builds its shards from a copy of the clips manifest whose ``music_id`` is
the true track (``true_track_ids``); the pipeline's own manifest is left as the pipeline made it,
and ``identity_agreement`` reports how far it is from the truth.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import pyarrow as pa


def true_track_of(corpus: dict) -> dict[str, str]:
    """``platform_id`` (the ad's file name without extension) -> the ``track_id`` it plays."""
    return {v["file"].rsplit(".", 1)[0]: v["track_id"] for v in corpus["videos"]}


def true_music_id(track_id: str) -> str:
    """The ``music_id`` standing for a true track: ``t-`` + 12 hex digits of its sha1."""
    return "t-" + hashlib.sha1(track_id.encode("utf-8")).hexdigest()[:12]


def true_track_ids(clips: pa.Table, corpus: dict) -> pa.Table:
    """``clips`` with each identified clip's ``music_id`` replaced by its true track's id.

    Clips without a ``music_id`` (no music) and clips of videos the corpus does not know keep theirs.
    """
    truth = true_track_of(corpus)
    ids = [true_music_id(truth[p]) if m is not None and p in truth else m
           for p, m in zip(clips.column("platform_id").to_pylist(), clips.column("music_id").to_pylist(), strict=True)]
    i = clips.schema.get_field_index("music_id")
    return clips.set_column(i, clips.schema.field(i), pa.array(ids, clips.schema.field(i).type))


def true_track_moods(corpus: dict) -> dict[str, str]:
    """The true ``music_id`` of every track the corpus's ads play -> that track's mood label.

    The benchmark reads it for its oracle-emotion run (``yuyin benchmark --track-moods``); training never does.
    """
    return {true_music_id(v["track_id"]): v["track_mood"] for v in corpus["videos"] if v.get("track_mood")}


def identity_agreement(clips: pa.Table, corpus: dict) -> dict[str, int]:
    """How the pipeline's ``music_id`` s compare with the true tracks of the identified clips.

    ``ids`` and ``tracks``: distinct ids and true tracks; ``mixed_ids``: ids holding clips of more
    than one track (false merges); ``split_tracks``: tracks spread over more than one id.
    """
    truth = true_track_of(corpus)
    tracks_of: dict[str, set[str]] = defaultdict(set)
    ids_of: dict[str, set[str]] = defaultdict(set)
    for p, m in zip(clips.column("platform_id").to_pylist(), clips.column("music_id").to_pylist(), strict=True):
        if m is not None and p in truth:
            tracks_of[m].add(truth[p])
            ids_of[truth[p]].add(m)
    return {"ids": len(tracks_of), "tracks": len(ids_of), "mixed_ids": sum(len(t) > 1 for t in tracks_of.values()),
            "split_tracks": sum(len(i) > 1 for i in ids_of.values())}


__all__ = ["identity_agreement", "true_music_id", "true_track_ids", "true_track_moods", "true_track_of"]
