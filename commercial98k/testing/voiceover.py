"""Voice-over mixes from real media: real speech over real music at a stated speech-to-music ratio.

Used by ``benchmarks/voiceover.py`` and the tests. Everything comes from ``../shared/media``:
music from ``emotify/audio`` (60-s excerpts), speech from ``speech/`` (CMU ARCTIC sentences,
Free Spoken Digit Dataset strings). A voice track strings recordings together with short
pauses until it covers the requested share of the clip; ``mix`` scales it so that, over the
samples where the voice is, its RMS stands ``snr_db`` above the music's (ads duck the music
6-12 dB under the voice, so +6 and +12 dB are the usual range). ``rerecord`` imitates an ad
played in a room and recorded again: reverberation from a synthetic exponentially decaying
impulse response, a telephone-like band limit, and noise.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from commercial98k.media.ffmpeg_io import load_audio

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class SpeechBank:
    """Real recorded utterances at 16 kHz, by speaker."""

    sentences: dict[str, list[np.ndarray]]  # CMU ARCTIC: speaker -> sentences
    digits: dict[str, list[np.ndarray]]  # FSDD: speaker -> digit recordings

    @property
    def digit_speakers(self) -> list[str]:
        return sorted(self.digits)


@functools.lru_cache(maxsize=2)
def speech_bank(speech_dir: str | Path) -> SpeechBank:
    """Load ``speech/cmu_arctic`` and ``speech/fsdd`` (resampled to 16 kHz, peak-normalised)."""
    root = Path(speech_dir)
    sentences: dict[str, list[np.ndarray]] = {}
    for p in sorted((root / "cmu_arctic").glob("*.wav")):
        speaker = p.stem.split("_")[3]
        sentences.setdefault(speaker, []).append(_normalised(load_audio(p, SAMPLE_RATE)))
    digits: dict[str, list[np.ndarray]] = {}
    for p in sorted((root / "fsdd").glob("*.wav")):
        digits.setdefault(p.stem.split("_")[1], []).append(_normalised(load_audio(p, SAMPLE_RATE)))
    if not sentences or not digits:
        raise FileNotFoundError(f"{root}: expected cmu_arctic/*.wav and fsdd/*.wav (see shared/media/speech/README.md)")
    return SpeechBank(sentences, digits)


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    x = x - x.mean()
    peak = float(np.abs(x).max()) if len(x) else 0.0
    return x / peak if peak > 0 else x


def load_music(path: str | Path, start_s: float, seconds: float) -> np.ndarray:
    """``seconds`` of a music file from ``start_s``, mono 16 kHz."""
    return np.asarray(load_audio(path, SAMPLE_RATE, start_s=start_s, duration_s=seconds), np.float32)


def voice_track(utterances: list[np.ndarray], n_samples: int, coverage: float, rng: np.random.Generator,
                pause_s: tuple[float, float] = (0.15, 0.5), start: int | None = None) -> np.ndarray:
    """A voice-over of ``n_samples``: utterances in the given order (cycled), separated by pauses,
    filling about ``coverage`` of the clip from ``start`` (random when None)."""
    want = int(coverage * n_samples)
    parts: list[np.ndarray] = []
    length = i = 0
    while length < want:
        u = utterances[i % len(utterances)]
        gap = np.zeros(int(rng.uniform(*pause_s) * SAMPLE_RATE), np.float32) if parts else np.zeros(0, np.float32)
        parts += [gap, u]
        length += len(gap) + len(u)
        i += 1
    voice = np.concatenate(parts)[:want] if parts else np.zeros(0, np.float32)
    out = np.zeros(n_samples, np.float32)
    if start is None:
        start = int(rng.integers(0, max(1, n_samples - len(voice) + 1)))
    start = min(start, n_samples - len(voice))
    out[start:start + len(voice)] = voice
    return out


def digit_voice(bank: SpeechBank, n_samples: int, coverage: float, rng: np.random.Generator,
                speaker: str | None = None) -> np.ndarray:
    """A different voice-over each call: a random string of one speaker's spoken digits."""
    speaker = speaker or str(rng.choice(bank.digit_speakers))
    pool = bank.digits[speaker]
    order = rng.permutation(len(pool))
    return voice_track([pool[j] for j in order], n_samples, coverage, rng, pause_s=(0.05, 0.3))


def sentence_voice(bank: SpeechBank, n_samples: int, coverage: float, start: int = 0) -> np.ndarray:
    """The same voice-over every call: every CMU ARCTIC sentence in a fixed order from ``start``."""
    utterances = [u for speaker in sorted(bank.sentences) for u in bank.sentences[speaker]]
    return voice_track(utterances, n_samples, coverage, np.random.default_rng(0), pause_s=(0.3, 0.3), start=start)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def mix(music: np.ndarray, voice: np.ndarray, snr_db: float) -> np.ndarray:
    """``music`` + ``voice`` scaled to ``snr_db`` above the music where the voice is; peak-limited to 0.99."""
    n = min(len(music), len(voice))
    music, voice = np.asarray(music[:n], np.float32), np.asarray(voice[:n], np.float32)
    where = np.abs(voice) > 1e-4
    m, v = _rms(music[where]), _rms(voice[where])
    out = music.copy()
    if v > 0 and m > 0:
        out += voice * (m / v) * 10 ** (snr_db / 20)
    peak = float(np.abs(out).max()) if n else 0.0
    return (out * (0.99 / peak)).astype(np.float32) if peak > 0.99 else out


def rerecord(audio: np.ndarray, rng: np.random.Generator, rt60_s: float = 0.4, band_hz: tuple[float, float] = (200, 5000),
             snr_db: float = 20.0) -> np.ndarray:
    """A room re-recording: reverberation (RT60 ``rt60_s``), band limit, and white noise at ``snr_db``."""
    from scipy.signal import butter, fftconvolve, sosfilt

    n_ir = int(rt60_s * SAMPLE_RATE)
    t = np.arange(n_ir) / SAMPLE_RATE
    ir = rng.standard_normal(n_ir) * np.exp(-6.9 * t / rt60_s)  # -60 dB at rt60
    ir[0] = 1.0
    wet = fftconvolve(np.asarray(audio, np.float64), ir / np.sqrt(np.sum(ir ** 2)))[:len(audio)]
    sos = butter(4, band_hz, btype="bandpass", fs=SAMPLE_RATE, output="sos")
    wet = sosfilt(sos, wet)
    wet += rng.standard_normal(len(wet)) * _rms(wet) * 10 ** (-snr_db / 20)
    peak = float(np.abs(wet).max()) or 1.0
    return (wet * (0.9 / peak)).astype(np.float32)


def jingle(music: np.ndarray, n_samples: int, at: int, level: float = 1.0) -> np.ndarray:
    """A sound logo: ``music`` (a short excerpt) placed at sample ``at`` of an otherwise silent track."""
    out = np.zeros(n_samples, np.float32)
    part = np.asarray(music[:max(0, n_samples - at)], np.float32) * level
    out[at:at + len(part)] = part
    return out


def pink_noise(n_samples: int, rng: np.random.Generator, level_db: float = -20.0) -> np.ndarray:
    """Pink (1/f) noise at ``level_db`` dBFS RMS: a noise-only negative."""
    spec = np.fft.rfft(rng.standard_normal(n_samples))
    f = np.arange(len(spec))
    spec[1:] /= np.sqrt(f[1:])
    x = np.fft.irfft(spec, n_samples)
    return (x / (_rms(x) or 1.0) * 10 ** (level_db / 20)).astype(np.float32)
