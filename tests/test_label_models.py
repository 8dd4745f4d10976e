"""Frame and text models of `c98k label`: EfficientNet-Lite0, multilingual USE, CLIP's missing-dependency path."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from commercial98k.media import ffmpeg_io as media
from commercial98k.models.registry import FRAMES, TEXT
from commercial98k.models.weights import WeightsUnavailable
from commercial98k.storage.files import sha256_file

pytestmark = pytest.mark.usefixtures("shared_models")  # one musicnn / EfficientNet / text encoder per session

# ImageNet-1k classes 330 wood rabbit, 331 hare, 332 Angora rabbit.
RABBIT_CLASSES = {330, 331, 332}
TRAILER = "videos/big_buck_bunny_trailer_480p.mkv"


@pytest.fixture(scope="module")
def effnet():
    return FRAMES.create("efficientnet-lite0", batch_size=4)


@pytest.fixture(scope="module")
def use():
    return TEXT.create("use-multilingual")


def _frames(shared_media, start_s: float, duration_s: float = 1.0, fps: float = 2.0) -> np.ndarray:
    return media.load_frames(shared_media / TRAILER, fps=fps, size=224, start_s=start_s, duration_s=duration_s)


def test_efficientnet_recognises_the_rabbit(effnet, shared_media):
    # Checked by eye: Big Buck Bunny stands in a meadow, centred, at 9.5-11 s and 14-15 s of the
    # trailer; at 27-30 s the screen shows the film's title lettering (no animal).
    rabbit = np.concatenate([_frames(shared_media, 9.5, 1.5), _frames(shared_media, 14.0, 1.0)])
    title = _frames(shared_media, 27.5, 1.5)
    p_rabbit, p_title = effnet.classify(rabbit), effnet.classify(title)
    assert p_rabbit.shape == (len(rabbit), 1000)
    np.testing.assert_allclose(p_rabbit.sum(axis=1), 1.0, atol=1e-4)
    for row in p_rabbit:
        assert RABBIT_CLASSES & set(np.argsort(-row)[:5].tolist())
    assert np.mean([int(np.argmax(r)) in RABBIT_CLASSES for r in p_rabbit]) >= 0.5
    for row in p_title:
        assert not RABBIT_CLASSES & set(np.argsort(-row)[:5].tolist())


def test_efficientnet_embeddings_batched_like_single(effnet, shared_media):
    frames = _frames(shared_media, 9.5, 2.5)  # 5 frames, batch size 4: two batches
    emb = effnet.embed_images(frames)
    assert emb.shape == (len(frames), 1280) and emb.dtype == np.float32
    single = np.concatenate([effnet.embed_images(f[None]) for f in frames])
    np.testing.assert_allclose(emb, single, rtol=1e-3, atol=1e-3)
    # Any input size is resized to 224: a 2x upscaled frame embeds close to the original.
    big = np.repeat(np.repeat(frames[:1], 2, axis=1), 2, axis=2)
    cos = float(emb[0] @ effnet.embed_images(big)[0] / np.linalg.norm(emb[0]) / np.linalg.norm(effnet.embed_images(big)[0]))
    assert cos > 0.95
    assert effnet.embed_images(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 1280)
    with pytest.raises(ValueError, match="expected uint8 frames"):
        effnet.embed_images(np.zeros((2, 224, 224), np.uint8))


def test_efficientnet_provenance_and_bad_weights(effnet, tmp_path):
    from commercial98k.models.efficientnet import default_weights

    assert effnet.info.weights_sha256 == sha256_file(default_weights())
    assert effnet.info.tag().startswith("efficientnet-lite0 0.1.0 ")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailable, match="bad.pth: not a readable PyTorch state dict"):
        FRAMES.create("efficientnet-lite0", weights=bad)


def test_use_puts_translations_closer_than_unrelated_words(use):
    words = ["口红", "lipstick", "football", "足球", "咖啡", "coffee"]
    emb = use.embed_texts(words)
    assert emb.shape == (6, 512)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[1, 0] > sim[1, 3] + 0.2  # 口红~lipstick, not football
    assert sim[2, 3] > sim[2, 1] + 0.2  # football~足球
    assert sim[4, 5] > max(sim[4, 1], sim[4, 2])  # 咖啡~coffee
    # batching does not change embeddings; empty text is a zero vector
    np.testing.assert_allclose(use.embed_texts(["lipstick"])[0], emb[1], atol=1e-5)
    assert not use.embed_texts(["", "  "]).any()
    assert use.info.tag().startswith("use-multilingual 0.2.1 ")


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is not None, reason="open_clip is installed here")
def test_clip_without_open_clip_is_one_clear_error():
    with pytest.raises(WeightsUnavailable) as err:
        FRAMES.create("clip")
    msg = str(err.value)
    assert "open_clip_torch" in msg and "\n" not in msg


def test_efficientnet_runs_on_the_device_it_is_given(effnet, shared_media):
    """A device string (here a CPU one; `--device cuda` takes the same path) places the weights and
    the inputs; results come back as float32 numpy on the CPU, equal to the default model's."""
    import torch

    on_cpu0 = FRAMES.create("efficientnet-lite0", device="cpu:0", batch_size=4)
    assert on_cpu0.device == torch.device("cpu:0")
    assert {p.device.type for p in on_cpu0.net.parameters()} == {"cpu"}
    frames = _frames(shared_media, 9.5, 1.0)
    emb = on_cpu0.embed_images(frames)
    assert type(emb) is np.ndarray and emb.dtype == np.float32
    np.testing.assert_allclose(emb, effnet.embed_images(frames), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device, cause", [("tpu", "not a torch device"), ("meta", "not supported")])
def test_efficientnet_refuses_an_unusable_device_before_loading(device, cause, tmp_path):
    with pytest.raises(ValueError, match=cause):
        FRAMES.create("efficientnet-lite0", device=device, weights=tmp_path / "absent.pth")
