"""Per-stage status, total music identity, deterministic clips, the logit_scale clamp.

Real data where it matters: clips cut from the shared videos, Chromaprint fingerprints of
generated audio, labelled with the real models; synthetic corpora for the shard checks.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from synthetic import make_labelled_corpus

from commercial98k.export.shards import build_shards
from commercial98k.identity.chromaprint import (
    decode,
    fingerprint_audio,
    fingerprint_file,
    fingerprint_problem,
    group_music,
    same_track,
    segment_links,
    segment_of,
)
from commercial98k.manifest.io import read_manifest, write_manifest
from commercial98k.manifest.status import record, stopped_at
from commercial98k.media.ffmpeg_io import ffmpeg_bin, write_wav
from commercial98k.split.cut import cut_clip
from pipelines.cli import main
from pipelines.split import assign_identity

SR = 16000


def _music(seed: int, seconds: float = 10.0) -> np.ndarray:
    """A chord sequence with a beat: Chromaprint finds structure in it (noise would do too, less reliably)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    notes = rng.choice([220.0, 247.0, 262.0, 294.0, 330.0, 349.0, 392.0, 440.0], size=int(seconds * 2))
    f = notes[np.minimum((t * 2).astype(int), len(notes) - 1)]
    beat = 0.5 + 0.5 * (np.sin(2 * np.pi * 2 * t) > 0)
    return (0.3 * beat * (np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 1.5 * f * t))).astype(np.float32)


# ---------------------------------------------------------------- per-stage status
def test_a_later_stage_never_overwrites_an_earlier_ones_result():
    row = record(record({"clip_id": "v-c000"}, "fetch", "ok", None), "split", "ok", None)
    failed = record(row, "label", "failed", "FileNotFoundError: gone")
    assert failed["split_status"] == "ok" and failed["label_status"] == "failed"
    assert (failed["status"], failed["error"]) == ("failed", "FileNotFoundError: gone")
    assert stopped_at(failed) == "label failed"
    fixed = record(failed, "label", "ok", None)
    assert (fixed["status"], fixed["error"], fixed["label_error"]) == ("ok", None, None)
    assert stopped_at(fixed) == "labelled"
    no_music = record(row, "split", "no_music", "empty audio fingerprint")
    assert no_music["status"] == "no_music" and stopped_at(no_music) == "split no_music"


