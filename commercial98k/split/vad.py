"""Where someone speaks: Silero VAD (MIT; the ONNX model ships in the ``silero-vad`` wheel).

YAMNet's speech classes, which split computes anyway, hear a voice poorly under music: on
Emotify tracks under real speech 6 dB above the music, its ``P(speech)`` stayed near 0 in most
voiced patches. Silero VAD, trained with noise and music, follows the voice at its 32-ms frame
rate (``benchmarks/voiceover.py``), for about 3 ms of CPU per second of audio. The wheel's
``silero_vad_16k_sequence.onnx`` runs a block of frames per call (each frame is 512 samples with
the previous frame's last 64 as context, as the streaming model sees them), carrying the LSTM
state from block to block; only the model file is used (importing ``silero_vad`` loads torch).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from commercial98k.engine.threads import worker_threads
from commercial98k.storage.files import sha256_file

from ..models.registry import ModelInfo
from ..models.weights import package_file

SAMPLE_RATE = 16000
FRAME = 512  # samples (32 ms)
CONTEXT = 64
BLOCK = 512  # frames per ONNX call (~16 s)
FRAME_S = FRAME / SAMPLE_RATE
VERSION = "6.2.3"


def model_path() -> Path:
    return package_file("silero_vad", "data", "silero_vad_16k_sequence.onnx")


class SileroVad:
    """Per-frame speech probabilities of 16 kHz mono audio, and speech spans."""

    frame_s = FRAME_S

    def __init__(self, path: str | Path | None = None, num_threads: int | None = None):
        import onnxruntime as ort

        path = Path(path) if path else model_path()
        self.info = ModelInfo("silero-vad", VERSION, sha256_file(path))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads or worker_threads()
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def frame_probs(self, audio: np.ndarray) -> np.ndarray:
        """[ceil(len / 512)] P(speech) per 32-ms frame (the last frame zero-padded)."""
        audio = np.asarray(audio, np.float32).reshape(-1)
        n = (len(audio) + FRAME - 1) // FRAME
        padded = np.concatenate([np.zeros(CONTEXT, np.float32), audio, np.zeros(n * FRAME - len(audio), np.float32)])
        h = np.zeros((1, 1, 128), np.float32)
        c = np.zeros((1, 1, 128), np.float32)
        out = np.zeros(n, np.float32)
        for s in range(0, n, BLOCK):  # one block of frames at a time: memory stays bounded on long videos
            k = min(BLOCK, n - s)
            x = np.lib.stride_tricks.sliding_window_view(padded[s * FRAME:(s + k) * FRAME + CONTEXT],
                                                         FRAME + CONTEXT)[::FRAME][:k]
            p, h, c = self._session.run(None, {"input": np.ascontiguousarray(x), "h": h, "c": c})
            out[s:s + k] = np.asarray(p, np.float32).reshape(-1)
        return out

    def speech_spans(self, audio: np.ndarray, onset: float = 0.5, offset: float = 0.35, min_speech_s: float = 0.25,
                     max_gap_s: float = 0.3) -> list[tuple[float, float]]:
        """``[(start_s, end_s)]`` where someone speaks: hysteresis over the frame probabilities, pauses
        shorter than ``max_gap_s`` bridged, bursts shorter than ``min_speech_s`` dropped."""
        return spans_from_frames(self.frame_probs(audio), len(audio) / SAMPLE_RATE, onset, offset, min_speech_s,
                                 max_gap_s)


def spans_from_frames(p: np.ndarray, duration_s: float, onset: float = 0.5, offset: float = 0.35,
                      min_speech_s: float = 0.25, max_gap_s: float = 0.3) -> list[tuple[float, float]]:
    """Speech spans from per-frame probabilities (see ``SileroVad.speech_spans``)."""
    spans: list[list[float]] = []
    on = False
    for i, v in enumerate(np.asarray(p, np.float64)):
        on = v >= onset if not on else v >= offset
        if not on:
            continue
        start, end = i * FRAME_S, min(duration_s, (i + 1) * FRAME_S)
        if spans and start - spans[-1][1] <= max_gap_s + 1e-9:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [(round(s, 3), round(e, 3)) for s, e in spans if e - s >= min_speech_s - 1e-9]


_VADS: dict[int, SileroVad] = {}
_LOCK = threading.Lock()


def get_vad(num_threads: int | None = None) -> SileroVad:
    """A per-process shared VAD (an onnxruntime session is thread-safe, not picklable)."""
    key = num_threads or worker_threads()
    with _LOCK:
        if key not in _VADS:
            _VADS[key] = SileroVad(num_threads=num_threads)
        return _VADS[key]
