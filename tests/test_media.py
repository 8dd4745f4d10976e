"""Probing (in-process with PyAV, checked against Debian's ffprobe) and decoding real media."""

from __future__ import annotations

import numpy as np
import pytest

from commercial98k.media import ffmpeg_io as media

VIDEOS = ["big_buck_bunny_trailer_480p.mkv", "big_buck_bunny_0_30.webm", "pyscenedetect_testvideo.mp4",
          "videollava_sample_demo_22.mp4"]


@pytest.mark.parametrize("name", VIDEOS)
def test_pyav_probe_agrees_with_ffprobe(shared_media, name):
    path = shared_media / "videos" / name
    if media.ffprobe_bin() is None:
        pytest.fail("Debian's ffprobe is expected on this machine (scripts/install_system_deps.sh)")
    ref = media.probe_with_ffprobe(path)
    got = media.probe(path)
    assert (got.width, got.height, got.has_video, got.has_audio, got.audio_sample_rate) == (
        ref.width, ref.height, ref.has_video, ref.has_audio, ref.audio_sample_rate)
    assert got.duration_s == pytest.approx(ref.duration_s, abs=0.1)
    assert got.fps == pytest.approx(ref.fps, rel=1e-3)


def test_probe_says_what_is_wrong(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01" * 500)
    with pytest.raises(media.MediaError, match="broken.mp4: cannot read it"):
        media.probe(broken)
    with pytest.raises(media.MediaError, match="broken.mp4: ffprobe cannot read it"):
        media.probe_with_ffprobe(broken)
    with pytest.raises(media.MediaError, match="no such file"):
        media.probe(tmp_path / "missing.mp4")


def test_decoded_audio_and_frames_have_the_asked_shape(shared_media):
    path = shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv"
    audio = media.load_audio(path, 16000, start_s=2.0, duration_s=3.0)
    assert audio.dtype.name == "float32" and abs(len(audio) - 48000) <= 160
    assert 0.001 < float(abs(audio).mean()) < 1.0  # the orchestral score, not silence
    frames = media.load_frames(path, fps=2.0, size=64, start_s=5.0, duration_s=2.0)
    assert frames.shape[1:] == (64, 64, 3) and 3 <= len(frames) <= 5
    with pytest.raises(media.MediaError, match="pyscenedetect_testvideo.mp4: ffmpeg failed .Stream map .0:a:0. matches no streams"):
        media.load_audio(shared_media / "videos" / "pyscenedetect_testvideo.mp4", 16000)


def test_a_mono_wav_at_the_asked_rate_is_read_in_process_with_ffmpegs_samples(shared_media, tmp_path):
    track = media.load_audio(shared_media / "emotify" / "audio" / "pop_2.mp3", 16000, start_s=3.0, duration_s=4.0)
    wav = tmp_path / "clip.wav"
    media.write_wav(wav, track, 16000)
    fast = media.load_audio(wav, 16000)
    through_ffmpeg = media.load_audio(wav, 16000, duration_s=60.0)  # a span: always ffmpeg
    assert np.array_equal(fast, through_ffmpeg) and np.abs(fast - np.clip(track, -1, 1)).max() < 1e-4
    assert media.wav_at_rate(wav, 22050) is None and media.wav_at_rate(shared_media / "emotify" / "audio" /
                                                                         "pop_2.mp3", 16000) is None
    assert len(media.load_audio(wav, 22050)) == pytest.approx(4.0 * 22050, abs=50)  # another rate: ffmpeg resamples
