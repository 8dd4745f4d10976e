"""musicnn in PyTorch with the wheel's TF1 weights: shapes, options, and real tagging behaviour.

Correctness is checked without TensorFlow on real Emotify excerpts: the taggers must put
genre tags where they belong and the embeddings must separate genres. Weights loaded into
the wrong layers, a transposed kernel or a wrong mel front end break these assertions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from commercial98k.media.ffmpeg_io import load_audio
from commercial98k.models.musicnn import (
    HOP,
    PATCH_FRAMES,
    SR,
    MusicnnEmbedder,
    checkpoint_prefix,
    log_mel,
    mel_filterbank,
    patches,
)
from commercial98k.models.registry import AUDIO, AudioEmbedder
from commercial98k.models.tf_checkpoint import read_checkpoint

GENRES = ("classical", "rock", "electronic", "pop")
PER_GENRE = 5
EXCERPT = (15.0, 12.0)  # start, duration in seconds: a 12 s slice of each 60 s excerpt


@pytest.fixture(scope="module")
def excerpts(shared_media: Path) -> dict[tuple[str, int], np.ndarray]:
    audio_dir = shared_media / "emotify" / "audio"
    return {(g, i): load_audio(audio_dir / f"{g}_{i}.mp3", SR, start_s=EXCERPT[0], duration_s=EXCERPT[1])
            for g in GENRES for i in range(1, PER_GENRE + 1)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def msd() -> MusicnnEmbedder:
    return AUDIO.create("musicnn", model="MSD_musicnn")


@pytest.fixture(scope="module")
def mtt() -> MusicnnEmbedder:
    return AUDIO.create("musicnn", model="MTT_musicnn")


@pytest.fixture(scope="module")
def outputs(excerpts: dict, msd: MusicnnEmbedder, mtt: MusicnnEmbedder) -> dict[str, dict]:
    """Per model: {excerpt: (mean embedding, {tag: mean probability})}, one forward pass each."""
    res: dict[str, dict] = {}
    for model in (msd, mtt):
        res[model.model_name] = {}
        for k, audio in excerpts.items():
            emb, tags = model.embed_and_tag(audio)
            res[model.model_name][k] = (emb.mean(axis=0), dict(zip(model.tag_names, tags.mean(axis=0).tolist(), strict=True)))
    return res


def _rank(scores: dict[str, float], tag: str) -> int:
    return sorted(scores, key=scores.get, reverse=True).index(tag)


def test_registry_and_protocol(msd: MusicnnEmbedder) -> None:
    assert isinstance(msd, AudioEmbedder)
    assert msd.sample_rate == 16000 and msd.dim == 200
    assert msd.info.name == "musicnn-MSD_musicnn" and msd.info.version == "0.1.0"
    assert len(msd.info.weights_sha256) == 64
    assert len(msd.tag_names) == 50 and "rock" in msd.tag_names
    assert abs(msd.hop_s - PATCH_FRAMES * HOP / SR) < 1e-9


def test_sequence_length_and_options(excerpts: dict) -> None:
    audio = excerpts[("rock", 1)][: 10 * SR]
    frames = 1 + len(audio) // HOP
    m = MusicnnEmbedder("MSD_musicnn", hop_s=1.0)
    assert m.info.name == "musicnn-MSD_musicnn-hop0.992" and m.hop_frames == 62
    emb = m.embed(audio)
    assert emb.shape == ((frames - PATCH_FRAMES) // m.hop_frames + 1, 200)
    assert emb.dtype == np.float32 and np.isfinite(emb).all()
    default = MusicnnEmbedder("MSD_musicnn").embed(audio)
    assert default.shape == ((frames - PATCH_FRAMES) // PATCH_FRAMES + 1, 200)
    # the first patch is the same whatever the hop
    np.testing.assert_allclose(emb[0], default[0], rtol=1e-4, atol=1e-4)
    short = m.embed(audio[: SR // 2])  # shorter than a patch: repeat-padded to one row
    assert short.shape == (1, 200)
    assert m.embed(audio[:100]).shape == (1, 200)  # even a few samples give one row
    with pytest.raises(ValueError, match="non-empty mono"):
        m.embed(np.zeros((2, 100), np.float32))
    for layer, dim in (("max_pool", 753), ("mean_pool", 753), ("pool", 1506), ("taggram", 50)):
        e = MusicnnEmbedder("MSD_musicnn", layer=layer)
        assert e.dim == dim and e.embed(audio[: 6 * SR]).shape == (2, dim)
    with pytest.raises(ValueError, match="unknown musicnn layer"):
        MusicnnEmbedder("MSD_musicnn", layer="nope")
    with pytest.raises(KeyError, match="unknown audio model"):
        AUDIO.create("nope")


def test_embed_and_tag_single_pass_matches(msd: MusicnnEmbedder, excerpts: dict) -> None:
    audio = excerpts[("pop", 2)]
    emb, tags = msd.embed_and_tag(audio)
    np.testing.assert_allclose(emb, msd.embed(audio), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tags, msd.tags(audio), rtol=1e-5, atol=1e-6)
    assert tags.shape == (emb.shape[0], 50) and ((tags >= 0) & (tags <= 1)).all()


def test_mel_filterbank_is_slaney() -> None:
    fb = mel_filterbank()
    assert fb.shape == (96, 257)
    assert (fb >= 0).all() and (fb.sum(axis=1) > 0).all()
    # Slaney normalisation: each triangle has unit area over Hz (height 2 / width)
    freqs = np.linspace(0, SR / 2, 257)
    areas = np.trapezoid(fb, freqs, axis=1)
    assert np.allclose(areas[10:], 1.0, rtol=0.1)  # wide enough bands integrate accurately
    peaks = freqs[fb.argmax(axis=1)]
    assert np.all(np.diff(peaks) >= 0)


def test_log_mel_scale_matches_the_training_statistics(excerpts: dict) -> None:
    """The input batch norm's moving stats record the log-mel level musicnn was trained on."""
    x = np.concatenate([log_mel(a) for a in excerpts.values()])
    for model in ("MSD_musicnn", "MTT_musicnn"):
        stats = read_checkpoint(checkpoint_prefix(model), ["batch_normalization/moving_mean",
                                                           "batch_normalization/moving_variance"])
        mean, var = stats["batch_normalization/moving_mean"][0], stats["batch_normalization/moving_variance"][0]
        # without the 1e4 gain the level collapses (mean ~0.07); a magnitude instead of a power
        # spectrogram halves the variance (~0.75)
        assert abs(x.mean() - mean) < 0.6, (model, x.mean(), mean)
        assert 0.67 < x.var() / var < 1.5, (model, x.var(), var)