@pytest.fixture(scope="module")
def one_clip(shared_media, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retry")
    root, manifest = tmp / "data", tmp / "manifests" / "c98k.parquet"
    (root / "clips").mkdir(parents=True)
    clip = root / "clips" / "local-demo-c000.mp4"
    subprocess.run([ffmpeg_bin(), "-loglevel", "error", "-i", str(shared_media / "videos" / "videollava_sample_demo_22.mp4"),
                    "-t", "6", "-c", "copy", str(clip)], check=True)
    row = {"video_id": "local-demo", "clip_id": "local-demo-c000", "platform": "local", "category": "cosmetics",
           "title": "lipstick ad", "clip_path": "clips/local-demo-c000.mp4", "duration_s": 36.0,
           "clip_start_s": 0.0, "clip_end_s": 6.0, "has_music": True, "music_id": "m-000000000001"}
    write_manifest([record(record(row, "fetch", "ok", None), "split", "ok", None)], manifest, "clips")
    return {"root": root, "manifest": manifest, "clip": clip}


def test_label_fails_on_a_missing_clip_and_retry_failed_labels_it_once_restored(one_clip):
    root, manifest, clip = one_clip["root"], one_clip["manifest"], one_clip["clip"]
    args = ["label", "--manifest", str(manifest), "--data-root", str(root), "--emotion-model", "none"]
    stash = clip.with_suffix(".away")
    clip.rename(stash)
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    row = read_manifest(manifest, "clips").to_pylist()[0]
    assert (row["status"], row["split_status"], row["label_status"]) == ("failed", "ok", "failed")
    assert "local-demo-c000.mp4: clip file missing" in row["label_error"]  # not "neither ... is set"
    stash.rename(clip)  # the file is restored
    again = CliRunner().invoke(main, args)
    assert "failed before 1 (--retry-failed retries them)" in again.output
    assert read_manifest(manifest, "clips").to_pylist()[0]["label_status"] == "failed"  # left alone
    retried = CliRunner().invoke(main, [*args, "--retry-failed"])
    assert retried.exit_code == 0 and "labelled 1, failed 0" in retried.output, retried.output
    row = read_manifest(manifest, "clips").to_pylist()[0]
    assert (row["status"], row["error"], row["split_status"], row["label_status"]) == ("ok", None, "ok", "ok")
    assert row["music_id"] == "m-000000000001" and row["frame_embedding"]


# ---------------------------------------------------------------- music identity is total
def test_clips_of_one_music_segment_share_its_id():
    a, b = fingerprint_audio(_music(1), SR), fingerprint_audio(_music(2), SR)
    assert not same_track(decode(a), decode(b))  # different audio: the fingerprints alone would split them
    clips = [("v-c000", "v", 0.73, 20.0, 0.73, 45.42), ("v-c001", "v", 20.0, 45.42, 0.73, 45.42),
             ("v-c002", "v", 50.0, 60.0, 50.0, 70.0),  # another segment of the same video
             ("w-c000", "w", 0.73, 20.0, 0.73, 45.42)]  # same times, another video
    links = segment_links(clips)
    assert links == [("v-c000", "v-c001")]
    c, d = fingerprint_audio(_music(6), SR), fingerprint_audio(_music(9), SR)
    ids = group_music({"v-c000": a, "v-c001": b, "v-c002": c, "w-c000": d}, linked=links)
    assert ids["v-c000"] == ids["v-c001"]
    assert len({ids["v-c000"], ids["v-c002"], ids["w-c000"]}) == 3
    assert len(set(group_music({"v-c000": a, "v-c001": b}).values())) == 2  # without the link: two ids


def test_each_clip_reports_the_segment_it_was_cut_from():
    spans = [(0.73, 45.42), (50.0, 58.0)]
    assert segment_of(1.0, 20.0, spans) == (0.73, 45.42)
    assert segment_of(50.0, 58.0, spans) == (50.0, 58.0)  # not the longest (main) span
    assert segment_of(100.0, 110.0, spans) is None


def test_an_empty_fingerprint_makes_the_clip_no_music_and_it_never_reaches_the_shards(tmp_path):
    manifest, data_root = make_labelled_corpus(tmp_path, n_clips=40, seed=7)
    rows = read_manifest(manifest, "clips").to_pylist()
    fp = {0: fingerprint_audio(_music(3), SR), 1: fingerprint_audio(_music(4), SR)}
    empty = "AQAAAA"  # what libchromaprint gives for under ~2 s of audio (three real ads had it)
    assert fingerprint_problem(empty).startswith("empty audio fingerprint")
    assert fingerprint_audio(np.zeros(SR, np.float32), SR) == empty
    silent = fingerprint_audio(np.zeros(SR * 5, np.float32), SR)
    assert fingerprint_problem(silent).startswith("constant audio fingerprint")
    rows = [r for r in rows if r["status"] == "ok"]
    for i, r in enumerate(rows):
        r.update(fingerprint=fp[i % 2], fetch_status="ok", split_status="ok", has_music=True)
    rows[5].update(fingerprint=empty, music_id=None)
    rows[6].update(fingerprint=silent, music_id=None)
    write_manifest(rows, manifest, "clips")
    table = assign_identity(manifest)
    after = {r["clip_id"]: r for r in table.to_pylist()}
    for cid in (rows[5]["clip_id"], rows[6]["clip_id"]):
        r = after[cid]
        assert (r["status"], r["split_status"], r["has_music"], r["music_id"]) == ("no_music", "no_music", False, None)
        assert "fingerprint" in r["split_error"] and r["error"] == r["split_error"]
    ok = [r for r in after.values() if r["status"] == "ok"]
    assert len(ok) == len(rows) - 2 and all(r["music_id"] for r in ok)  # every ok clip has a music_id
    assert all(r["has_music"] is False for r in after.values() if r["status"] == "no_music")
    index = build_shards(manifest, tmp_path / "shards", data_root, samples_per_shard=50, progress=False)
    keys = set()
    for split in index["splits"].values():
        for shard in split["shards"]:
            import tarfile

            with tarfile.open(tmp_path / "shards" / shard["path"]) as tar:
                keys |= {m.name.split(".")[0] for m in tar.getmembers()}
    assert rows[5]["clip_id"] not in keys and rows[6]["clip_id"] not in keys
    assert len(keys) == len(ok)


def test_build_shards_skips_an_ok_clip_without_music_id(tmp_path):
    manifest, data_root = make_labelled_corpus(tmp_path, n_clips=20, seed=8)
    table = pq.read_table(manifest)
    rows = table.to_pylist()
    rows[0]["music_id"] = None  # written by an older split
    write_manifest(rows, manifest, "clips")
    index = build_shards(manifest, tmp_path / "shards", data_root, samples_per_shard=50, progress=False)
    assert any(c["clip_id"] == rows[0]["clip_id"] and "no music_id" in c["cause"] for c in index["skipped"]["clips"])
    samples = sum(s["samples"] for s in index["splits"].values())
    assert sum(sum(c.values()) for c in index["split_categories"].values()) == samples
    assert samples == len(rows) - 1 - sum(index["filtered_out"].values())


def test_fpcalc_raw_fallback_decodes_without_libchromaprint_and_matches(tmp_path):
    if shutil.which("fpcalc") is None:
        pytest.skip("fpcalc is not installed")
    audio = _music(5, 12.0)
    wav = tmp_path / "a.wav"
    write_wav(wav, audio, SR)
    raw = fingerprint_file(wav)
    assert raw.startswith("raw:")
    items = decode(raw)  # pure numpy: no libchromaprint involved
    assert len(items) > 16 and fingerprint_problem(raw) is None
    assert same_track(items, decode(fingerprint_audio(audio, SR)))


# ---------------------------------------------------------------- deterministic clips
def test_cutting_the_same_clip_twice_gives_identical_bytes(shared_media, tmp_path):
    src = shared_media / "videos" / "big_buck_bunny_0_30.webm"
    digests = {hashlib.sha256(cut_clip(src, tmp_path / f"c{i}.mp4", 2.0, 9.5, height=240).read_bytes()).hexdigest()
               for i in range(2)}
    assert len(digests) == 1


# ---------------------------------------------------------------- logit_scale
def test_logit_scale_is_clamped_after_the_step_not_in_forward():
    from yuyin_fixtures import FAKE_INDEX, fake_batch

    from yuyin.losses import LossWeights, yuyin_loss
    from yuyin.model import MAX_LOGIT_SCALE, YuYin, YuYinConfig

    torch.manual_seed(0)
    model = YuYin(YuYinConfig.from_index(FAKE_INDEX, hidden=16, embed_dim=8, heads=2))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(200.0))  # past the bound
    batch = fake_batch(music_ids=["m0", "m0", "m1", "m2", "m3", "m3"])
    loss, _ = yuyin_loss(model(batch), batch, LossWeights(1.0, 0.0, 0.0, 0.0))
    loss.backward()
    assert model.logit_scale.grad is not None and float(model.logit_scale.grad) != 0.0  # not stuck
    model.clamp_logit_scale()
    assert float(model.logit_scale.detach()) == pytest.approx(MAX_LOGIT_SCALE)


