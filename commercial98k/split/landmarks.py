"""Landmark fingerprints: pairs of spectral peaks matched at one consistent time offset.

The method of Wang (2003), behind Shazam (audfprint and Panako are open implementations). A
clip's log spectrogram (16 kHz, 64 ms window, 16 ms hop) gives a constellation of local peaks,
picked per frequency band so that a voice dominating the low bands cannot take every peak; each
anchor peak is paired with the next few peaks in a target zone, and the pair ``(f1, f2 - f1,
t2 - t1)`` is the hash. Two clips play the same music when many of their shared hashes agree on
one time offset. Additive sound (a voice-over) adds peaks of its own but leaves most of the
music's peaks where they were, which is why this survives speech far better than Chromaprint's
band-energy bits (measured in ``benchmarks/voiceover.py``).

A voice shared by two ads (a brand's voice-over, a tagline) matches as readily as music. Each
peak carries a *voiced* flag (YAMNet's per-patch ``P(speech)``, computed by split anyway), and
``match`` can weight down votes where both clips are voiced (``MatchParams.voiced_weight``).
Measured on Emotify music under real speech (``benchmarks/voiceover.py``), that does not yet
separate a shared voice from shared music: YAMNet's 0.96-s speech patches miss much of a voice
under music at 0 dB, and even an exact voice mask leaves too few unvoiced votes for music under
two different voices. Keeping only steady peaks (sustained notes; speech harmonics glide) cut a
shared voice's votes ~20x but also most of the music's under a voice. So by default every vote
counts; a match must spread over the clips' overlap (``min_seconds``, ``min_cover``), which
keeps a shared 2-s jingle or a reused spoken word from joining two ads, but not a whole shared
voice-over.

Stored form (``landmarks`` column): ``"lm1:"`` + base64(zlib(uint32 little-endian peaks)), each
peak ``t << 12 | f << 3 | voiced << 1`` (``t``: 16 ms frame, ``f``: FFT bin 0-511; bits 0 and 2 reserved).
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass

import numpy as np

from ..models.registry import ModelInfo

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 256
FRAME_S = HOP / SAMPLE_RATE  # 16 ms
PREFIX = "lm1:"
VERSION = "1"
#: Frequency bands (FFT bins of 15.6 Hz) with their own peak quota: a voice fills the low ones.
BANDS = ((6, 20), (20, 45), (45, 96), (96, 192), (192, 320), (320, 480))
PEAKS_PER_BAND_S = 8.0  # peaks per band per second (48 per second in all)
FAN_OUT = 8
MAX_DT = 48  # frames (0.77 s): the target zone's length
MIN_DT = 2
MAX_DF = 24  # bins (375 Hz): pairs stay inside a band, so a voice in one band spoils few hashes elsewhere


def landmark_info() -> ModelInfo:
    """Provenance of the landmark fingerprints (parameters are part of the version)."""
    params = f"sr{SAMPLE_RATE}-fft{N_FFT}-hop{HOP}-b{len(BANDS)}x{PEAKS_PER_BAND_S:g}-fan{FAN_OUT}"
    return ModelInfo("landmarks", VERSION, params)


@dataclass(frozen=True)
class Peaks:
    """A clip's constellation: frame index, FFT bin and voiced flag (sorted by time)."""

    t: np.ndarray  # int64 [N]
    f: np.ndarray  # int64 [N]
    voiced: np.ndarray  # bool [N]

    def __len__(self) -> int:
        return len(self.t)

    @property
    def frames(self) -> int:
        return int(self.t.max()) + 1 if len(self.t) else 0


