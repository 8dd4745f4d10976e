"""One decode per video (``split.decode``): same shots, audio and music spans as the separate
decoders, YAMNet streamed in chunks, and peak memory that does not grow with the video's length."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from input_cache import cached_file, content_key

from commercial98k.engine.threads import restored_thread_limits, set_worker_threads
from commercial98k.identity.reupload import keyframe_times, phash_similarity, video_phash
from commercial98k.media.ffmpeg_io import ffmpeg_bin, load_audio, seek_before
from commercial98k.media.pyav import decode_span
from commercial98k.split.decode import MusicStream, scan_video
from commercial98k.split.music import get_detector, spans_from_probs
from commercial98k.split.shots import detect_shots

ROOT = Path(__file__).resolve().parent.parent


def test_scan_matches_the_separate_decoders(shared_media):
    path = shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv"
    det = get_detector()
    scan = scan_video(path, music_detector=det)
    shots = detect_shots(path)
    assert scan.shots.cuts() == shots.cuts() and scan.shots.num_frames == shots.num_frames
    audio = load_audio(path, 16000)
    assert len(scan.audio) == len(audio) and np.abs(scan.audio - audio).max() < 1e-4
    whole = det.frame_probs(audio)
    assert len(scan.probs) == len(whole) and np.abs(scan.probs.music - whole.music).max() < 0.05
    assert spans_from_probs(scan.probs) == spans_from_probs(whole)
    times = keyframe_times([(s.start_s, s.end_s) for s in shots.shots], shots.num_frames / shots.fps)
    # the same keyframes, hashed from the small frames of the one pass: close to the 128 px hashes
    # of a separate decode, far from another video's
    ours = scan.keyframe_phash(times)
    assert len(ours.split(",")) >= len(times) - 2 and phash_similarity(ours, video_phash(path, times)) >= 0.5
    other = scan_video(shared_media / "videos" / "pyscenedetect_testvideo.mp4", shots=False)
    assert phash_similarity(ours, other.keyframe_phash(times)) <= 0.2


def test_chunked_music_equals_the_whole_track(shared_media):
    audio = load_audio(shared_media / "emotify" / "audio" / "pop_2.mp3", 16000, duration_s=21.3)
    det = get_detector()
    whole = det.frame_probs(audio)
    stream = MusicStream(det, chunk_patches=5)
    for piece in np.array_split(audio, 37):  # odd piece sizes, as a decoder delivers them
        stream.feed(piece)
    probs = stream.finish()
    assert len(probs) == len(whole) and probs.duration_s == whole.duration_s
    assert np.abs(probs.music - whole.music).max() < 0.05 and np.abs(probs.silence - whole.silence).max() < 0.05
    assert np.array_equal(stream.audio(), audio)


def _aligned_to_track(audio: np.ndarray, path: Path, start_s: float) -> bool:
    """``audio`` is the whole track's span at ``start_s``, to the sample."""
    ref = load_audio(path, 16000)[int(start_s * 16000):][: len(audio)]
    return len(ref) == len(audio) and float(np.abs(audio - ref).max()) < 1e-3


def test_decode_span_gives_the_span(shared_media):
    path = shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv"
    audio, frames = decode_span(path, 8.5, 14.5, 16000, 1.0, 224)
    assert frames.shape == (6, 224, 224, 3) and frames.dtype == np.uint8
    assert len(audio) == 6 * 16000 and _aligned_to_track(audio, path, 8.5)


def test_a_late_span_is_decoded_from_a_nearby_keyframe(shared_media):
    """In this Matroska file a container-level seek lands on the first packet, so a late span was
    decoded from the start of the file; the seek on the video stream lands just before the span."""
    import av

    path = shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv"
    with av.open(str(path)) as container:
        vs = container.streams.video[0]
        seek_before(container, vs, 24.5)
        first = next(container.demux(vs))
        assert first.is_keyframe and 21.0 < float(first.pts * first.time_base) <= 24.5
    audio, frames = decode_span(path, 25.0, 31.0, 16000, 1.0, 224)
    assert frames.shape == (6, 224, 224, 3)
    assert len(audio) == 6 * 16000 and _aligned_to_track(audio, path, 25.0)
    # the frames are those a decode of the file from its start gives at those times
    _, whole = decode_span(path, None, 31.0, None, 1.0, 224)
    assert np.abs(whole[25:31].astype(int) - frames).mean() < 1


@pytest.mark.parametrize("name", ["big_buck_bunny_trailer_480p.mkv", "videollava_sample_demo_22.mp4",
                                  "pyscenedetect_testvideo.mp4", "big_buck_bunny_0_30.webm"])
def test_frames_that_cannot_be_samples_are_skipped_without_changing_the_samples(shared_media, name):
    """Packets away from every sample time decode with skip_frame=NONREF; the sampled frames stay
    those of a full decode, byte for byte, with one decoder thread and with frame threads."""
    path = shared_media / "videos" / name
    for threads in (1, 2):
        with restored_thread_limits():
            set_worker_threads(threads)
            for start, end, fps in ((None, None, 1.0), (3.3, 9.1, 1.0), (5.0, 12.0, 2.5)):
                _, full = decode_span(path, start, end, None, fps, 96, skip_nonref=False)
                _, skipped = decode_span(path, start, end, None, fps, 96)
                assert len(full) >= 5 and np.array_equal(full, skipped), (name, threads, start, fps)


# VmHWM is the peak of this process's own memory map. ru_maxrss is not: Linux carries the
# parent's peak over exec (a child of a 1.6 GB pytest process would report 1.6 GB).
_RSS_SCRIPT = """
import json, re, sys
from commercial98k.split import plan_video
s = plan_video(sys.argv[1])
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"status": s.status, "clips": len(s.clips), "audio": len(s.audio), "peak_mb": hwm / 1024}))
"""


def _split_peak_mb(video: Path) -> dict:
    run = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(video)], cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def ten_minute_video(shared_media) -> Path:
    """A generated 10-minute 1280x720 video (a moving test pattern, 5 fps) over looped real music.

    Encoding it takes 20-30 s, so it is kept across runs (``input_cache``), under a key of the
    ffmpeg build, its arguments and the music file."""
    track = shared_media / "emotify" / "audio" / "pop_2.mp3"
    args = ["-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=5", "-stream_loop", "-1", "-i",
            str(track), "-t", "600", "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
            "-g", "50", "-c:a", "aac", "-b:a", "64k"]
    build = subprocess.run([ffmpeg_bin(), "-version"], check=True, capture_output=True, text=True).stdout
    key = content_key(build.splitlines()[0], args, stamps=[track])
    return cached_file("ten_minutes.mp4", key, lambda out: subprocess.run(
        [ffmpeg_bin(), *args, "-y", str(out)], check=True, capture_output=True))


def test_split_peak_memory_is_bounded_on_a_ten_minute_720p_video(ten_minute_video):
    """Peak RSS of planning a 10-minute 720p video (decode, shots, YAMNet, clip windows) stays
    under 500 MB: the log-mel and the frames are never held for the whole video."""
    result = _split_peak_mb(ten_minute_video)
    assert result["status"] == "ok" and result["clips"] >= 19  # 600 s of music in <= 30 s clips
    assert result["audio"] >= 599 * 16000
    assert result["peak_mb"] < 500, result
