"""Landmark fingerprints: pairs of spectral peaks matched at one consistent time offset.

The method of Wang (2003), behind Shazam (audfprint and Panako are open implementations). A
clip's log spectrogram (16 kHz, 64 ms window, 16 ms hop) gives a constellation of local peaks,
picked per frequency band so that a voice dominating the low bands cannot take every peak; each
anchor peak is paired with the next few peaks in a target zone, and the pair ``(f1, f2 - f1,
t2 - t1)`` is the hash. Two clips play the same music when many of their shared hashes agree on
one time offset. Additive sound (a voice-over) adds peaks of its own but leaves most of the
music's peaks where they were, which is why this survives speech far better than Chromaprint's
band-energy bits (measured in ``benchmarks/voiceover.py``).

A voice shared by two ads (a brand's voice-over, a tagline) matches as readily as music: both
are the same recording. Every clip therefore carries where someone speaks in it (one flag per
frame, from Silero VAD in split), and where the two clips' voiced frames line up at the matched
offset (correlation >= ``aligned_voice``: one voice-over in both, at the same place), the match
must also hold in seconds where at most one of them speaks. A shared voice over different music
fails that (where neither speaks, the music differs); one track under two different voices, or
under one voice placed elsewhere, never triggers it. A match must also spread over the clips'
overlap (``min_seconds``, ``min_cover``), so a shared 2-s jingle or a reused spoken word does not
join two ads. Measured in ``benchmarks/voiceover.py``: the voice rule holds where the voice stands
above the music (+6, +12 dB); at 0 dB the music under the voice changes the VAD's frame decisions
enough that they no longer correlate between the ads, and such pairs are still joined, as is a
voice-over that covers both clips whole (nothing is left to tell it from the music).

Stored form (``landmarks`` column): ``"lm1:"`` + base64(zlib(uint32 little-endian items)): the
peak count and the clip's length in frames, each peak as ``t << 12 | f << 3`` (``t``: 16 ms frame,
``f``: FFT bin 0-511), then one voiced bit per frame.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import dataclass

import numpy as np

from commercial98k.models.registry import ModelInfo

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
    """Provenance of the landmark fingerprints: a hash of every parameter is its checksum field."""
    params = f"sr{SAMPLE_RATE}-fft{N_FFT}-hop{HOP}-bands{BANDS}x{PEAKS_PER_BAND_S:g}-fan{FAN_OUT}-dt{MIN_DT}-{MAX_DT}-df{MAX_DF}"
    return ModelInfo("landmarks", VERSION, hashlib.sha256(params.encode("ascii")).hexdigest())


@dataclass(frozen=True)
class Peaks:
    """A clip's constellation (frame index and FFT bin, sorted by time), its length in frames, and
    where in it someone speaks (one flag per frame)."""

    t: np.ndarray  # int64 [N]
    f: np.ndarray  # int64 [N]
    voiced_at: np.ndarray  # bool [frames]

    def __len__(self) -> int:
        return len(self.t)

    @property
    def frames(self) -> int:
        return len(self.voiced_at)

    @property
    def voiced(self) -> np.ndarray:
        """bool [N]: each peak's frame is voiced."""
        if not len(self.voiced_at):
            return np.zeros(len(self.t), bool)
        return self.voiced_at[np.minimum(self.t, len(self.voiced_at) - 1)]


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
    voiced = np.zeros(len(s), bool)
    if voiced_at is not None:
        n = min(len(s), len(voiced_at))
        voiced[:n] = np.asarray(voiced_at, bool)[:n]
    if len(s) == 0 or float(s.max() - s.min()) < 1e-3:  # too short, or digital silence
        return Peaks(empty, empty, voiced)
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
        return Peaks(empty, empty, voiced)
    t, f = np.concatenate(ts).astype(np.int64), np.concatenate(fs).astype(np.int64)
    order = np.lexsort((f, t))
    return Peaks(t[order], f[order], voiced)