def test_patches_follow_musicnn_batching() -> None:
    rep = np.arange(500 * 2, dtype=np.float32).reshape(500, 2)
    p = patches(rep, hop_frames=100)
    assert p.shape == ((500 - PATCH_FRAMES) // 100 + 1, PATCH_FRAMES, 2)
    np.testing.assert_array_equal(p[1], rep[100:100 + PATCH_FRAMES])


def test_mtt_tagger_puts_genre_tags_where_they_belong(outputs: dict) -> None:
    tags = {k: v[1] for k, v in outputs["MTT_musicnn"].items()}
    for i in range(1, PER_GENRE + 1):
        c, r, e = tags[("classical", i)], tags[("rock", i)], tags[("electronic", i)]
        assert _rank(c, "classical") < 3, f"classical_{i}: {sorted(c, key=c.get)[-5:]}"
        assert c["classical"] > c["rock"] and c["classical"] > c["techno"]
        assert min(_rank(r, "rock"), _rank(r, "guitar")) < 5, f"rock_{i}"
        assert max(r["rock"], r["guitar"]) > r["classical"]
        assert min(_rank(e, "techno"), _rank(e, "electronic")) < 3, f"electronic_{i}"
        assert max(e["techno"], e["electronic"]) > e["classical"]


def test_msd_tagger_puts_genre_tags_where_they_belong(outputs: dict) -> None:
    tags = {k: v[1] for k, v in outputs["MSD_musicnn"].items()}
    for i in range(1, PER_GENRE + 1):
        c, r, e = tags[("classical", i)], tags[("rock", i)], tags[("electronic", i)]
        assert _rank(c, "instrumental") < 3 and c["instrumental"] > c["rock"], f"classical_{i}"
        assert _rank(r, "rock") < 5 and r["rock"] > r["electronic"], f"rock_{i}"
        assert _rank(e, "electronic") < 2 and e["electronic"] > e["rock"], f"electronic_{i}"


def test_vgg_variant_tags_and_layers(excerpts: dict) -> None:
    vgg = AUDIO.create("musicnn", model="MTT_vgg")
    assert vgg.dim == 256 and vgg.info.name == "musicnn-MTT_vgg"
    for i in (1, 2, 3):
        c = dict(zip(vgg.tag_names, vgg.tags(excerpts[("classical", i)]).mean(axis=0), strict=True))
        e = dict(zip(vgg.tag_names, vgg.tags(excerpts[("electronic", i)]).mean(axis=0), strict=True))
        assert _rank(c, "classical") < 3 and c["classical"] > c["techno"], f"classical_{i}"
        assert min(_rank(e, "techno"), _rank(e, "electronic")) < 3 and e["techno"] > e["classical"], f"electronic_{i}"
    with pytest.raises(ValueError, match="unknown musicnn layer 'max_pool' for MTT_vgg"):
        MusicnnEmbedder("MTT_vgg", layer="max_pool")


@pytest.mark.parametrize("model_name", ["MSD_musicnn", "MTT_musicnn"])
def test_embeddings_separate_genres(model_name: str, outputs: dict) -> None:
    keys = list(outputs[model_name])
    x = np.stack([outputs[model_name][k][0] for k in keys])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.array([GENRES.index(k[0]) for k in keys])
    correct = 0
    for i in range(len(x)):  # nearest-centroid, leave-one-out
        rest = np.arange(len(x)) != i
        centroids = np.stack([x[rest & (y == g)].mean(axis=0) for g in range(len(GENRES))])
        correct += int(np.argmin(((centroids - x[i]) ** 2).sum(axis=1)) == y[i])
    assert correct / len(x) >= 0.55  # chance is 0.25


def test_runs_on_the_device_it_is_given(msd: MusicnnEmbedder, excerpts: dict) -> None:
    """A device string places weights and inputs; the embedding comes back as float32 numpy."""
    on_cpu0 = AUDIO.create("musicnn", model="MSD_musicnn", device="cpu:0")
    assert on_cpu0.device == torch.device("cpu:0")
    assert {p.device.type for p in on_cpu0.net.parameters()} == {"cpu"}
    audio = excerpts[("rock", 1)][: 4 * SR]
    emb = on_cpu0.embed(audio)
    assert type(emb) is np.ndarray and emb.dtype == np.float32
    np.testing.assert_allclose(emb, msd.embed(audio), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="not a torch device"):
        AUDIO.create("musicnn", model="MSD_musicnn", device="tpu", weights="/nonexistent/prefix")
