"""Music under a real voice-over: detection, landmark identity, the persisted index, the library, split.

Real music (Emotify) under real recorded speech (CMU ARCTIC, FSDD) from ../shared/media.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from commercial98k.identity import landmarks as lm
from commercial98k.identity.chromaprint import fingerprint_audio, group_music
from commercial98k.identity.landmark_index import LandmarkIndex, landmark_index_dir, landmark_problem
from commercial98k.identity.library import match_library, open_library, track_id
from commercial98k.manifest.io import read_manifest, write_manifest
from commercial98k.media.ffmpeg_io import write_wav
from commercial98k.split.music import get_detector, spans_from_probs
from commercial98k.split.vad import get_vad
from commercial98k.testing import voiceover as vo
from pipelines.commands.split import command as split_command

SR = vo.SAMPLE_RATE


@pytest.fixture(scope="module")
def bank(shared_media) -> vo.SpeechBank:
    return vo.speech_bank(shared_media / "speech")


@pytest.fixture(scope="module")
def tracks(shared_media) -> dict[str, Path]:
    audio = shared_media / "emotify" / "audio"
    return {n: audio / f"{n}.mp3" for n in ("pop_5", "rock_12", "classical_8")}


def _landmarks(audio: np.ndarray) -> lm.Fingerprint:
    return lm.Fingerprint.of(lm.extract_voiced(audio, get_vad()))


def test_music_under_real_speech_matches_its_clean_copy(tracks, bank):
    clean = vo.load_music(tracks["pop_5"], 5.0, 12.0)
    music = vo.load_music(tracks["pop_5"], 10.0, 12.0)  # shares 7 s with the clean excerpt
    voiced = vo.mix(music, vo.digit_voice(bank, len(music), 0.8, np.random.default_rng(0)), 6.0)
    other = vo.load_music(tracks["rock_12"], 10.0, 12.0)
    other_voiced = vo.mix(other, vo.digit_voice(bank, len(other), 0.8, np.random.default_rng(1)), 6.0)
    a, b, c = _landmarks(clean), _landmarks(voiced), _landmarks(other_voiced)
    m = lm.match(a, b)
    assert lm.is_match(m), m
    assert abs(m.offset_s - 5.0) < 0.05  # the voiced copy starts 5 s into the clean one
    assert not lm.is_match(lm.match(a, c))
    # Chromaprint, the earlier identity, loses the same pair under the voice
    fps = {"clean": fingerprint_audio(clean, SR), "voiced": fingerprint_audio(voiced, SR)}
    assert len(set(group_music(fps).values())) == 2


def test_a_shared_jingle_does_not_join_two_tracks(tracks, bank):
    logo = vo.load_music(tracks["classical_8"], 20.0, 2.0)
    ads = []
    for name in ("pop_5", "rock_12"):
        music = vo.load_music(tracks[name], 5.0, 12.0)
        ads.append(_landmarks(vo.mix(music, vo.jingle(logo, len(music), at=int(9.5 * SR)), 0.0)))
    m = lm.match(ads[0], ads[1])
    assert m is not None and m.votes > 0  # the logo's hashes are shared ...
    assert not lm.is_match(m)  # ... but they cover ~2 s of a 12-s overlap


def test_landmarks_round_trip_and_silence_has_none():
    rng = np.random.default_rng(0)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * SR) / SR) + 0.01 * rng.standard_normal(3 * SR)).astype(np.float32)
    p = lm.extract_peaks(tone, np.arange(1 + (len(tone) - lm.N_FFT) // lm.HOP) % 3 == 0)
    q = lm.decode(lm.encode(p))
    assert len(p) and np.array_equal(p.t, q.t) and np.array_equal(p.f, q.f)
    assert p.frames == q.frames and np.array_equal(p.voiced_at, q.voiced_at) and p.voiced_at.sum() > 0
    silent = lm.encode(lm.extract_peaks(np.zeros(5 * SR, np.float32)))
    assert "too few spectral peaks (0" in landmark_problem(silent)
    assert landmark_problem(None) == "no landmark fingerprint"
    assert "unreadable" in landmark_problem("lm1:not-base64!")


def test_a_bed_under_a_voice_over_stays_one_span_and_speech_alone_gives_none(tracks, bank):
    det = get_detector()
    music = vo.load_music(tracks["pop_5"], 5.0, 12.0)
    mix = vo.mix(music, vo.sentence_voice(bank, len(music), 0.8, start=SR), 6.0)
    voice = get_vad().speech_spans(mix)
    truth = vo.sentence_voice(bank, len(music), 0.8, start=SR)
    voiced = np.flatnonzero(np.abs(truth) > 1e-3) / SR
    assert voice[0][0] == pytest.approx(voiced[0], abs=0.3) and voice[-1][1] == pytest.approx(voiced[-1], abs=0.3)
    assert max(e - s for s, e in spans_from_probs(det.frame_probs(mix), speech_segments=voice)) >= 8.0
    assert get_vad().speech_spans(music) == []  # the music alone has no voice
    alone = vo.sentence_voice(bank, 12 * SR, 0.9, start=0)
    assert spans_from_probs(det.frame_probs(alone), speech_segments=get_vad().speech_spans(alone)) == []
    assert spans_from_probs(det.frame_probs(np.zeros(12 * SR, np.float32)), speech_segments=[]) == []


def test_landmark_index_is_persisted_and_incremental(tmp_path, tracks, bank):
    rng = np.random.default_rng(2)
    texts = {}
    for name, path in tracks.items():
        for part, start in (("a", 5.0), ("b", 10.0)):
            music = vo.load_music(path, start, 12.0)
            audio = music if part == "a" else vo.mix(music, vo.digit_voice(bank, len(music), 0.8, rng), 6.0)
            texts[f"{name}-{part}"] = lm.encode(lm.extract_peaks(audio))
    first = LandmarkIndex(tmp_path / "idx").add({k: v for k, v in texts.items() if k.endswith("-a")})
    assert len(set(first.values())) == 3
    again = LandmarkIndex(tmp_path / "idx")  # reopened from disk: the b clips join the known groups
    second = again.add({k: v for k, v in texts.items() if k.endswith("-b")})
    for name in tracks:
        assert second[f"{name}-b"] == first[f"{name}-a"]
    assert again.size == 6 and LandmarkIndex(tmp_path / "idx").music_ids() == {**first, **second}


def test_music_library_names_the_track_of_a_disjoint_excerpt(tmp_path, monkeypatch, tracks, bank):
    monkeypatch.setenv("C98K_CACHE", str(tmp_path / "cache"))
    library = tmp_path / "library"
    (library / "sub").mkdir(parents=True)
    (library / "pop.mp3").symlink_to(tracks["pop_5"])
    (library / "sub" / "rock.mp3").symlink_to(tracks["rock_12"])
    rng = np.random.default_rng(3)
    clips = {}
    for name, start in (("pop_5", 35.0), ("rock_12", 41.0), ("classical_8", 35.0)):
        music = vo.load_music(tracks[name], start, 12.0)
        clips[name] = lm.encode(lm.extract_peaks(vo.mix(music, vo.digit_voice(bank, len(music), 0.8, rng), 6.0)))
    idx, keys = open_library(library, progress=False)
    found = match_library(idx, keys, clips)
    assert found["pop_5"][0] == "pop.mp3" and abs(found["pop_5"][1] - 35.0) <= 0.05
    assert found["rock_12"][0] == "sub/rock.mp3" and abs(found["rock_12"][1] - 41.0) <= 0.05
    assert "classical_8" not in found  # not in the library: no track is made up
    reopened, _ = open_library(library, progress=False)  # cached: nothing fingerprinted again
    assert reopened.size == 2


def _ad(out: Path, audio: np.ndarray, visual: str) -> None:
    wav = out.with_suffix(".wav")
    write_wav(wav, audio, SR)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"{visual}=size=160x120:rate=10",
                    "-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
                    "-c:a", "aac", "-shortest", str(out)], check=True, capture_output=True)
    wav.unlink()


def test_split_gives_voiced_ads_of_one_track_one_id_and_names_it_from_the_library(tmp_path, monkeypatch,
                                                                                   tracks, bank):
    monkeypatch.setenv("C98K_CACHE", str(tmp_path / "cache"))
    videos = tmp_path / "data" / "videos"
    videos.mkdir(parents=True)
    rng = np.random.default_rng(4)
    plan = {"v1": ("pop_5", 5.0, "testsrc"), "v2": ("pop_5", 10.0, "testsrc2"), "v3": ("rock_12", 5.0, "smptebars")}
    for vid, (name, start, visual) in plan.items():
        music = vo.load_music(tracks[name], start, 12.0)
        _ad(videos / f"{vid}.mp4", vo.mix(music, vo.digit_voice(bank, len(music), 0.8, rng), 6.0), visual)
    rows = [dict(video_id=v, platform="local", platform_id=v, video_path=f"videos/{v}.mp4", status="ok")
            for v in plan]
    write_manifest(rows, tmp_path / "videos.parquet", "videos")
    library = tmp_path / "library"
    library.mkdir()
    (library / "pop.mp3").symlink_to(tracks["pop_5"])
    manifest = tmp_path / "c98k.parquet"
    result = CliRunner().invoke(split_command, [
        "--videos-manifest", str(tmp_path / "videos.parquet"), "--manifest", str(manifest),
        "--data-root", str(tmp_path / "data"), "--clip-seconds", "12", "--music-library", str(library)])
    assert result.exit_code == 0, result.output
    clips = [r for r in read_manifest(manifest, "clips").to_pylist() if r["status"] == "ok"]
    by_video: dict[str, set] = {}
    for r in clips:
        by_video.setdefault(r["video_id"], set()).add(r["music_id"])
        assert r["landmarks"].startswith("lm1:") and 0.4 <= r["speech_ratio"] <= 1.0
        assert r["speech_segments"] and "landmarks" in r["fingerprinter"]
    assert by_video["v1"] == by_video["v2"] == {track_id("pop.mp3")}
    assert by_video["v3"] and not by_video["v3"] & by_video["v1"]
    assert {r["music_track"] for r in clips if r["video_id"] in ("v1", "v2")} == {"pop.mp3"}
    assert all(r["music_track"] is None for r in clips if r["video_id"] == "v3")
    assert landmark_index_dir(manifest).is_dir()


@pytest.mark.parametrize("snr", [0.0, 6.0])
def test_two_tracks_under_the_same_sentences_do_not_match(tracks, bank, snr):
    voice = None
    fps = []
    for name in ("pop_5", "rock_12", "classical_8"):
        music = vo.load_music(tracks[name], 5.0, 12.0)
        voice = vo.sentence_voice(bank, len(music), 0.8, start=int(1.2 * SR)) if voice is None else voice
        fps.append(_landmarks(vo.mix(music, voice, snr)))
    for i in range(3):
        for j in range(i + 1, 3):
            m = lm.match(fps[i], fps[j])
            assert m is not None and m.votes >= 20  # the voice's hashes are shared, at one offset ...
            assert m.voice_aligned and not lm.is_match(m), m  # ... but the music under it is not


def test_the_musics_offset_is_checked_beside_a_shared_voices_pile_of_votes():
    # one voice-over at the same place in both ads: hundreds of votes on offset 0 and its
    # neighbours; the music, 5 s (312 frames) apart in the two ads, has a few dozen
    votes = {-2: 40, -1: 150, 0: 400, 1: 160, 2: 45, 312: 20, 313: 12, -200: 1}
    top = lm.top_offsets(votes)
    assert top[:2] == [0, 312]  # not 0's neighbours first
    assert all(abs(a - b) > 2 for i, a in enumerate(top) for b in top[i + 1:])
    assert lm.top_offsets(votes, k=1) == [0]
