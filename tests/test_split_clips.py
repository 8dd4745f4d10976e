"""Clip planning (windows inside music, aligned to shots and frames) and frame-accurate cutting."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from commercial98k.media.ffmpeg_io import load_audio, probe
from commercial98k.split import plan_video
from commercial98k.split.cut import cut_clip, plan_clips, slice_audio, write_clip_audio


def test_short_ad_is_one_clip():
    clips = plan_clips(20.0, [(0.0, 20.0)], [5.0, 12.0], fps=25.0)
    assert len(clips) == 1
    assert (clips[0].start_s, clips[0].end_s, clips[0].start_frame, clips[0].end_frame) == (0.0, 20.0, 0, 500)


def test_long_music_is_windowed_on_shot_boundaries():
    bounds = [7.0, 18.5, 26.0, 41.0, 55.0, 70.0]
    clips = plan_clips(90.0, [(2.0, 88.0)], bounds, fps=25.0, clip_seconds=30.0, min_clip_seconds=4.0)
    assert clips[0].start_s == 2.0
    for c in clips:
        assert 4.0 - 1e-6 <= c.duration_s <= 30.0 + 1e-6
    for a, b in zip(clips, clips[1:], strict=False):
        assert a.end_s == b.start_s  # contiguous
        assert a.end_s in bounds or a.duration_s == pytest.approx(30.0)
    # the first window ends on the latest boundary within 30 s of its start
    assert clips[0].end_s == 26.0
    assert clips[-1].end_s == 88.0
    assert [c.index for c in clips] == list(range(len(clips)))


def test_windows_without_boundaries_are_exact_and_short_tail_dropped():
    clips = plan_clips(65.0, [(0.0, 65.0)], [], fps=None, clip_seconds=30.0, min_clip_seconds=8.0)
    assert [(c.start_s, c.end_s) for c in clips] == [(0.0, 30.0), (30.0, 60.0)]
    assert clips[0].start_frame is None


def test_frame_snapping_and_spans_outside_video():
    fps = 30000 / 1001
    clips = plan_clips(10.0, [(1.01, 9.99), (9.5, 12.0)], [], fps=fps, min_clip_seconds=1.0)
    assert len(clips) == 1
    c = clips[0]
    assert c.start_s == pytest.approx(c.start_frame / fps, abs=1e-6)
    assert c.end_s == pytest.approx(c.end_frame / fps, abs=1e-6)
    assert 1.01 <= c.start_s < 1.01 + 1 / fps and 9.99 - 1 / fps < c.end_s <= 9.99
    with pytest.raises(ValueError):
        plan_clips(10.0, [(0, 10)], clip_seconds=5, min_clip_seconds=6)


def test_cut_clip_is_frame_accurate(shared_media, tmp_path):
    src = shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv"
    info = probe(src)
    clip = plan_clips(info.duration_s, [(3.3, 9.1)], [], fps=info.fps, min_clip_seconds=1.0)[0]
    out = cut_clip(src, tmp_path / "clips" / "x.mp4", clip.start_s, clip.end_s, height=240)
    got = probe(out)
    assert got.has_audio and got.has_video
    assert got.height == 240 and got.width == pytest.approx(240 * info.width / info.height, abs=2)
    assert got.num_frames == clip.end_frame - clip.start_frame
    assert got.duration_s == pytest.approx(clip.duration_s, abs=0.1)
    assert not list((tmp_path / "clips").glob(".*"))  # no temp files left


def test_clip_audio_is_mono_16k(shared_media, tmp_path):
    audio = load_audio(shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv", 16000)
    part = slice_audio(audio, 16000, 2.0, 5.5)
    assert len(part) == int(3.5 * 16000)
    path = write_clip_audio(tmp_path / "audio" / "x.wav", part, 16000)
    data, sr = sf.read(path)
    assert sr == 16000 and data.ndim == 1 and len(data) == len(part)
    assert np.corrcoef(data, part)[0, 1] > 0.99


def test_plan_video_for_recommendation_ignores_music(shared_media):
    """A video without audio still gets windows when music is not required (yuyin recommend)."""
    s = plan_video(shared_media / "videos" / "pyscenedetect_testvideo.mp4", require_music=False, clip_seconds=10)
    assert s.status == "ok" and s.music is None
    assert s.clips[0].start_s == 0.0 and all(c.duration_s <= 10 + 1e-6 for c in s.clips)
    assert 0 <= s.duration_s - s.clips[-1].end_s < 4.0  # only a tail shorter than min_clip_seconds is left
    assert plan_video(shared_media / "videos" / "pyscenedetect_testvideo.mp4").status == "no_audio"