def _spectrogram(audio: np.ndarray) -> np.ndarray:
    """[frames, 513] log magnitude (natural log), Hann window, no centring."""
    audio = np.asarray(audio, np.float32)
    if len(audio) < N_FFT:
        return np.zeros((0, N_FFT // 2 + 1), np.float32)
    n = 1 + (len(audio) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(audio, N_FFT)[::HOP][:n]
    spec = np.abs(np.fft.rfft(frames * np.hanning(N_FFT).astype(np.float32), axis=1))
    return np.log(spec + 1e-5).astype(np.float32)


def _local_max(s: np.ndarray, df: int, dt: int) -> np.ndarray:
    from scipy.ndimage import maximum_filter

    return s >= maximum_filter(s, size=(2 * dt + 1, 2 * df + 1), mode="nearest")


def extract_peaks(audio: np.ndarray, voiced_at: np.ndarray | None = None) -> Peaks:
    """The constellation of 16 kHz mono ``audio``; ``voiced_at`` [frames] marks voiced frames (or None)."""
    s = _spectrogram(audio)
    empty = np.zeros(0, np.int64)
    if len(s) == 0 or float(s.max() - s.min()) < 1e-3:  # too short, or digital silence
        return Peaks(empty, empty, np.zeros(0, bool))
    s = s - s.mean(axis=0, keepdims=True)  # a fixed colouring (EQ, a band limit) moves no peak
    peaks = _local_max(s, 6, 6) & (s > np.median(s) + 1.0)
    ts, fs = [], []
    block = max(1, int(round(1.0 / FRAME_S)))
    for lo, hi in BANDS:
        quota = max(1, int(round(PEAKS_PER_BAND_S * block * FRAME_S)))
        band = peaks[:, lo:hi]
        t, f = np.nonzero(band)
        if not len(t):
            continue
        v = s[t, f + lo]
        blocks = t // block
        order = np.lexsort((-v, blocks))  # per one-second block, strongest first
        t, f, blocks = t[order], f[order], blocks[order]
        first = np.searchsorted(blocks, blocks, "left")
        keep = (np.arange(len(t)) - first) < quota
        ts.append(t[keep])
        fs.append(f[keep] + lo)
    if not ts:
        return Peaks(empty, empty, np.zeros(0, bool))
    t, f = np.concatenate(ts).astype(np.int64), np.concatenate(fs).astype(np.int64)
    order = np.lexsort((f, t))
    t, f = t[order], f[order]
    voiced = np.zeros(len(t), bool)
    if voiced_at is not None and len(voiced_at):
        voiced = np.asarray(voiced_at, bool)[np.minimum(t, len(voiced_at) - 1)]
    return Peaks(t, f, voiced)


def voiced_frames(speech_spans: list[tuple[float, float]], start_s: float, n_samples: int) -> np.ndarray:
    """[frames] True where a clip starting at ``start_s`` (video time) is inside a speech span."""
    n = max(0, 1 + (n_samples - N_FFT) // HOP)
    centres = start_s + (np.arange(n) * HOP + N_FFT / 2) / SAMPLE_RATE
    out = np.zeros(n, bool)
    for a, b in speech_spans:
        out |= (centres >= a) & (centres < b)
    return out


# ---------------------------------------------------------------- stored form


def encode(p: Peaks) -> str:
    """``lm1:`` text of a constellation (see the module docstring)."""
    packed = (p.t.astype(np.uint64) << 12 | p.f.astype(np.uint64) << 3 | p.voiced.astype(np.uint64) << 1).astype("<u4")
    return PREFIX + base64.b64encode(zlib.compress(packed.tobytes(), 6)).decode("ascii")


def unpack(packed: np.ndarray) -> Peaks:
    """Peaks from packed uint32 items (the index keeps them packed)."""
    x = np.asarray(packed, np.uint32).astype(np.int64)
    return Peaks(x >> 12, (x >> 3) & 511, (x >> 1 & 1).astype(bool))


def packed_items(text: str) -> np.ndarray:
    """The packed uint32 peaks of ``lm1:`` text; raises ValueError for other text."""
    if not text.startswith(PREFIX):
        raise ValueError("not a landmark fingerprint (no 'lm1:' prefix)")
    return np.frombuffer(zlib.decompress(base64.b64decode(text[len(PREFIX):])), "<u4").astype(np.uint32)


def decode(text: str) -> Peaks:
    """A constellation from its ``lm1:`` text."""
    return unpack(packed_items(text))


# ---------------------------------------------------------------- hashes and matching


@dataclass(frozen=True)
class Hashes:
    """Landmark hashes of one clip: hash value, anchor frame, and whether the pair is voiced."""

    h: np.ndarray  # int64 [M]
    t: np.ndarray  # int64 [M]
    voiced: np.ndarray  # bool [M]: anchor or target voiced

    def __len__(self) -> int:
        return len(self.h)


def hashes(p: Peaks) -> Hashes:
    """Pair each anchor with its next ``FAN_OUT`` peaks within ``MAX_DT`` frames and ``MAX_DF`` bins."""
    n = len(p)
    hs, ts, vs = [], [], []
    if n >= 2:
        idx = np.arange(n)
        for k in range(1, 4 * FAN_OUT + 1):  # candidates in time order; the first FAN_OUT that fit are kept
            j = idx + k
            ok = j < n
            a, b = idx[ok], j[ok]
            dt = p.t[b] - p.t[a]
            df = p.f[b] - p.f[a]
            fit = (dt >= MIN_DT) & (dt <= MAX_DT) & (np.abs(df) <= MAX_DF)
            a, b, dt, df = a[fit], b[fit], dt[fit], df[fit]
            hs.append(p.f[a] << 14 | (df + 128) << 6 | dt)
            ts.append(p.t[a])
            vs.append(p.voiced[a] | p.voiced[b])
        h, t, v = np.concatenate(hs), np.concatenate(ts), np.concatenate(vs)
        # at most FAN_OUT per anchor: rank the fitting pairs of each anchor by time of the target
        order = np.lexsort((h & 63, h >> 14, t))  # by anchor (time, bin), then the target's time
        h, t, v = h[order], t[order], v[order]
        key = t << 9 | h >> 14
        keep = (np.arange(len(key)) - np.searchsorted(key, key, "left")) < FAN_OUT
        return Hashes(h[keep], t[keep], v[keep])
    empty = np.zeros(0, np.int64)
    return Hashes(empty, empty, np.zeros(0, bool))


@dataclass(frozen=True)
class MatchParams:
    """When two clips play the same music (defaults measured in ``benchmarks/voiceover.py``)."""

    min_votes: float = 6.0  # hashes agreeing on the best offset
    min_seconds: int = 3  # distinct seconds of the overlap holding a vote (a shared jingle or word covers 1-2)
    min_cover: float = 0.4  # ... and at least this share of the overlap's seconds
    min_overlap_s: float = 2.0
    voiced_weight: float = 1.0  # a vote where both clips are voiced (0 would discount a shared voice)
    tolerance: int = 1  # frames either side of the offset


@dataclass(frozen=True)
class Match:
    """The best offset of clip b inside clip a (``t_a = t_b + offset``) and its evidence."""

    offset: int
    votes: float  # weighted music-evidence votes
    raw_votes: int  # every hash agreeing on the offset
    seconds: int  # distinct seconds of the overlap holding a weighted vote
    overlap_s: float

    @property
    def cover(self) -> float:
        """Share of the overlap's seconds holding a weighted vote."""
        return self.seconds / max(1, int(np.ceil(self.overlap_s)))

    @property
    def offset_s(self) -> float:
        return self.offset * FRAME_S


def offset_votes(a: Hashes, b: Hashes) -> dict[int, int]:
    """Offset -> number of shared hashes agreeing on it (the candidate offsets of a pair)."""
    common, ia, ib = _pairs(a, b)
    if not len(common):
        return {}
    off, counts = np.unique(common, return_counts=True)
    return dict(zip(off.tolist(), counts.tolist(), strict=True))


def _pairs(a: Hashes, b: Hashes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (i in a, j in b) with equal hashes: offsets ``a.t[i] - b.t[j]``, and the indices."""
    if not len(a) or not len(b):
        z = np.zeros(0, np.int64)
        return z, z, z
    ob = np.argsort(b.h, kind="stable")
    hb = b.h[ob]
    lo = np.searchsorted(hb, a.h, "left")
    hi = np.searchsorted(hb, a.h, "right")
    n = hi - lo
    ia = np.repeat(np.arange(len(a)), n)
    ib = ob[np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))]
    return a.t[ia] - b.t[ib], ia, ib


def match(a: Hashes, b: Hashes, frames_a: int, frames_b: int, params: MatchParams = MatchParams(),
          offsets: list[int] | None = None) -> Match | None:
    """The best-supported offset of ``b`` in ``a`` with its music evidence, or None without shared hashes.

    Votes are weighted: 1 where at least one clip is not voiced at the hash, ``voiced_weight``
    where both are.
    """
    off, ia, ib = _pairs(a, b)
    if not len(off):
        return None
    w = np.where(a.voiced[ia] & b.voiced[ib], params.voiced_weight, 1.0)
    if offsets is None:
        cand, counts = np.unique(off, return_counts=True)
        offsets = cand[np.argsort(-counts)[:5]].tolist()
    best: Match | None = None
    tol = params.tolerance
    for o in offsets:
        sel = np.abs(off - o) <= tol
        votes = float(w[sel].sum())
        if best is not None and votes < best.votes:
            continue
        lo = max(0, o)  # overlap in a's frames
        hi = min(frames_a, frames_b + o)
        overlap_s = max(0.0, (hi - lo) * FRAME_S)
        seconds = max(1, int(np.ceil(overlap_s)))
        t_voted = a.t[ia[sel & (w > 0)]]
        covered = len(np.unique(((t_voted - lo) * FRAME_S).astype(np.int64).clip(0, seconds - 1)))
        m = Match(int(o), votes, int(sel.sum()), covered, float(overlap_s))
        if best is None or (m.votes, m.raw_votes) > (best.votes, best.raw_votes):
            best = m
    return best


def is_match(m: Match | None, params: MatchParams = MatchParams()) -> bool:
    """True when a ``match`` result is enough evidence of the same music."""
    return (m is not None and m.overlap_s >= params.min_overlap_s and m.votes >= params.min_votes
            and m.seconds >= params.min_seconds and m.cover >= params.min_cover)
