"""`c98k label` end to end on a tiny clips manifest cut from the real shared videos."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from commercial98k.label.extractors import LabelConfig, extract_clip_features, models_for
from commercial98k.manifest.io import read_manifest, write_manifest
from commercial98k.manifest.schema import validate_table
from commercial98k.media.ffmpeg_io import ffmpeg_bin
from commercial98k.models.emotion_head import train_head
from commercial98k.storage.feature_store import FeatureStore
from pipelines.cli import main
from pipelines.label import LabelOptions, run_label

pytestmark = pytest.mark.usefixtures("shared_models")  # one musicnn / EfficientNet / text encoder per session


def _rows() -> list[dict]:
    common = {"platform": "local", "clip_index": 0, "status": "ok"}
    return [
        dict(common, video_id="local-bbb", clip_id="local-bbb-c000", title="Big Buck Bunny 兔子 玩具 #toys",
             platform_tags=["kids", "动画"], category="mother_baby", video_path="videos/local-bbb.mkv",
             duration_s=33.0, clip_start_s=8.5, clip_end_s=14.5),
        dict(common, video_id="local-demo", clip_id="local-demo-c000", title="新款口红 持久显色 #口红 #makeup",
             platform_tags=["Lip Stick", "美妆"], category="cosmetics", clip_path="clips/local-demo-c000.mp4",
             duration_s=36.0, clip_start_s=0.0, clip_end_s=8.0),
        dict(common, video_id="local-bad", clip_id="local-bad-c000", title="broken upload", category="food",
             clip_path="clips/local-bad-c000.mp4", duration_s=10.0, clip_start_s=0.0, clip_end_s=10.0),
        dict(common, video_id="local-mute", clip_id="local-mute-c000", title="silent", category="food",
             status="no_audio", error="no audio stream"),
    ]


@pytest.fixture(scope="module")
def labelled(shared_media, tmp_path_factory):
    """A data root with two real clips, one corrupt clip and one not-ok row, labelled once."""
    tmp = tmp_path_factory.mktemp("label")
    root, manifest = tmp / "data", tmp / "manifests" / "c98k.parquet"
    (root / "videos").mkdir(parents=True)
    (root / "clips").mkdir()
    shutil.copy(shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv", root / "videos" / "local-bbb.mkv")
    subprocess.run([ffmpeg_bin(), "-loglevel", "error", "-i", str(shared_media / "videos" / "videollava_sample_demo_22.mp4"),
                    "-t", "8", "-c", "copy", str(root / "clips" / "local-demo-c000.mp4")], check=True)
    (root / "clips" / "local-bad-c000.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    write_manifest(_rows(), manifest, "clips")

    # A real (small) emotion head for these audio embeddings, fitted on generated labels.
    models = models_for(LabelConfig(emotion_model="none"))
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(4, models.audio.dim)) for _ in range(12)]
    head = train_head(seqs, models.audio.info.tag(), gems=rng.dirichlet(np.ones(9), size=12), l2=1.0)
    head_path = head.save(tmp / "emotion_head.npz")

    config = LabelConfig(weights=(("emotion", str(head_path)),), batch_size=8)
    counts = run_label(manifest, root, config, LabelOptions(clips_per_batch=2), progress=False)
    return {"root": root, "manifest": manifest, "config": config, "counts": counts, "head": head_path}


def _by_id(manifest: Path) -> dict[str, dict]:
    return {r["clip_id"]: r for r in read_manifest(manifest, "clips").to_pylist()}


def test_features_written_and_rows_valid(labelled):
    assert labelled["counts"]["labelled"] == 2 and labelled["counts"]["failed"] == 1
    table = read_manifest(labelled["manifest"], "clips")
    assert validate_table(table) == []
    rows, store = _by_id(labelled["manifest"]), FeatureStore(labelled["root"])
    prov = models_for(labelled["config"]).provenance()
    for cid, seconds in (("local-bbb-c000", 6.0), ("local-demo-c000", 8.0)):
        r = rows[cid]
        assert r["status"] == "ok" and r["error"] is None
        assert {k: r[k] for k in prov} == prov and all(prov.values())
        audio, frames = store.get(r["audio_embedding"]), store.get(r["frame_embedding"])
        tags = store.get(r["tag_embedding"])
        assert audio.shape[1] == 200 and audio.shape[0] == int(seconds // 3)  # musicnn: one row per 3 s
        assert frames.shape[1] == 1280 and abs(frames.shape[0] - seconds) <= 1  # 1 fps
        assert tags.shape == (len(r["tags"]), 512)
        np.testing.assert_allclose(np.linalg.norm(tags, axis=1), 1.0, atol=1e-4)
        assert -1 <= r["valence"] <= 1 and -1 <= r["arousal"] <= 1
        probs = dict(r["emotion_probs"])
        assert abs(sum(probs.values()) - 1) < 1e-3 and r["emotion"] == max(probs, key=probs.get)
        assert 0 <= r["category_confidence"] <= 1
        assert r["music_tags"] and all(t == t.lower() for t in r["music_tags"])
    demo = rows["local-demo-c000"]
    assert demo["tags"][:2] == ["lipstick", "makeup"]
    assert demo["predicted_category"] == "cosmetics" and demo["category_confidence"] > 0.5
    assert {"kids", "toy"} <= set(rows["local-bbb-c000"]["tags"])


def test_stored_frames_match_the_recommend_path(labelled, shared_media):
    """`extract_clip_features` on the same span gives the stored features (float16 storage aside)."""
    rows, store = _by_id(labelled["manifest"]), FeatureStore(labelled["root"])
    r = rows["local-bbb-c000"]
    feats = extract_clip_features(labelled["root"] / r["video_path"], r["clip_start_s"], r["clip_end_s"],
                                  models_for(labelled["config"]))
    np.testing.assert_allclose(feats["frames"], store.get(r["frame_embedding"]), rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(feats["audio"], store.get(r["audio_embedding"]), rtol=2e-2, atol=2e-2)
    silent = extract_clip_features(shared_media / "videos" / "pyscenedetect_testvideo.mp4", 0, 3,
                                   models_for(labelled["config"]), with_audio=False)
    assert silent["audio"] is None and silent["frames"].shape == (3, 1280)


def test_corrupt_clip_fails_with_a_clear_error_and_others_are_untouched(labelled):
    rows = _by_id(labelled["manifest"])
    bad = rows["local-bad-c000"]
    assert bad["status"] == "failed"
    assert bad["error"].startswith("MediaError: ") and "local-bad-c000.mp4" in bad["error"]
    assert "\n" not in bad["error"] and bad["audio_embedding"] is None
    mute = rows["local-mute-c000"]
    assert mute["status"] == "no_audio" and mute["audio_model"] is None and mute["tags"] is None


def test_rerun_skips_everything(labelled):
    before = labelled["manifest"].read_bytes()
    result = CliRunner().invoke(main, ["label", "--manifest", str(labelled["manifest"]), "--data-root",
                                       str(labelled["root"]), "--weights", f"emotion={labelled['head']}",
                                       "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert "labelled 0, failed 0, already labelled 2" in result.output
    assert labelled["manifest"].read_bytes() == before


def test_missing_feature_file_is_recomputed(labelled):
    rows, store = _by_id(labelled["manifest"]), FeatureStore(labelled["root"])
    frames_file = labelled["root"] / rows["local-demo-c000"]["frame_embedding"]
    frames_file.unlink()
    counts = run_label(labelled["manifest"], labelled["root"], labelled["config"], progress=False)
    assert counts["labelled"] == 1 and counts["skipped"] == 1
    assert frames_file.is_file() and store.get(rows["local-demo-c000"]["frame_embedding"]).shape[1] == 1280


def test_bad_flags_and_unavailable_models_are_one_line_errors(labelled):
    args = ["label", "--manifest", str(labelled["manifest"]), "--data-root", str(labelled["root"])]
    bad = CliRunner().invoke(main, args + ["--weights", "nonsense"])
    assert bad.exit_code == 2 and "KIND=PATH" in bad.output
    unknown = CliRunner().invoke(main, args + ["--audio-model", "nope", "--emotion-model", "none"])
    assert unknown.exit_code == 1 and "unknown audio model 'nope'" in unknown.output
    assert "musicnn" in unknown.output
    missing = CliRunner().invoke(main, args + ["--weights", f"emotion={labelled['root']}/none.npz"])
    assert missing.exit_code == 1 and "none.npz" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    if importlib.util.find_spec("open_clip") is None:
        clip = CliRunner().invoke(main, args + ["--frame-model", "clip", "--emotion-model", "none"])
        assert clip.exit_code == 1 and "open_clip_torch" in clip.output


@pytest.mark.slow
@pytest.mark.ray
def test_ray_engine_gives_the_same_features(labelled, ray_driver, tmp_path):
    """The label stage on the session's Ray cluster (its actors) writes what the local engine wrote."""
    root, manifest = tmp_path / "data", tmp_path / "c98k.parquet"
    shutil.copytree(labelled["root"], root, ignore=shutil.ignore_patterns("features"))
    write_manifest(_rows(), manifest, "clips")
    counts = run_label(manifest, root, labelled["config"], engine="ray", workers=2, progress=False)
    assert counts["labelled"] == 2 and counts["failed"] == 1
    local, remote = _by_id(labelled["manifest"]), _by_id(manifest)
    assert validate_table(read_manifest(manifest, "clips")) == []
    for cid in ("local-bbb-c000", "local-demo-c000"):
        for col in ("audio_embedding", "frame_embedding", "tag_embedding"):
            assert remote[cid][col] == local[cid][col]
            np.testing.assert_allclose(FeatureStore(root).get(remote[cid][col]),
                                       FeatureStore(labelled["root"]).get(local[cid][col]), atol=2e-2)
        assert remote[cid]["tags"] == local[cid]["tags"] and remote[cid]["emotion"] == local[cid]["emotion"]
    assert remote["local-bad-c000"]["status"] == "failed"
