"""Which clips share a music track: Chromaprint fingerprints and their matching.

Music identity: a Chromaprint fingerprint per clip (libchromaprint through pyacoustid's
``chromaprint`` binding on the clip's decoded audio; Chromaprint's own ``fpcalc -raw`` when the
library cannot be loaded). A raw fingerprint is one 32-bit item per ~0.124 s. Two clips carry the
same track when, at some time offset, overlapping by at least ``min_overlap`` items (16, ~2 s),
their best-matching ``MATCH_WINDOW`` consecutive items (24, ~3 s) differ in few bits: bit-error
rate (BER) at most ``max_ber`` = 0.15. The window matters for ads: a voice-over or jingle over
part of one copy raises the BER of the whole overlap (on the demo corpus, whole-overlap matching
found 114 of 193 same-track clip pairs, the 3 s window 185, with no false merge either way).
Measured on the Emotify excerpts: re-encoded, differently cut copies of a track 0.03-0.08;
unrelated audio ~0.45; the closest of all 1,770 pairs of *different* tracks (two loop-based
electronic pieces) 0.22 over the whole overlap and 0.19 over the best 3 s window. Candidate pairs come from an inverted index of item
prefixes (so a large collection is not compared all-against-all); the candidate offsets are the
position differences of the shared prefixes. Matching pairs are joined with union-find, and each
group gets ``music_id = "m-" + sha1(smallest clip_id)[:12]``.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from commercial98k.identity.unionfind import UnionFind
from commercial98k.media.ffmpeg_io import MediaError
from commercial98k.models.registry import ModelInfo

ALGORITHM = 1  # Chromaprint's default (TEST2), as fpcalc and AcoustID use
ITEM_S = 4096 / 3 / 11025  # seconds per fingerprint item (~0.1238)
MATCH_WINDOW = 24  # items (~3 s): the stretch that must match, so a voice-over on part of a copy does not hide the track


# ---------------------------------------------------------------- fingerprints


def _chromaprint():
    try:
        import chromaprint

        return chromaprint
    except Exception:  # ImportError, or OSError when libchromaprint is missing
        return None


def fingerprinter_info() -> ModelInfo:
    """Provenance: ``chromaprint <libchromaprint version> algorithm2``."""
    cp = _chromaprint()
    version = "unknown"
    if cp is not None:
        try:
            import ctypes

            fn = cp._libchromaprint.chromaprint_get_version
            fn.restype = ctypes.c_char_p
            version = fn().decode()
        except Exception:
            pass
    else:
        fpcalc = shutil.which("fpcalc")
        if fpcalc:
            out = subprocess.run([fpcalc, "-version"], capture_output=True, text=True, check=False).stdout
            version = out.split("version", 1)[-1].split()[0] if "version" in out else version
    return ModelInfo("chromaprint", version, f"algorithm{ALGORITHM + 1}")


def fingerprint_audio(audio: np.ndarray, sample_rate: int) -> str:
    """Compressed base64 Chromaprint fingerprint of mono float audio (libchromaprint)."""
    cp = _chromaprint()
    if cp is None:
        raise MediaError("libchromaprint is not available; use fingerprint_file (fpcalc) instead")
    pcm = (np.clip(np.asarray(audio, np.float32), -1, 1) * 32767).astype("<i2")
    fp = cp.Fingerprinter(ALGORITHM)
    fp.start(int(sample_rate), 1)
    fp.feed(pcm.tobytes())
    return fp.finish().decode("ascii")


RAW_PREFIX = "raw:"


def encode_raw(items: Sequence[int] | np.ndarray) -> str:
    """A raw fingerprint as text: ``raw:`` + base64 of little-endian uint32 items (no libchromaprint needed)."""
    return RAW_PREFIX + base64.b64encode(np.asarray(items, np.int64).astype("<u4").tobytes()).decode("ascii")


def fingerprint_file(path: str | Path, max_seconds: int = 120) -> str:
    """Raw fingerprint of a file with ``fpcalc -raw`` (argument list, no shell), as ``encode_raw`` text.

    The fallback when libchromaprint cannot be loaded: raw items decode without the library.
    fpcalc 1.5 exits non-zero on a harmless end-of-file decode message; its output is used
    whenever it holds a fingerprint.
    """
    fpcalc = shutil.which("fpcalc")
    if not fpcalc:
        raise MediaError("fpcalc not found: install Debian's libchromaprint-tools")
    proc = subprocess.run([fpcalc, "-raw", "-json", "-length", str(max_seconds), str(path)],
                          capture_output=True, text=True, check=False, timeout=300)
    try:
        return encode_raw(json.loads(proc.stdout)["fingerprint"])
    except (ValueError, KeyError, TypeError):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise MediaError(f"{path}: fpcalc failed ({last})") from None


def decode(fingerprint: str) -> np.ndarray:
    """Raw uint32 items of a fingerprint: ``encode_raw`` text, or Chromaprint's compressed base64."""
    if fingerprint.startswith(RAW_PREFIX):
        return np.frombuffer(base64.b64decode(fingerprint[len(RAW_PREFIX):]), "<u4").astype(np.uint32)
    cp = _chromaprint()
    if cp is None:
        raise MediaError("libchromaprint is needed to decode compressed fingerprints")
    raw, _ = cp.decode_fingerprint(fingerprint.encode("ascii"))
    return np.asarray(raw, np.int64).astype(np.uint32)


