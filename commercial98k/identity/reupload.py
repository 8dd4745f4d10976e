"""Which videos are re-uploads of one another: perceptual hashes of keyframes, matched in shot order.

Near-duplicate videos: a 64-bit DCT perceptual hash (imagehash) of one keyframe per shot; two
videos are duplicates when keyframes within ``max_hamming`` (8) bits match *in shot order* (a
re-upload keeps its edit) for at least 60 % of the shorter video's keyframes and 40 % of the
longer's. On the demo corpus, where the ads of a category share one template, the unordered
"most keyframes of the shorter video" rule joined 33 pairs of different ads (whole categories
became one group); the ordered rule with both shares joins none, and still joins a re-encoded,
rescaled and trimmed copy of the Big Buck Bunny trailer with the original. Groups get ``dup_group = "d-" + sha1(smallest video_id)[:12]``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from commercial98k.identity.unionfind import UnionFind


def keyframe_times(shots: Sequence[tuple[float, float]], duration_s: float, max_frames: int = 16) -> list[float]:
    """Mid-points of the shots (evenly thinned to ``max_frames``), or evenly spaced times."""
    mids = [(float(s[0]) + float(s[1])) / 2 for s in shots if float(s[1]) > float(s[0])]
    if not mids:
        n = max(1, min(max_frames, int(duration_s)))
        mids = [duration_s * (i + 0.5) / n for i in range(n)]
    if len(mids) > max_frames:
        mids = [mids[int(i * len(mids) / max_frames)] for i in range(max_frames)]
    return mids


def video_phash(path: str | Path, times: Sequence[float], sample_fps: float = 2.0) -> str:
    """Comma-separated 64-bit pHashes (hex) of the frames nearest ``times``."""
    import imagehash
    from PIL import Image

    from commercial98k.media.ffmpeg_io import load_frames

    frames = load_frames(path, sample_fps, (128, 128))
    hashes = []
    for t in times:
        i = min(len(frames) - 1, max(0, int(round(t * sample_fps - 0.5))))
        if frames[i].std() < 4.0:  # blank (black, white) frames match any video
            continue
        hashes.append(str(imagehash.phash(Image.fromarray(frames[i]))))
    return ",".join(dict.fromkeys(hashes))


def _hashes(text: str | None) -> np.ndarray:
    if not text:
        return np.zeros(0, np.uint64)
    return np.array([int(h, 16) for h in text.split(",") if h], np.uint64)


def _in_order_matches(a: str, b: str, max_hamming: int) -> tuple[int, int, int]:
    """(keyframes matched in shot order, keyframes of the shorter, of the longer video).

    A re-upload keeps the order of its shots, so matches are counted as the longest chain of
    keyframe pairs within ``max_hamming`` bits that advances in both videos (an LCS); two ads
    made from one template match keyframes in scrambled order and score low.
    """
    ha, hb = _hashes(a), _hashes(b)
    if len(ha) > len(hb):
        ha, hb = hb, ha
    if len(ha) == 0:
        return 0, 0, len(hb)
    close = np.bitwise_count(ha[:, None] ^ hb[None, :]) <= max_hamming
    chain = np.zeros((len(ha) + 1, len(hb) + 1), np.int32)
    for i in range(len(ha)):
        for j in range(len(hb)):
            chain[i + 1, j + 1] = chain[i, j] + 1 if close[i, j] else max(chain[i, j + 1], chain[i + 1, j])
    return int(chain[-1, -1]), len(ha), len(hb)


def phash_similarity(a: str, b: str, max_hamming: int = 8) -> float:
    """Share of the shorter video's keyframes matched, in shot order, by the other's."""
    matched, shorter, _ = _in_order_matches(a, b, max_hamming)
    return matched / shorter if shorter else 0.0


def is_reupload(a: str, b: str, max_hamming: int = 8, min_share: float = 0.6, min_cover: float = 0.4) -> bool:
    """Near-duplicates: in-order matches cover ``min_share`` of the shorter video's keyframes and
    ``min_cover`` of the longer's (a trimmed re-upload still shares a good part of the original's
    shots; a short ad matching a few frames of a long one by chance does not)."""
    matched, shorter, longer = _in_order_matches(a, b, max_hamming)
    return shorter > 0 and matched >= min_share * shorter and matched >= min_cover * longer


def group_duplicates(phashes: dict[str, str], max_hamming: int = 8, min_share: float = 0.6,
                     min_cover: float = 0.4) -> dict[str, str]:
    """Map video_id -> dup_group; candidates share a 16-bit band of some keyframe hash."""
    keys = sorted(k for k, v in phashes.items() if v)
    uf = UnionFind(keys)
    buckets: dict[tuple[int, int], set[int]] = defaultdict(set)
    for i, k in enumerate(keys):
        for h in _hashes(phashes[k]).tolist():
            for band in range(4):
                buckets[(band, (h >> (16 * band)) & 0xFFFF)].add(i)
    checked: set[tuple[int, int]] = set()
    for members in buckets.values():
        if len(members) < 2:
            continue
        ms = sorted(members)
        for x, i in enumerate(ms):
            for j in ms[x + 1:]:
                if (i, j) in checked:
                    continue
                checked.add((i, j))
                if is_reupload(phashes[keys[i]], phashes[keys[j]], max_hamming, min_share, min_cover):
                    uf.union(keys[i], keys[j])
    return uf.group_ids("d")
