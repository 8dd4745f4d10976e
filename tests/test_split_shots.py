"""Shot detection on real media with known cuts (PySceneDetect)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from commercial98k.media.ffmpeg_io import MediaError, load_frames, probe
from commercial98k.split.shots import DETECTORS, detect_shots, detector_info, make_detector


def _truth_cuts(shared_media) -> list[int]:
    """Cut frames from pyscenedetect_testvideo_scenes.csv (first row is the video start)."""
    with open(shared_media / "videos" / "pyscenedetect_testvideo_scenes.csv", newline="") as f:
        rows = []
        for row in csv.reader(f):
            if not row or not row[0].strip().isdigit():
                if rows:
                    break
                continue
            rows.append(int(float(row[2])))
    return [r for r in rows if r > 0]


def test_testvideo_cuts_within_two_frames_of_ground_truth(shared_media):
    # The published cuts sit inside fade-to-black gaps, so they are found by the threshold
    # (fade) detector; fade_bias 0.2 places the cut a little after the middle of the black gap.
    truth = _truth_cuts(shared_media)
    assert len(truth) == 2
    shots = detect_shots(shared_media / "videos" / "pyscenedetect_testvideo.mp4", "threshold", fade_bias=0.2)
    cuts = shots.cuts()
    for t in truth:
        assert min(abs(c - t) for c in cuts) <= 2, (t, cuts)
    assert shots.shots[0].start_frame == 0
    assert abs(shots.shots[-1].end_s - probe(shared_media / "videos" / "pyscenedetect_testvideo.mp4").duration_s) < 0.1


def test_adaptive_default_finds_the_hard_cuts(shared_media):
    """Hard cuts measured independently: frames whose mean absolute change exceeds 40 of 255."""
    path = shared_media / "videos" / "pyscenedetect_testvideo.mp4"
    info = probe(path)
    frames = load_frames(path, info.fps, (128, 72)).astype(np.float32)
    change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    hard = [int(i) + 1 for i in np.flatnonzero(change > 40)]
    assert hard, "the test video has hard cuts"
    shots = detect_shots(path)  # AdaptiveDetector, downscaled
    for h in hard:
        assert min(abs(c - h) for c in shots.cuts()) <= 2, (h, shots.cuts())
    # shots tile the video: each starts where the previous ended
    for a, b in zip(shots.shots, shots.shots[1:], strict=False):
        assert a.end_frame == b.start_frame and a.end_s == pytest.approx(b.start_s)


def test_fade_boundaries(shared_media):
    # README ground truth: fade boundaries at frames 84 and 167 (threshold-style detection).
    shots = detect_shots(shared_media / "videos" / "pyscenedetect_fades.mp4", "threshold")
    for t in (84, 167):
        assert min(abs(c - t) for c in shots.cuts()) <= 2, shots.cuts()


def test_every_detector_builds_and_unknown_is_rejected():
    for name in DETECTORS:
        assert make_detector(name) is not None
        assert detector_info(name).name == f"pyscenedetect-{name}"
    with pytest.raises(ValueError, match="unknown shot detector"):
        make_detector("nope")


def test_undecodable_file_raises_media_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    with pytest.raises(MediaError):
        detect_shots(bad)


def test_fast_frame_score_equals_pyscenedetects(shared_media):
    """The detectors ``make_detector`` builds score every frame exactly as PySceneDetect's own
    ContentDetector / AdaptiveDetector do (so they cut at the same frames)."""
    import scenedetect as sd

    from commercial98k.split.shots import fast_detector_classes

    frames = load_frames(shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv", 25.0, (160, 90))[:300]
    content, adaptive = fast_detector_classes()
    pairs = [(sd.ContentDetector(), content()), (sd.AdaptiveDetector(), adaptive()),
             (sd.ContentDetector(luma_only=True), content(luma_only=True))]
    for i, rgb in enumerate(frames):
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        for ref, fast in pairs:
            tc = sd.FrameTimecode(i, 25.0)
            assert fast.process_frame(tc, bgr) == ref.process_frame(tc, bgr)
            assert fast._frame_score == pytest.approx(ref._frame_score, abs=1e-9), i
    assert max(ref._frame_score for ref, _ in pairs) > 0