def bit_error_rate(a: np.ndarray, b: np.ndarray, offset: int, window: int | None = None) -> tuple[float, int]:
    """BER of ``a[i + offset]`` vs ``b[i]`` and the overlap length.

    With ``window``, the BER of the best-matching ``window`` consecutive items of the overlap
    (a voice-over or a jingle over part of one copy must not hide the track under it).
    """
    a_part = a[max(0, offset):]
    b_part = b[max(0, -offset):]
    n = min(len(a_part), len(b_part))
    if n <= 0:
        return 1.0, 0
    errors = np.bitwise_count(np.bitwise_xor(a_part[:n], b_part[:n])).astype(np.float64)
    if window is None or n <= window:
        return float(errors.sum()) / (32.0 * n), n
    sums = np.convolve(errors, np.ones(window), mode="valid")
    return float(sums.min()) / (32.0 * window), n


def best_match(a: np.ndarray, b: np.ndarray, min_overlap: int = 16,
               offsets: Iterable[int] | None = None, window: int | None = None) -> tuple[float, int]:
    """Lowest BER over ``offsets`` (default: every offset) with at least ``min_overlap`` items."""
    if offsets is None:
        offsets = range(-(len(b) - min_overlap), len(a) - min_overlap + 1)
    best = (1.0, 0)
    for off in offsets:
        ber, n = bit_error_rate(a, b, off, window)
        if n >= min_overlap and ber < best[0]:
            best = (ber, off)
    return best


def same_track(a: np.ndarray, b: np.ndarray, max_ber: float = 0.15, min_overlap: int = 16,
               window: int | None = MATCH_WINDOW) -> bool:
    """True when two raw fingerprints overlap (at some offset) with a BER below ``max_ber``."""
    overlap = min(min_overlap, len(a), len(b))
    return overlap > 0 and best_match(a, b, overlap, window=window)[0] <= max_ber


def _candidate_pairs(raws: list[np.ndarray], shift: int, limit: int) -> dict[tuple[int, int], Counter]:
    """Clip pairs sharing item prefixes -> Counter of position offsets (first occurrence per clip)."""
    if not raws:
        return {}
    prefix = np.concatenate([r >> np.uint32(shift) for r in raws]).astype(np.int64)
    clip = np.concatenate([np.full(len(r), i, np.int64) for i, r in enumerate(raws)])
    pos = np.concatenate([np.arange(len(r), dtype=np.int64) for r in raws])
    # one entry per (prefix, clip): its first position; then sort by prefix into buckets
    _, first = np.unique(prefix * len(raws) + clip, return_index=True)
    prefix, clip, pos = prefix[first], clip[first], pos[first]
    _, starts, counts = np.unique(prefix, return_index=True, return_counts=True)
    out: dict[tuple[int, int], Counter] = defaultdict(Counter)
    for s, n in zip(starts[(counts >= 2) & (counts <= limit)], counts[(counts >= 2) & (counts <= limit)], strict=True):
        cs, ps = clip[s:s + n].tolist(), pos[s:s + n].tolist()
        for i in range(n):  # clips ascend within a bucket (unique sorted by prefix, then clip)
            for j in range(i + 1, n):
                out[(cs[i], cs[j])][ps[i] - ps[j]] += 1
    return out