def test_a_label_failure_in_a_manifest_from_before_stage_columns_is_retried(one_clip, tmp_path):
    """The reporter's case: label had overwritten split's ok with failed, and no stage column existed."""
    old = tmp_path / "old.parquet"
    write_manifest([{"clip_id": "v-c000", "video_id": "v", "status": "failed", "error": "FileNotFoundError: gone"},
                    {"clip_id": "v-none", "video_id": "v", "status": "failed", "error": "MediaError: corrupt"}],
                   old, "clips")
    clip, none_row = read_manifest(old, "clips").to_pylist()  # the reader upgrades rows from before stage columns
    assert (clip["split_status"], clip["label_status"], clip["label_error"]) == ("ok", "failed", "FileNotFoundError: gone")
    assert (none_row["split_status"], none_row["split_error"], none_row["label_status"]) == \
        ("failed", "MediaError: corrupt", None)
    row = read_manifest(one_clip["manifest"], "clips").to_pylist()[0]
    for col in ("fetch_status", "split_status", "label_status"):
        row[col] = None
    row.update(status="failed", error="FileNotFoundError: gone")
    manifest = tmp_path / "c98k.parquet"
    write_manifest([row], manifest, "clips")
    args = ["label", "--manifest", str(manifest), "--data-root", str(one_clip["root"]), "--emotion-model", "none"]
    assert "failed before 1" in CliRunner().invoke(main, args).output
    retried = CliRunner().invoke(main, [*args, "--retry-failed"])
    assert "labelled 1, failed 0" in retried.output, retried.output
    after = read_manifest(manifest, "clips").to_pylist()[0]
    assert (after["status"], after["split_status"], after["label_status"]) == ("ok", "ok", "ok")


