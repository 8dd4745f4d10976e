"""``c98k split --clip-files none`` keeps the truth in the spans: same spans and music ids as
``encode``, and ``c98k label`` reads a clip without a file from its source video and span,
giving audio features and mean frame features within cosine 0.99 of those of the cut clip files
(crf 12 re-encodes: what is left is only the re-encode's loss)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from commercial98k.label.extractors import LabelConfig
from commercial98k.manifest.io import read_manifest, write_manifest
from commercial98k.media.ffmpeg_io import ffmpeg_bin
from commercial98k.storage.feature_store import FeatureStore
from pipelines.label import LabelOptions, run_label
from pipelines.split import SplitConfig, run_split

pytestmark = pytest.mark.usefixtures("one_torch_thread", "shared_models")


def _video(out: Path, film: Path, film_start: float, track: Path, start: float, seconds: float) -> None:
    """Real footage (a part of ``film`` at 320 px) under ``seconds`` of a real music ``track``."""
    subprocess.run([ffmpeg_bin(), "-v", "error", "-y", "-ss", str(film_start), "-i", str(film),
                    "-ss", str(start), "-i", str(track), "-t", str(seconds), "-map", "0:v", "-map", "1:a",
                    "-vf", "scale=320:-2", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest",
                    str(out)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def both(shared_media, tmp_path_factory):
    """The same three videos split with --clip-files none and encode, then labelled."""
    base = tmp_path_factory.mktemp("clipfiles")
    src = base / "src"
    src.mkdir()
    audio = shared_media / "emotify" / "audio"
    film = shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv"
    _video(src / "a.mp4", film, 0, audio / "pop_2.mp3", 5, 14)
    _video(src / "b.mp4", film, 14, audio / "pop_2.mp3", 9, 11)  # the same track
    _video(src / "c.mp4", film, 20, audio / "rock_2.mp3", 5, 12)
    rows = [dict(video_id=n, platform="local", platform_id=n, video_path=f"videos/{n}.mp4", title=f"ad {n}",
                 category="cosmetics", status="ok") for n in ("a", "b", "c")]
    out = {}
    config = LabelConfig(emotion_model="none")
    for mode in ("none", "encode"):
        root = base / mode
        shutil.copytree(src, root / "data" / "videos")
        write_manifest(rows, root / "videos.parquet", "videos")
        run_split(root / "videos.parquet", root / "c98k.parquet",
                  SplitConfig(data_root=str(root / "data"), clip_seconds=10, min_clip_seconds=3, clip_files=mode))
        counts = run_label(root / "c98k.parquet", root / "data", config, LabelOptions(), progress=False)
        assert counts["labelled"] >= 3 and not counts["failed"], counts
        out[mode] = (root, {r["clip_id"]: r for r in read_manifest(root / "c98k.parquet", "clips").to_pylist()})
    return out


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_same_spans_and_music_ids(both):
    (_, none), (root, enc) = both["none"], both["encode"]
    assert set(none) == set(enc)
    for cid, r in none.items():
        e = enc[cid]
        assert (r["clip_start_s"], r["clip_end_s"], r["music_id"], r["status"]) == \
               (e["clip_start_s"], e["clip_end_s"], e["music_id"], e["status"])
        if r["status"] == "ok":
            assert r["clip_path"] is None and (root / "data" / e["clip_path"]).is_file()
            assert r["audio_path"] and r["fingerprint"] == e["fingerprint"]
    assert sum(r["status"] == "ok" for r in none.values()) >= 3 and all(r["music_id"] for r in none.values())


def test_features_from_the_source_span_match_the_clip_files(both):
    """Audio features within cosine 0.99 step by step. Frame features: each clip's mean frame
    embedding within cosine 0.99 of its own clip file's (and nearest to it among all clips), every
    frame within 0.97: what is left is the re-encode's loss (``clips.CLIP_CRF``; the sampled frames
    are the same ones: a lossless re-encode gives identical pixels, a shift of one frame is worse)."""
    (root_n, none), (root_e, enc) = both["none"], both["encode"]
    store_n, store_e = FeatureStore(root_n / "data"), FeatureStore(root_e / "data")
    ok = sorted(c for c, r in none.items() if r["status"] == "ok")
    means = {}
    for cid in ok:
        r = none[cid]
        for col in ("frame_embedding", "audio_embedding"):
            a, b = store_n.get(r[col]), store_e.get(enc[cid][col])
            assert abs(len(a) - len(b)) <= 1, (cid, col, a.shape, b.shape)
            n = min(len(a), len(b))
            per_step = [_cos(a[i], b[i]) for i in range(n)]
            if col == "audio_embedding":
                assert min(per_step) >= 0.99, (cid, per_step)
            else:
                assert _cos(a[:n].mean(0), b[:n].mean(0)) >= 0.99 and min(per_step) >= 0.97, (cid, per_step)
                means[cid] = (a.mean(0), b.mean(0))
    for cid in ok:  # the source-span features identify their own clip
        assert max(ok, key=lambda other: _cos(means[cid][0], means[other][1])) == cid


def _share_above(audio: np.ndarray, sample_rate: int, hz: float) -> float:
    power = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1.0 / sample_rate)
    return float(power[freqs > hz].sum() / power.sum())


def test_label_reads_the_split_wav_at_its_rate_and_decodes_the_span_otherwise(both):
    """A clip without a file takes its audio from split's 16 kHz WAV (the same samples as the span's
    own decode, no AAC decode); a 48 kHz model gets the span's full band, not the WAV upsampled."""
    from commercial98k.label.extractors import decode_clip
    from commercial98k.media.ffmpeg_io import wav_at_rate

    root, none = both["none"]
    ok = [r for r in none.values() if r["status"] == "ok"]
    for r in ok:
        video, wav = root / "data" / r["video_path"], root / "data" / r["audio_path"]
        start, end = r["clip_start_s"], r["clip_end_s"]
        from_wav = decode_clip(video, start, end, 16000, audio_path=wav).audio
        assert np.array_equal(from_wav, wav_at_rate(wav, 16000))
        from_span = decode_clip(video, start, end, 16000).audio
        assert abs(len(from_wav) - len(from_span)) <= 16
        n = min(len(from_wav), len(from_span))
        assert np.corrcoef(from_wav[:n], from_span[:n])[0, 1] > 0.999
        full_band = decode_clip(video, start, end, 48000, audio_path=wav).audio
        assert abs(len(full_band) - (end - start) * 48000) <= 480
        assert _share_above(full_band, 48000, 8500) > 1e-4 > _share_above(from_wav, 16000, 7900)


def test_a_truncated_or_unreadable_clip_wav_falls_back_to_the_span(both, tmp_path):
    from commercial98k.label.extractors import decode_clip

    root, none = both["none"]
    r = next(r for r in none.values() if r["status"] == "ok")
    video, wav = root / "data" / r["video_path"], root / "data" / r["audio_path"]
    start, end = r["clip_start_s"], r["clip_end_s"]
    truncated, garbage = tmp_path / "truncated.wav", tmp_path / "garbage.wav"
    data = wav.read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    garbage.write_bytes(b"RIFF" + b"\0" * 64)
    expected = decode_clip(video, start, end, 16000).audio
    for bad in (truncated, garbage, tmp_path / "missing.wav"):
        got = decode_clip(video, start, end, 16000, audio_path=bad).audio
        assert np.array_equal(got, expected), bad.name
