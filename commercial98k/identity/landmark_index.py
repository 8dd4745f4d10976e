"""The persisted music-identity index over landmark fingerprints (``split.landmarks``).

The same storage and incremental matching as the Chromaprint index (``identity_index.MusicIndex``:
memory-mapped sorted segments, size-tiered merges, aliases when a clip joins two groups); what
differs is the key and the check. Postings are every landmark hash of a clip with its anchor
frame (not only the first occurrence), a candidate pair needs ``min_shared`` hashes agreeing on
one offset, and a candidate is confirmed by ``landmarks.match`` / ``is_match`` at its most-voted
offsets. The index lives beside the Chromaprint one: ``<manifest>.landmarks/``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from commercial98k.identity import landmarks as lm
from commercial98k.identity.index import MusicIndex, assign_ids, lookup

#: Fewer peaks than this (about one second of music) cannot identify a track.
MIN_PEAKS = 40


def landmark_problem(text: str | None) -> str | None:
    """Why a clip's landmarks cannot give it a music identity, or None."""
    if not text:
        return "no landmark fingerprint"
    try:
        n = len(lm.decode(text))
    except Exception as e:  # a damaged string
        return f"unreadable landmark fingerprint ({type(e).__name__}: {e})"
    if n < MIN_PEAKS:
        return (f"too few spectral peaks ({n} < {MIN_PEAKS}): the clip's audio is silent, "
                "too quiet or too short to identify the track")
    return None


def landmark_index_dir(manifest: str | os.PathLike) -> Path:
    """``<manifest>.landmarks/`` beside the clips manifest."""
    m = Path(manifest)
    return m.with_name(m.name + ".landmarks")


class LandmarkIndex(MusicIndex):
    """Known clips' constellations; ``add`` (inherited) assigns music ids to new clips."""

    def __init__(self, folder: str | os.PathLike, params: lm.MatchParams = lm.MatchParams(),
                 min_shared: int = 4, stop_share: float = 0.05):
        super().__init__(folder, min_shared=min_shared, stop_share=stop_share)
        self.params = params

    def decode_items(self, fingerprint: str | np.ndarray) -> np.ndarray:
        return lm.packed_items(fingerprint) if isinstance(fingerprint, str) else np.asarray(fingerprint, np.uint32)

    def usable(self, items: np.ndarray) -> bool:
        return lm.peak_count(items) >= MIN_PEAKS

    def postings(self, raws: list[np.ndarray], base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every hash of every clip: (hash, clip, anchor frame), sorted by hash then clip."""
        hs = [lm.hashes(lm.unpack(r)) for r in raws]
        if not hs or not sum(len(h) for h in hs):
            return np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros(0, np.uint16)
        key = np.concatenate([h.h for h in hs])
        clip = np.concatenate([np.full(len(h), base + i, np.int64) for i, h in enumerate(hs)])
        pos = np.concatenate([h.t for h in hs])
        order = np.lexsort((pos, clip, key))
        return (key[order].astype(np.uint32), clip[order].astype(np.uint32),
                np.minimum(pos[order], 65535).astype(np.uint16))

    def batch_pairs(self, arrays: list[np.ndarray]) -> dict[tuple[int, int], dict[int, int]]:
        """Pairs (a < b) of new clips sharing hashes at one offset -> {offset of b in a: votes}."""
        own = self.postings(arrays, 0)
        out: dict[tuple[int, int], dict[int, int]] = defaultdict(lambda: defaultdict(int))
        lookup(own, own, max(50, int(self.stop_share * len(arrays))), self.min_shared, out)
        return {(a, b): offs for (a, b), offs in out.items() if a < b}

    def _matches(self, a: np.ndarray, b: np.ndarray, offsets: dict[int, int]) -> bool:
        return lm.is_match(self.best_match(a, b, offsets), self.params)

    def best_match(self, a: np.ndarray, b: np.ndarray, offsets: dict[int, int]) -> lm.Match | None:
        """``landmarks.match`` of packed clips ``a`` and ``b`` at their most-voted candidate offsets."""
        top = lm.top_offsets(offsets, self.params)
        return lm.match(lm.Fingerprint.from_items(a), lm.Fingerprint.from_items(b), self.params, offsets=top)

    def best_known(self, arrays: list[np.ndarray]) -> dict[int, tuple[str, lm.Match]]:
        """For each packed clip (by position) that matches a known one: the best-voted known key and match."""
        self._load_ids()
        best: dict[int, tuple[str, lm.Match]] = {}
        for (q, k), offsets in self._candidates(arrays).items():
            m = self.best_match(arrays[q], self._raw(k), offsets)
            if lm.is_match(m, self.params) and (q not in best or m.votes > best[q][1].votes):
                best[q] = (self._ids[k], m)
        return best


def update_landmark_ids(manifest: str | os.PathLike, fingerprints: dict[str, str],
                        current: dict[str, str | None], linked=()) -> dict[str, str]:
    """clip_id -> music_id from the manifest's persisted landmark index (new clips only).

    The first time, clips that already carry a ``music_id`` in ``current`` are loaded as they are,
    so a manifest whose ids came from Chromaprint keeps them and new clips join those groups.
    """
    return assign_ids(LandmarkIndex(landmark_index_dir(manifest)), fingerprints, current, linked)