def test_the_trainer_and_evaluator_refuse_a_clip_without_music_id():
    from yuyin.data import DecodeSample, ShardError
    from yuyin.evaluate import track_gallery

    with pytest.raises(ShardError, match=r"train-000000.tar: clip c1 has no music_id"):
        DecodeSample()({"json": b'{"music_id": null, "category_id": 0}', "__key__": "c1",
                        "__url__": "shards/train/train-000000.tar"})
    with pytest.raises(ValueError, match="1 of 3 clips have no music_id"):
        track_gallery(np.ones((3, 4), np.float32), ["m-a", None, "m-a"])


def test_split_twice_gives_identical_clips_each_with_its_own_segment_and_has_music_agrees(shared_media, tmp_path):
    """Big Buck Bunny's first 30 s has two music segments (about 3.1-19.9 s and 24.7-30 s)."""
    from commercial98k.split.step import SplitConfig, SplitStep

    results = []
    for run in ("a", "b"):
        root = tmp_path / run
        (root / "videos").mkdir(parents=True)
        shutil.copy(shared_media / "videos" / "big_buck_bunny_0_30.webm", root / "videos" / "local-bbb.webm")
        step = SplitStep(SplitConfig(data_root=str(root), clip_seconds=10, min_clip_seconds=3, clip_files="encode"))
        item = {"video_id": "local-bbb", "video_path": "videos/local-bbb.webm", "status": "ok", "fetch_status": "ok"}
        results.append((root, step(item)))
    (root_a, a), (root_b, b) = results
    assert a["status"] == "ok" and len(a["rows"]) >= 2
    for ra, rb in zip(a["rows"], b["rows"], strict=True):
        assert (root_a / ra["clip_path"]).read_bytes() == (root_b / rb["clip_path"]).read_bytes()
        assert (ra["fetch_status"], ra["split_status"], ra["has_music"]) == ("ok", "ok", True)
        spans = [(s["start_s"], s["end_s"]) for s in ra["music_segments"]]
        assert (ra["music_start_s"], ra["music_end_s"]) == segment_of(ra["clip_start_s"], ra["clip_end_s"], spans)
        assert ra["music_start_s"] - 0.05 <= ra["clip_start_s"] and ra["clip_end_s"] <= ra["music_end_s"] + 0.05
    assert len({(r["music_start_s"], r["music_end_s"]) for r in a["rows"]}) == 2  # not all the main span
    # music found, but every segment shorter than --min-clip-seconds: no_music, and has_music says so too
    short = SplitStep(SplitConfig(data_root=str(root_b), clip_seconds=30, min_clip_seconds=20))(
        {"video_id": "local-bbb", "status": "ok", "video_path": "videos/local-bbb.webm"})
    row = short["rows"][0]
    assert row["music_segments"] and "shorter than --min-clip-seconds" in row["error"]
    assert (row["status"], row["split_status"], row["has_music"]) == ("no_music", "no_music", False)


def test_silent_audio_is_reported_as_silent_not_as_a_low_music_score(tmp_path):
    from commercial98k.split import plan_video

    video = tmp_path / "quiet.mkv"
    subprocess.run([ffmpeg_bin(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=5",
                    "-f", "lavfi", "-i", "aevalsrc=0.00003*sin(2*PI*440*t):s=16000:d=5",
                    "-c:v", "libx264", "-c:a", "pcm_s16le", str(video)], check=True)
    s = plan_video(video)
    assert s.status == "no_music"
    assert s.error.startswith("no background music detected (audio is silent (max -9"), s.error