def group_music(fingerprints: dict[str, str | np.ndarray], max_ber: float = 0.15, min_overlap: int = 16,
                prefix_shift: int = 12, min_shared: int = 3, stop_share: float = 0.05,
                window: int | None = MATCH_WINDOW, linked: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """Map clip_id -> music_id; clips whose fingerprints match (any offset) share an id.

    Candidates share at least ``min_shared`` item prefixes (``item >> prefix_shift``); prefixes
    found in more than ``stop_share`` of the clips (silence, tones) are ignored. ``linked`` pairs
    (clips cut from one music segment, see ``segment_links``) share an id by construction.
    """
    raw = {k: (decode(v) if isinstance(v, str) else np.asarray(v, np.uint32)) for k, v in fingerprints.items()}
    raw = {k: v for k, v in raw.items() if len(v) and (len(v) == 1 or (v != v[0]).any())}  # not empty, not silent
    keys = sorted(raw)
    uf = UnionFind(keys)
    for a, b in linked:
        if a in raw and b in raw:
            uf.union(a, b)
    pair_offsets = _candidate_pairs([raw[k] for k in keys], prefix_shift, max(50, int(stop_share * len(keys))))
    pairs = [(ab, offs) for ab, offs in pair_offsets.items() if sum(offs.values()) >= min_shared]
    for (ca, cb), offs in tqdm(pairs, desc="music identity", unit="pair", disable=len(pairs) < 5000):
        if uf.find(keys[ca]) == uf.find(keys[cb]):
            continue
        a, b = raw[keys[ca]], raw[keys[cb]]
        cand = {o + d for o, _ in offs.most_common(5) for d in (-1, 0, 1)}
        overlap = min(min_overlap, len(a), len(b))
        if best_match(a, b, overlap, sorted(cand), window)[0] <= max_ber:
            uf.union(keys[ca], keys[cb])
    return uf.group_ids("m")


#: A fingerprint shorter than this (items of ~0.124 s; 16 ~ 2 s) cannot identify a track.
MIN_FINGERPRINT_ITEMS = 16


def fingerprint_problem(fingerprint: str | None) -> str | None:
    """Why a clip's fingerprint cannot give it a music identity (empty, too short), or None."""
    if not fingerprint:
        return "no audio fingerprint"
    try:
        items = decode(fingerprint)
    except Exception as e:  # a damaged fingerprint string
        return f"unreadable audio fingerprint ({type(e).__name__}: {e})"
    n = len(items)
    if n == 0:
        return "empty audio fingerprint: the clip's audio is silent or too quiet for Chromaprint"
    if len(np.unique(items)) == 1:
        return "constant audio fingerprint: the clip's audio is silent (every silent clip would be one track)"
    if n < MIN_FINGERPRINT_ITEMS:
        return (f"audio fingerprint too short ({n} items, ~{n * ITEM_S:.1f} s < "
                f"{MIN_FINGERPRINT_ITEMS * ITEM_S:.0f} s) to identify the track")
    return None


def segment_of(start_s: float, end_s: float, spans: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """The music span a clip window was cut from: the one holding most of ``[start_s, end_s]``."""
    best, overlap = None, 0.0
    for a, b in spans:
        o = min(end_s, b) - max(start_s, a)
        if o > overlap:
            best, overlap = (float(a), float(b)), o
    return best


def segment_links(clips: Iterable[tuple[str, str, float | None, float | None, float | None, float | None]],
                  tol: float = 0.05) -> list[tuple[str, str]]:
    """Pairs of clips cut from one music segment: same video and segment, window inside the segment.

    ``clips``: (clip_id, video_id, clip_start_s, clip_end_s, music_start_s, music_end_s).
    """
    first: dict[tuple[str, float, float], str] = {}
    links = []
    for cid, vid, cs, ce, ms, me in clips:
        if None in (cs, ce, ms, me) or cs < ms - tol or ce > me + tol:
            continue
        key = (vid, round(ms, 3), round(me, 3))
        if key in first:
            links.append((first[key], cid))
        else:
            first[key] = cid
    return links
