"""Music identity (Chromaprint) and near-duplicate videos (perceptual hash) on real media."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from commercial98k.identity import chromaprint as identity
from commercial98k.identity import reupload
from commercial98k.identity.chromaprint import (
    decode,
    fingerprint_audio,
    fingerprint_file,
    group_music,
    same_track,
)
from commercial98k.identity.reupload import group_duplicates, keyframe_times, video_phash
from commercial98k.media.ffmpeg_io import load_audio

SR = 16000


@pytest.fixture(scope="module")
def excerpts(shared_media):
    """Two overlapping cuts of one track (different starts and lengths) and a different track."""
    def audio(name, start, dur):
        return load_audio(shared_media / "emotify" / "audio" / f"{name}.mp3", SR, start_s=start, duration_s=dur)

    return {
        "pop_a": audio("pop_2", 5.0, 20.0),
        "pop_b": audio("pop_2", 8.37, 18.0),
        "rock": audio("rock_2", 5.0, 20.0),
        "classical": audio("classical_2", 10.0, 15.0),
    }


def test_same_track_matches_across_offsets(excerpts):
    a, b, c = (decode(fingerprint_audio(excerpts[k], SR)) for k in ("pop_a", "pop_b", "rock"))
    ber_same, offset = identity.best_match(a, b)
    ber_diff, _ = identity.best_match(a, c)
    assert ber_same < 0.2 < ber_diff
    assert offset * identity.ITEM_S == pytest.approx(3.37, abs=0.3)  # the cut started 3.37 s later
    assert same_track(a, b) and not same_track(a, c)


def test_group_music_ids(excerpts):
    fps = {k: fingerprint_audio(v, SR) for k, v in excerpts.items()}
    ids = group_music(fps)
    assert ids["pop_a"] == ids["pop_b"]
    assert len({ids["pop_a"], ids["rock"], ids["classical"]}) == 3
    assert all(v.startswith("m-") for v in ids.values())
    # ids do not depend on the order clips are seen
    assert group_music(dict(reversed(list(fps.items())))) == ids


def test_fpcalc_and_library_agree(excerpts, tmp_path):
    if not shutil.which("fpcalc"):
        pytest.skip("fpcalc not installed")
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, excerpts["pop_a"], SR)
    assert same_track(decode(fingerprint_file(wav)), decode(fingerprint_audio(excerpts["pop_a"], SR)), max_ber=0.1)


def test_reupload_is_a_duplicate(shared_media, tmp_path):
    src = shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv"
    reup = tmp_path / "reupload.mp4"  # smaller, re-encoded, 0.5 s trimmed at the start
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "0.5", "-t", "20", "-i", str(src), "-vf", "scale=426:240",
                    "-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-an", str(reup)], check=True)
    other = shared_media / "videos" / "videollava_sample_demo_22.mp4"
    from commercial98k.split.shots import detect_shots

    hashes = {}
    for name, path in (("orig", src), ("reup", reup), ("other", other)):
        shots = detect_shots(path)
        times = keyframe_times([(s.start_s, s.end_s) for s in shots.shots], shots.num_frames / shots.fps)
        hashes[name] = video_phash(path, times)
    assert reupload.phash_similarity(hashes["orig"], hashes["reup"]) >= 0.6
    assert reupload.phash_similarity(hashes["orig"], hashes["other"]) < 0.6
    groups = group_duplicates(hashes)
    assert groups["orig"] == groups["reup"] != groups["other"]


def test_keyframe_times_are_thinned_and_fallback_even():
    shots = [(float(i), float(i + 1)) for i in range(40)]
    times = keyframe_times(shots, 40.0, max_frames=8)
    assert len(times) == 8 and times == sorted(times)
    assert keyframe_times([], 10.0, max_frames=4) == [1.25, 3.75, 6.25, 8.75]


def test_bit_error_rate_of_identical_and_random():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**32, 200, dtype=np.uint64).astype(np.uint32)
    assert identity.bit_error_rate(a, a, 0) == (0.0, 200)
    b = rng.integers(0, 2**32, 200, dtype=np.uint64).astype(np.uint32)
    assert identity.bit_error_rate(a, b, 0)[0] == pytest.approx(0.5, abs=0.05)
    assert identity.bit_error_rate(a[10:], a, -10)[0] == 0.0


def test_no_false_merges_between_similar_tracks(shared_media, tmp_path):
    """10-s excerpts of 8 tracks (incl. the two closest electronic pieces) stay apart; an AAC
    re-encoded overlapping excerpt of one joins it."""
    names = ["electronic_14", "electronic_7", "electronic_11", "rock_3", "rock_9", "pop_5", "pop_11", "classical_4"]
    fps = {}
    for name in names:
        a = load_audio(shared_media / "emotify" / "audio" / f"{name}.mp3", SR, duration_s=50)
        for start in (0, 25):
            fps[f"{name}@{start}"] = fingerprint_audio(a[start * SR:(start + 10) * SR], SR)
    reencoded = tmp_path / "e14.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "3", "-t", "10", "-i",
                    str(shared_media / "emotify" / "audio" / "electronic_14.mp3"), "-c:a", "aac", "-b:a", "96k",
                    str(reencoded)], check=True)
    fps["electronic_14@3"] = fingerprint_audio(load_audio(reencoded, SR), SR)
    ids = group_music(fps)
    for k, v in ids.items():
        assert all(k2.split("@")[0] == k.split("@")[0] for k2, v2 in ids.items() if v2 == v), (k, v)
    assert ids["electronic_14@3"] == ids["electronic_14@0"]


def test_voice_over_on_part_of_a_copy_does_not_hide_the_track(excerpts):
    """Ads talk over their music: a copy of the track with another sound over its first 60 %
    still matches the clean copy (best 3-s window), though its whole-overlap BER does not."""
    clean = excerpts["pop_a"]
    talked_over = clean.copy()
    cover = int(0.6 * len(clean))
    other = excerpts["rock"][:cover]
    talked_over[:cover] = 0.5 * talked_over[:cover] + 0.9 * other / (np.abs(other).max() + 1e-9)
    a, b = decode(fingerprint_audio(clean, SR)), decode(fingerprint_audio(talked_over, SR))
    whole_overlap_ber, _ = identity.best_match(a, b, window=None)
    assert whole_overlap_ber > 0.15  # the old whole-overlap rule would miss this reuse
    assert same_track(a, b)
    ids = group_music({"clean": fingerprint_audio(clean, SR), "talked_over": fingerprint_audio(talked_over, SR),
                       "rock": fingerprint_audio(excerpts["rock"], SR)})
    assert ids["clean"] == ids["talked_over"] != ids["rock"]


def test_reupload_needs_shots_in_order_and_a_share_of_both_videos():
    """Template ads match some keyframes in scrambled order; a re-upload matches them in order."""
    rng = np.random.default_rng(7)
    frames = [int(h) for h in rng.integers(0, 2**63, 10, dtype=np.int64)]

    def video(idx):
        return ",".join(f"{frames[i]:016x}" for i in idx)

    original = video(range(10))
    assert reupload.is_reupload(original, video(range(2, 9)))  # trimmed copy: in order, 7 of 10
    scrambled = video([7, 1, 9, 3, 5, 0])
    assert reupload.phash_similarity(original, scrambled) < 0.6
    assert not reupload.is_reupload(original, scrambled)
    short = video([4, 5])  # a short ad matching a few frames of a long one
    assert reupload.phash_similarity(original, short) == 1.0
    assert not reupload.is_reupload(original, short)  # covers only 20 % of the longer video
    groups = group_duplicates({"orig": original, "trim": video(range(2, 9)), "scr": scrambled, "short": short})
    assert groups["orig"] == groups["trim"] and len({groups["orig"], groups["scr"], groups["short"]}) == 3