def voiced_frames(speech_probs: np.ndarray | None, probs_frame_s: float, start_s: float, n_samples: int,
                  threshold: float = 0.5) -> np.ndarray:
    """[frames] True where a clip of ``n_samples`` starting at ``start_s`` (video time) is voiced:
    a VAD's frame probabilities (``split.vad``, ``probs_frame_s`` apart, from time 0) at ``threshold``.

    The frame decisions themselves, not merged spans: their fine timing (words, breaths) is what
    tells one voice-over aligned with itself from two different voices that both fill a clip.
    """
    n = max(0, 1 + (n_samples - N_FFT) // HOP)
    if speech_probs is None or not len(speech_probs):
        return np.zeros(n, bool)
    probs = np.asarray(speech_probs)
    centres = start_s + (np.arange(n) * HOP + N_FFT / 2) / SAMPLE_RATE
    return probs[np.minimum((centres / probs_frame_s).astype(np.int64), len(probs) - 1)] >= threshold


def extract_voiced(audio: np.ndarray, vad) -> Peaks:
    """The constellation of a whole clip with its voiced frames from ``vad`` (``split.vad.SileroVad``)."""
    return extract_peaks(audio, voiced_frames(vad.frame_probs(audio), vad.frame_s, 0.0, len(audio)))


# ---------------------------------------------------------------- stored form


def packed(p: Peaks) -> np.ndarray:
    """uint32 items: ``[N, frames]``, the N peaks ``t << 12 | f << 3``, then the voiced flags as bits."""
    bits = np.packbits(p.voiced_at.astype(np.uint8), bitorder="little")
    bits = np.pad(bits, (0, -len(bits) % 4)).view("<u4")
    peaks = (p.t.astype(np.uint64) << 12 | p.f.astype(np.uint64) << 3).astype(np.uint32)
    return np.concatenate([np.array([len(p), p.frames], np.uint32), peaks, bits.astype(np.uint32)])


def unpack(items: np.ndarray) -> Peaks:
    """Peaks from ``packed`` items (the index keeps them packed)."""
    x = np.asarray(items, np.uint32)
    if len(x) < 2 or len(x) < 2 + int(x[0]):
        raise ValueError(f"damaged landmark items ({len(x)} items)")
    n, frames = int(x[0]), int(x[1])
    peaks = x[2:2 + n].astype(np.int64)
    bits = np.unpackbits(np.ascontiguousarray(x[2 + n:]).astype("<u4").view(np.uint8), bitorder="little")
    voiced = np.zeros(frames, bool)
    voiced[:min(frames, len(bits))] = bits[:frames].astype(bool)
    return Peaks(peaks >> 12, (peaks >> 3) & 511, voiced)


def encode(p: Peaks) -> str:
    """``lm1:`` text of a constellation (see the module docstring)."""
    return PREFIX + base64.b64encode(zlib.compress(packed(p).astype("<u4").tobytes(), 6)).decode("ascii")


def packed_items(text: str) -> np.ndarray:
    """The packed uint32 items of ``lm1:`` text; raises ValueError for other text."""
    if not text.startswith(PREFIX):
        raise ValueError("not a landmark fingerprint (no 'lm1:' prefix)")
    return np.frombuffer(zlib.decompress(base64.b64decode(text[len(PREFIX):])), "<u4").astype(np.uint32)


def decode(text: str) -> Peaks:
    """A constellation from its ``lm1:`` text."""
    return unpack(packed_items(text))


def peak_count(items: np.ndarray) -> int:
    """How many peaks packed items hold."""
    return int(items[0]) if len(items) else 0


# ---------------------------------------------------------------- hashes and matching


@dataclass(frozen=True)
class Hashes:
    """Landmark hashes of one clip: hash value and anchor frame."""

    h: np.ndarray  # int64 [M]
    t: np.ndarray  # int64 [M]

    def __len__(self) -> int:
        return len(self.h)


def hashes(p: Peaks) -> Hashes:
    """Pair each anchor with its next ``FAN_OUT`` peaks within ``MAX_DT`` frames and ``MAX_DF`` bins."""
    n = len(p)
    if n < 2:
        empty = np.zeros(0, np.int64)
        return Hashes(empty, empty)
    hs, ts = [], []
    idx = np.arange(n)
    for k in range(1, 4 * FAN_OUT + 1):  # candidates in time order; the first FAN_OUT that fit are kept
        j = idx + k
        ok = j < n
        a, b = idx[ok], j[ok]
        dt = p.t[b] - p.t[a]
        df = p.f[b] - p.f[a]
        fit = (dt >= MIN_DT) & (dt <= MAX_DT) & (np.abs(df) <= MAX_DF)
        a, dt, df = a[fit], dt[fit], df[fit]
        hs.append(p.f[a] << 14 | (df + 128) << 6 | dt)
        ts.append(p.t[a])
    h, t = np.concatenate(hs), np.concatenate(ts)
    order = np.lexsort((h & 63, h >> 14, t))  # by anchor (time, bin), then the target's time
    h, t = h[order], t[order]
    key = t << 9 | h >> 14
    keep = (np.arange(len(key)) - np.searchsorted(key, key, "left")) < FAN_OUT  # at most FAN_OUT per anchor
    return Hashes(h[keep], t[keep])


@dataclass(frozen=True)
class Fingerprint:
    """A clip's peaks (with its voiced frames) and their hashes."""

    peaks: Peaks
    hashes: Hashes

    @classmethod
    def of(cls, peaks: Peaks) -> Fingerprint:
        return cls(peaks, hashes(peaks))

    @classmethod
    def from_items(cls, items: np.ndarray) -> Fingerprint:
        return cls.of(unpack(items))


@dataclass(frozen=True)
class MatchParams:
    """When two clips play the same music (defaults measured in ``benchmarks/voiceover.py``)."""

    min_votes: float = 6.0  # hashes agreeing on the best offset
    min_seconds: int = 3  # distinct seconds of the overlap holding a vote (a shared jingle or word covers 1-2)
    min_cover: float = 0.4  # ... and at least this share of the overlap's seconds
    min_overlap_s: float = 2.0
    tolerance: int = 1  # frames either side of the offset
    aligned_voice: float = 0.3  # correlation of the two clips' voiced frames at the offset: one voice aligned
    min_free_seconds: int = 3  # ... then votes must also hold in this many seconds where not both speak


@dataclass(frozen=True)
class Match:
    """An offset of clip b inside clip a (``t_a = t_b + offset``) and its evidence."""

    offset: int
    votes: int  # hashes agreeing on the offset
    seconds: int  # distinct seconds of the overlap holding a vote
    overlap_s: float
    voice_aligned: bool = False  # the clips' voiced frames line up at this offset (a shared voice-over)
    free_seconds: int = 0  # distinct seconds holding a vote where at most one clip is voiced

    @property
    def cover(self) -> float:
        """Share of the overlap's seconds holding a vote."""
        return self.seconds / max(1, int(np.ceil(self.overlap_s)))

    @property
    def offset_s(self) -> float:
        return self.offset * FRAME_S


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


def _voice_correlation(va: np.ndarray, vb: np.ndarray) -> float:
    """Pearson correlation of two voiced-frame masks (0 where either is constant)."""
    if len(va) < 2 or va.all() or not va.any() or vb.all() or not vb.any():
        return 0.0
    return float(np.corrcoef(va.astype(np.float64), vb.astype(np.float64))[0, 1])


def _seconds(frames: np.ndarray, lo: int, n_seconds: int) -> int:
    return len(np.unique(((frames - lo) * FRAME_S).astype(np.int64).clip(0, n_seconds - 1))) if len(frames) else 0


def top_offsets(votes: dict[int, int], params: MatchParams = MatchParams(), k: int = 6) -> list[int]:
    """The ``k`` most-voted offsets at least two tolerances apart.

    A voice-over both clips share piles hundreds of votes on one offset and its neighbours; the
    music's own offset, with a few dozen, must still be among the candidates checked.
    """
    chosen: list[int] = []
    for o in sorted(votes, key=lambda o: (-votes[o], o)):
        if all(abs(o - c) > 2 * params.tolerance for c in chosen):
            chosen.append(o)
            if len(chosen) == k:
                break
    return chosen


def match(a: Fingerprint, b: Fingerprint, params: MatchParams = MatchParams(),
          offsets: list[int] | None = None) -> Match | None:
    """The best offset of ``b`` in ``a`` that ``is_match`` accepts, else the most-voted one; None
    without shared hashes. ``offsets``: the candidates (default: ``top_offsets`` of the votes)."""
    off, ia, ib = _pairs(a.hashes, b.hashes)
    if not len(off):
        return None
    if offsets is None:
        cand, counts = np.unique(off, return_counts=True)
        offsets = top_offsets(dict(zip(cand.tolist(), counts.tolist(), strict=True)), params)
    found = [_at_offset(a, b, off, ia, o, params) for o in offsets]
    accepted = [m for m in found if is_match(m, params)]
    return max(accepted or found, key=lambda m: (m.votes, m.seconds))


def _at_offset(a: Fingerprint, b: Fingerprint, off: np.ndarray, ia: np.ndarray, o: int, params: MatchParams) -> Match:
    sel = np.abs(off - o) <= params.tolerance
    fa, fb = a.peaks.frames, b.peaks.frames
    lo, hi = max(0, o), max(max(0, o), min(fa, fb + o))  # the overlap, in a's frames
    n_seconds = max(1, int(np.ceil((hi - lo) * FRAME_S)))
    t_voted = a.hashes.t[ia[sel]]
    t_voted = t_voted[(t_voted >= lo) & (t_voted < hi)]
    va, vb = a.peaks.voiced_at[lo:hi], b.peaks.voiced_at[lo - o:hi - o]
    aligned = _voice_correlation(va, vb) >= params.aligned_voice
    free = 0
    if aligned:  # a vote counts as music where at most one clip speaks
        both = va & vb
        free = _seconds(t_voted[~both[t_voted - lo]], lo, n_seconds)
    return Match(int(o), int(sel.sum()), _seconds(t_voted, lo, n_seconds), float((hi - lo) * FRAME_S), aligned, free)


def is_match(m: Match | None, params: MatchParams = MatchParams()) -> bool:
    """True when a ``match`` result is enough evidence of the same music.

    Where the two clips' voiced frames line up (one voice-over in both), the shared hashes may be
    the voice's: the match must then also hold where at most one clip speaks.
    """
    return (m is not None and m.overlap_s >= params.min_overlap_s and m.votes >= params.min_votes
            and m.seconds >= params.min_seconds and m.cover >= params.min_cover
            and (not m.voice_aligned or m.free_seconds >= params.min_free_seconds))
