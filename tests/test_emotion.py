"""Emotion data sets, the gems-head and `c98k emotion` (generated data + the real Emotify excerpts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from input_cache import cache_folder, code_files, content_key

from commercial98k.label import emotion_training as stage
from commercial98k.label.emotion_data import (
    GEMS9,
    EmotionDataError,
    EmotionDataset,
    EmotionItem,
    load_deam,
    load_emotify,
    load_pmemo,
)
from commercial98k.models.emotion_head import (
    BUNDLED,
    GEMS_VA,
    EmotionHeadError,
    GemsHead,
    train_head,
    va_of_gems,
)
from commercial98k.models.registry import AUDIO, EMOTION, ModelInfo
from commercial98k.storage.files import sha256_file

# ---- loaders -------------------------------------------------------------------------------

def test_emotify_loader_aggregates_votes(shared_media: Path) -> None:
    root = shared_media / "emotify"
    ds = load_emotify(root)
    ratings = pd.read_csv(root / "ratings.csv")
    manual = ratings.groupby("file")[list(GEMS9)].mean()
    assert len(ds) == 160 and ds.classes == GEMS9 and ds.has_gems and not ds.has_va
    assert sorted(pd.Series(ds.groups()).value_counts().tolist()) == [40, 40, 40, 40]
    for it in ds:
        row = manual.loc[f"audio/{it.item_id}.mp3"].to_numpy()
        np.testing.assert_allclose(it.shares, row)
        assert ((it.shares >= 0) & (it.shares <= 1)).all()
        # shares sum to the mean number of emotions a rating chose; gems is normalised to 1
        chosen = ratings.loc[ratings["file"] == f"audio/{it.item_id}.mp3", list(GEMS9)].sum(axis=1).mean()
        assert it.shares.sum() == pytest.approx(chosen)
        np.testing.assert_allclose(it.gems, row / row.sum())
        assert it.n_ratings == (ratings["file"] == f"audio/{it.item_id}.mp3").sum()
        assert it.audio_path.is_file()


def test_emotify_original_layout_track_id_and_genre_folders(shared_media: Path, tmp_path: Path) -> None:
    """Emotify as distributed: ``data.csv`` with ``track id`` + ``genre`` (no ``file``), audio in
    ``<genre>/<n>.mp3`` with n = 1..100 within the genre (ids 101-200 rock, 201-300 electronic ...)."""
    shared = load_emotify(shared_media / "emotify")
    ratings = pd.read_csv(shared_media / "emotify" / "ratings.csv")
    keep = ratings[ratings["track id"].isin([1, 2, 101, 102, 201, 301, 340])].drop(columns=["file"])
    keep.to_csv(tmp_path / "data.csv", index=False)
    for tid, genre in keep.groupby("track id")["genre"].first().items():
        n = (tid - 1) % 100 + 1
        (tmp_path / genre).mkdir(exist_ok=True)
        (tmp_path / genre / f"{n}.mp3").symlink_to(shared_media / "emotify" / "audio" / f"{genre}_{n}.mp3")
    ds = load_emotify(tmp_path)
    assert sorted(it.item_id for it in ds) == ["classical_1", "classical_2", "electronic_1", "pop_1", "pop_40",
                                               "rock_1", "rock_2"]
    assert (tmp_path / "rock" / "2.mp3") in [it.audio_path for it in ds]
    same = {it.item_id: it for it in shared}
    for it in ds:  # the same soft labels as the shared layout's copy of the track
        np.testing.assert_allclose(it.gems, same[it.item_id].gems)
        assert it.group == same[it.item_id].group and it.n_ratings == same[it.item_id].n_ratings
    (tmp_path / "pop" / "40.mp3").unlink()
    with pytest.raises(EmotionDataError, match="audio file"):
        load_emotify(tmp_path)


def test_emotify_malformed_files_name_file_and_column(tmp_path: Path) -> None:
    cols = ["track id", "genre", *GEMS9, "file"]
    good = [1, "pop", *([0] * 9), "audio/pop_1.mp3"]
    pd.DataFrame([good], columns=cols).drop(columns=["tension"]).to_csv(tmp_path / "ratings.csv", index=False)
    with pytest.raises(EmotionDataError, match=r"ratings\.csv: missing column 'tension'"):
        load_emotify(tmp_path)
    bad = list(good)
    bad[2 + GEMS9.index("power")] = 2
    pd.DataFrame([good, bad], columns=cols).to_csv(tmp_path / "ratings.csv", index=False)
    with pytest.raises(EmotionDataError, match=r"column 'power' row 3"):
        load_emotify(tmp_path)


def _touch(paths) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def test_pmemo_loader_rescales_and_skips_missing_audio(tmp_path: Path) -> None:
    root = tmp_path / "PMEmo2019"
    (root / "annotations").mkdir(parents=True)
    csv = root / "annotations" / "static_annotations.csv"
    csv.write_text("musicId,Arousal(mean),Valence(mean)\n1,0.0,1.0\n4,0.5,0.25\n7,1.0,0.5\n")
    _touch([root / "chorus" / "1.mp3", root / "chorus" / "4.mp3"])
    ds = load_pmemo(root)
    assert [it.item_id for it in ds] == ["1", "4"] and ds.has_va and not ds.has_gems
    np.testing.assert_allclose(ds.va_matrix(), [[1.0, -1.0], [-0.5, 0.0]])
    assert ds[0].audio_path == root / "chorus" / "1.mp3"
    assert len(load_pmemo(root, require_audio=False)) == 3
    csv.write_text("musicId,Arousal(mean),Valence(mean)\n1,0.2,oops\n")
    with pytest.raises(EmotionDataError, match=r"static_annotations\.csv: column 'Valence\(mean\)' row 2"):
        load_pmemo(root)
    csv.write_text("musicId,Arousal(mean),Valence(mean)\n1,1.5,0.5\n")
    with pytest.raises(EmotionDataError, match=r"column 'Arousal\(mean\)' row 2: 1.5 outside"):
        load_pmemo(root)
    csv.write_text("musicId,Arousal(mean)\n1,0.5\n")
    with pytest.raises(EmotionDataError, match=r"missing column 'Valence\(mean\)'"):
        load_pmemo(root)


def test_deam_loader_concatenates_both_files(tmp_path: Path) -> None:
    song_level = tmp_path / "DEAM_Annotations" / "annotations" / "annotations averaged per song" / "song_level"
    song_level.mkdir(parents=True)
    header = "song_id, valence_mean, valence_std, arousal_mean, arousal_std\n"  # DEAM's spaces after commas
    (song_level / "static_annotations_averaged_songs_1_2000.csv").write_text(
        header + "2, 3.1, 0.94, 3, 0.63\n3, 9, 1.1, 1, 0.9\n")
    (song_level / "static_annotations_averaged_songs_2000_2058.csv").write_text(header + "2001, 5, 1, 7, 1\n")
    audio = tmp_path / "DEAM_audio" / "MEMD_audio"
    _touch([audio / "2.mp3", audio / "3.mp3", audio / "2001.mp3"])
    ds = load_deam(tmp_path)
    assert [it.item_id for it in ds] == ["2", "3", "2001"]
    np.testing.assert_allclose(ds.va_matrix(), [[-0.475, -0.5], [1.0, -1.0], [0.0, 0.5]])
    (song_level / "static_annotations_averaged_songs_2000_2058.csv").write_text("song_id, valence_mean\n1, 5\n")
    with pytest.raises(EmotionDataError, match=r"2000_2058\.csv: missing column 'arousal_mean'"):
        load_deam(tmp_path)


# ---- the head on generated features --------------------------------------------------------

def _separable(n: int = 90, dim: int = 24, frames: int = 12, seed: int = 0) -> tuple[EmotionDataset, list]:
    """Items whose embeddings sit around a per-class centroid; soft labels peaked on that class."""
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(9, dim))
    items, seqs = [], []
    for i in range(n):
        k = i % 9
        p = np.full(9, 0.3 / 8)
        p[k] = 0.7
        seqs.append((centroids[k] + rng.normal(scale=1.5, size=(frames, dim))).astype(np.float32))
        items.append(EmotionItem(item_id=f"x{i}", audio_path=Path(f"/nonexistent/x{i}.wav"), gems=p, group=f"g{i % 3}"))
    return EmotionDataset("generated", items, GEMS9), seqs


def test_head_learns_separable_features_under_cv() -> None:
    ds, seqs = _separable()
    res = stage.cross_validate(ds, seqs, "fake 1 000000000000", window_frames=6, n_folds=5, seed=0, progress=False)
    human = ds.gems_matrix()
    accuracy = np.mean(res.probs["head"].argmax(1) == human.argmax(1))
    assert accuracy > 0.6  # chance is 1/9
    rows = {m: v for m, _, v in stage.cv_metrics(res)}
    assert rows["cross-entropy"]["head"] < rows["cross-entropy"]["mean"]
    assert rows["r share (mean of 9)"]["head"] > 0.5
    assert "head/mean" in stage.format_table(stage.cv_metrics(res))


def test_save_load_round_trip_is_exact_and_deterministic(tmp_path: Path) -> None:
    ds, seqs = _separable(n=36)
    head = train_head(seqs, "fake 1 000000000000", gems=ds.gems_matrix(), window_frames=6, seed=3)
    again = train_head(seqs, "fake 1 000000000000", gems=ds.gems_matrix(), window_frames=6, seed=3)
    assert head.to_bytes() == again.to_bytes()
    path = head.save(tmp_path / "head.npz")
    loaded = EMOTION.create("gems-head", path=path)
    assert isinstance(loaded, GemsHead)
    assert loaded.info == ModelInfo("gems-head", loaded.info.version, sha256_file(path)) == head.info
    for name in ("feat_mean", "feat_std", "weight", "bias"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(head, name))
    assert loaded.classes == head.classes and loaded.meta == head.meta
    assert loaded.predict_batch(seqs[:5]) == head.predict_batch(seqs[:5])
    pred = loaded.predict(seqs[0])
    assert set(pred) == {"valence", "arousal", "emotion", "probs"}
    assert sum(pred["probs"].values()) == pytest.approx(1.0)
    assert pred["emotion"] == max(pred["probs"], key=pred["probs"].get)
    vec = loaded.to_vector(pred)
    assert vec.shape == (11,) and vec.dtype == np.float32


def test_head_refuses_other_embeddings(tmp_path: Path) -> None:
    ds, seqs = _separable(n=18)
    head = train_head(seqs, "fake 1 000000000000", gems=ds.gems_matrix(), l2=0.1)
    with pytest.raises(EmotionHeadError, match="dim 25.*expects dim 24"):
        head.predict(np.zeros((10, 25), np.float32))
    with pytest.raises(EmotionHeadError, match="trained on audio model 'fake 1 000000000000'"):
        head.predict(seqs[0], audio_model=ModelInfo("other", "2", "ab" * 32))
    path = head.save(tmp_path / "h.npz")
    with pytest.raises(EmotionHeadError, match="not 'other 2 ababababab"):
        EMOTION.create("gems-head", path=path, audio_model=ModelInfo("other", "2", "ab" * 32))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(EmotionHeadError, match="junk.npz: not an emotion head file"):
        GemsHead.load(tmp_path / "junk.npz")


def test_va_mapping_orders_joy_above_sadness(shared_media: Path) -> None:
    joyful = np.full(9, 0.02)
    joyful[GEMS9.index("joyful_activation")] = 0.84
    sad = np.full(9, 0.02)
    sad[GEMS9.index("sadness")] = 0.84
    v_joy, a_joy = va_of_gems(joyful, GEMS9)
    v_sad, a_sad = va_of_gems(sad, GEMS9)
    assert v_joy > v_sad and a_joy > a_sad
    # on the human votes: the most joyful-voted track vs the most sadness-voted one
    ds = load_emotify(shared_media / "emotify")
    human = ds.gems_matrix()
    va = va_of_gems(human, ds.classes)
    j, s = human[:, GEMS9.index("joyful_activation")].argmax(), human[:, GEMS9.index("sadness")].argmax()
    assert va[j, 0] > va[s, 0] and va[j, 1] > va[s, 1]
    assert (np.abs(va) <= 1).all() and set(GEMS_VA) == set(GEMS9)


def test_va_only_head_regresses_and_reports_quadrants() -> None:
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(2, 16))
    va = rng.uniform(-0.9, 0.9, size=(60, 2))
    seqs = [(v @ mix + rng.normal(scale=0.3, size=(8, 16))).astype(np.float32) for v in va]
    head = train_head(seqs, "fake 1 000000000000", va=va)
    preds = head.predict_batch(seqs)
    got = np.array([[p["valence"], p["arousal"]] for p in preds])
    assert np.corrcoef(got[:, 0], va[:, 0])[0, 1] > 0.8 and np.corrcoef(got[:, 1], va[:, 1])[0, 1] > 0.8
    assert head.classes == ("happy", "tense", "sad", "calm")
    for p in preds:
        assert sum(p["probs"].values()) == pytest.approx(1.0)
    happy = [p for p, v in zip(preds, va, strict=True) if v[0] > 0.5 and v[1] > 0.5]
    assert happy and all(p["emotion"] == "happy" for p in happy)


# ---- the CLI on real audio with a small test audio model ------------------------------------

class _BandEnergies:
    """Test-only audio model: log energy in 16 FFT bands per 1-s frame (keeps the CLI test fast)."""

    sample_rate, dim, hop_s = 16000, 16, 1.0
    info = ModelInfo("test-bands", "1", "0" * 64)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        frames = audio[: len(audio) // 16000 * 16000].reshape(-1, 16000)
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        return np.log1p(np.stack([b.sum(1) for b in np.array_split(power, 16, axis=1)], axis=1)).astype(np.float32)


AUDIO.register("test-bands")(lambda device="cpu": _BandEnergies())


def test_cli_train_and_evaluate_on_emotify_subset(shared_media: Path, tmp_path: Path) -> None:
    from pipelines.cli import main

    emotify = shared_media / "emotify"
    ratings = pd.read_csv(emotify / "ratings.csv")
    keep = [f"audio/{g}_{i}.mp3" for g in ("classical", "rock", "electronic", "pop") for i in (1, 2, 3)]
    subset = ratings[ratings["file"].isin(keep)].copy()
    subset["file"] = [str(emotify / f) for f in subset["file"]]  # absolute: read in place
    (tmp_path / "emo").mkdir()
    subset.to_csv(tmp_path / "emo" / "ratings.csv", index=False)
    cache, out = tmp_path / "cache", tmp_path / "head.npz"
    args = ["--dataset", "emotify", "--path", str(tmp_path / "emo"), "--audio-model", "test-bands",
            "--seconds", "20", "--cache-dir", str(cache)]
    result = CliRunner().invoke(main, ["emotion", "train", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    head = GemsHead.load(out)
    assert head.audio_model == _BandEnergies.info.tag() and head.window_frames == 20 and head.meta["items"] == 12
    assert len(list(cache.rglob("*.npy"))) == 12
    plot = tmp_path / "shares.png"
    result = CliRunner().invoke(main, ["emotion", "evaluate", *args, "--folds", "3", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "head/mean" in result.output and "top-1 = majority emotion" in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = CliRunner().invoke(main, ["emotion", "train", "--dataset", "pmemo", "--path", str(tmp_path / "emo"),
                                       "--audio-model", "test-bands", "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 1 and "error:" in result.output and "static_annotations.csv" in result.output


# ---- musicnn on the real excerpts -----------------------------------------------------------

BUNDLED_EXCERPT = (20.0, 20.0)  # the bundled head's settings: the middle 20 s of each excerpt, one 20-s window


#: The code an excerpt's embedding depends on: decoding, the model, the cache's item names.
EMBEDDING_CODE = code_files("commercial98k/media/ffmpeg_io.py", "commercial98k/models/musicnn.py",
                            "commercial98k/models/tf_checkpoint.py", "commercial98k/models/onnx_runtime.py",
                            "commercial98k/models/weights.py", "commercial98k/label/emotion_training.py",
                            "commercial98k/label/emotion_data.py")


@pytest.fixture(scope="module")
def musicnn_emotify(shared_media: Path):
    """musicnn embeddings of the middle 20 s of each of the 160 Emotify excerpts.

    Cached across runs (``input_cache``; a cold run embeds for 1-2 minutes) under a key of the
    model's weights checksum, the embedding code and the excerpts, so a change to any of them
    embeds afresh."""
    if "musicnn" not in AUDIO.names():
        pytest.skip("musicnn audio model not available")
    emotify = shared_media / "emotify"
    ds = stage.with_excerpt(load_emotify(emotify), BUNDLED_EXCERPT)
    model = AUDIO.create("musicnn")
    key = content_key(model.info.key(), BUNDLED_EXCERPT, files=[*EMBEDDING_CODE, emotify / "ratings.csv"],
                      stamps=sorted((emotify / "audio").iterdir()))
    ds, seqs = stage.embed_dataset(ds, model, cache_folder("emotify-musicnn", key), progress=False)
    assert len(ds) == 160
    return ds, seqs, model


def test_musicnn_bundled_head_settings_beat_mean_and_genre_mean_under_cv(musicnn_emotify) -> None:
    """5-fold CV, each track in one fold: the head beats the mean distribution and the per-genre
    mean (an oracle that knows the genre) on KL and top-1, and its predictions vary across tracks."""
    ds, seqs, model = musicnn_emotify
    head = EMOTION.create("gems-head")
    assert head.meta.get("excerpt") == list(BUNDLED_EXCERPT) and head.meta["items"] == 160
    window = stage.window_frames_for(head.meta["window_s"], model.hop_s)
    res = stage.cross_validate(ds, seqs, model.info.tag(), window, n_folds=5, seed=0, progress=False)
    rows = {m: v for m, _, v in stage.cv_metrics(res)}
    for ref in ("mean", "group mean"):
        assert rows["KL(human || pred)"]["head"] < rows["KL(human || pred)"][ref], ref
        assert rows["top-1 = majority emotion"]["head"] > rows["top-1 = majority emotion"][ref], ref
    assert rows["distinct top-1 emotions"]["head"] >= 3
    assert rows["spread / human spread"]["head"] > 0.3
    assert rows["r share (mean of 9)"]["head"] > 0.3
    # valence and arousal follow the GEMS shares they summarise
    assert rows["r valence"]["head"] > 0.3 and rows["r arousal"]["head"] > 0.3


def test_bundled_head_matches_musicnn(musicnn_emotify) -> None:
    ds, seqs, model = musicnn_emotify
    if not BUNDLED.is_file():
        pytest.fail(f"bundled head {BUNDLED} is missing")
    head = EMOTION.create("gems-head", audio_model=model.info)
    assert head.audio_dim == model.dim and head.classes == GEMS9
    preds = head.predict_batch(seqs, model.info)
    probs = np.array([[p["probs"][c] for c in GEMS9] for p in preds])
    # in-sample (it was trained on these tracks): its shares must follow the human ones
    human = ds.gems_matrix()
    r = [np.corrcoef(probs[:, j], human[:, j])[0, 1] for j in range(9)]
    assert np.mean(r) > 0.3
    assert len({p["emotion"] for p in preds}) >= 3 and probs.max() > 0.3  # not one class, not uniform


def test_cli_train_and_evaluate_va_dataset(tmp_path: Path) -> None:
    """PMEmo format end to end on generated audio: tone pitch follows valence, noise level arousal."""
    from commercial98k.media.ffmpeg_io import write_wav
    from pipelines.cli import main

    root = tmp_path / "PMEmo2019"
    rng = np.random.default_rng(0)
    rows = ["musicId,Arousal(mean),Valence(mean)"]
    t = np.arange(16000 * 6) / 16000
    for i in range(1, 25):
        arousal, valence = rng.uniform(0.05, 0.95, size=2)
        tone = 0.3 * np.sin(2 * np.pi * (200 + 3000 * valence) * t)
        noise = (0.01 + 0.2 * arousal) * rng.normal(size=t.size)
        write_wav(root / "chorus" / f"{i}.wav", tone + noise, 16000)
        rows.append(f"{i},{arousal:.4f},{valence:.4f}")
    (root / "annotations").mkdir()
    (root / "annotations" / "static_annotations.csv").write_text("\n".join(rows) + "\n")
    args = ["--dataset", "pmemo", "--path", str(root), "--audio-model", "test-bands", "--seconds", "0",
            "--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "va.npz"
    result = CliRunner().invoke(main, ["emotion", "train", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    head = GemsHead.load(out)
    assert head.classes == ("happy", "tense", "sad", "calm") and head.va_weight is not None
    result = CliRunner().invoke(main, ["emotion", "evaluate", *args, "--folds", "4"])
    assert result.exit_code == 0, result.output
    r = {line.split()[1]: float(line.split()[3]) for line in result.output.splitlines() if line.startswith("r ")}
    assert r["valence"] > 0.5 and r["arousal"] > 0.5
