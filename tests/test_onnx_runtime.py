"""Models on onnxruntime (CPU): the same function as torch, exported once per weights, checked before use."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from commercial98k.engine.threads import restored_thread_limits, set_worker_threads
from commercial98k.media import ffmpeg_io as media
from commercial98k.models import onnx_runtime
from commercial98k.models.onnx_runtime import RuntimeUnavailable, onnx_module
from commercial98k.models.registry import AUDIO, FRAMES

TRAILER = "videos/big_buck_bunny_trailer_480p.mkv"


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("C98K_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def test_efficientnet_on_onnxruntime_gives_torchs_features(shared_media):
    frames = media.load_frames(shared_media / TRAILER, fps=2.0, size=224, start_s=9.0, duration_s=3.0)
    ort_model = FRAMES.create("efficientnet-lite0", runtime="onnxruntime", batch_size=1)
    torch_model = FRAMES.create("efficientnet-lite0", runtime="torch", batch_size=1)
    assert ort_model.onnx is not None and torch_model.onnx is None
    a, b = ort_model.embed_images(frames), torch_model.embed_images(frames)
    assert a.shape == b.shape == (len(frames), 1280) and a.dtype == np.float32
    assert _cosine(a, b).min() > 0.99999
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
    # the rabbit is still the rabbit: same top class from both runtimes
    assert (ort_model.classify(frames).argmax(1) == torch_model.classify(frames).argmax(1)).all()
    assert ort_model.info == torch_model.info  # the same function: one feature key


def test_musicnn_on_onnxruntime_gives_torchs_embeddings_and_tags(shared_media):
    audio = media.load_audio(shared_media / TRAILER, 16000)[: 16000 * 12]
    ort_model = AUDIO.create("musicnn", runtime="onnxruntime")
    torch_model = AUDIO.create("musicnn", runtime="torch")
    (ea, ta), (eb, tb) = ort_model.embed_and_tag(audio), torch_model.embed_and_tag(audio)
    assert ea.shape == eb.shape and ea.shape[0] == 4
    assert _cosine(ea, eb).min() > 0.99999
    np.testing.assert_allclose(ta, tb, atol=1e-4)
    assert ort_model.info == torch_model.info


def test_graph_is_exported_once_and_a_torn_file_is_replaced(cache):
    net, x = _small_net(), torch.randn(2, 3, 16, 16)
    first = onnx_module(net, x, "tiny", ("y",), runtime="onnxruntime")
    files = list(cache.glob("tiny-*.onnx"))
    assert first is not None and len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = onnx_module(net, x, "tiny", ("y",), runtime="onnxruntime")
    assert again.path == files[0] and files[0].stat().st_mtime_ns == stamp  # reused, not exported again
    files[0].write_bytes(b"not a graph")
    mended = onnx_module(net, x, "tiny", ("y",), runtime="onnxruntime")
    with torch.inference_mode():
        np.testing.assert_allclose(mended.run(x.numpy())[0], net(x).numpy(), rtol=1e-5, atol=1e-6)
    # other weights: another graph, never the stale one
    other = onnx_module(_small_net(seed=1), x, "tiny", ("y",), runtime="onnxruntime")
    assert other.path != files[0] and len(list(cache.glob("tiny-*.onnx"))) == 2


def test_a_graph_that_disagrees_with_torch_is_not_used(cache, monkeypatch, caplog):
    net, x = _small_net(), torch.randn(2, 3, 16, 16)
    monkeypatch.setattr(onnx_runtime.OnnxModule, "run", lambda self, a: [np.zeros((len(a), 8), np.float32)])
    with caplog.at_level(logging.WARNING, logger=onnx_runtime.__name__):
        assert onnx_module(net, x, "tiny", ("y",), runtime="auto") is None
    assert "differs from torch" in caplog.text and "running on torch" in caplog.text
    assert not list(cache.glob("tiny-*.onnx"))  # the bad graph is not kept
    with pytest.raises(RuntimeUnavailable, match="differs from torch"):
        onnx_module(net, x, "tiny", ("y",), runtime="onnxruntime")


def test_runtime_choice(cache, monkeypatch):
    net, x = _small_net(), torch.randn(1, 3, 16, 16)
    assert onnx_module(net, x, "tiny", ("y",), runtime="torch") is None
    assert onnx_module(net, x, "tiny", ("y",), runtime="auto", device="cuda") is None  # CUDA stays on torch
    with pytest.raises(RuntimeUnavailable, match="CPU only"):
        onnx_module(net, x, "tiny", ("y",), runtime="onnxruntime", device="cuda")
    with pytest.raises(ValueError, match="choose one of"):
        onnx_module(net, x, "tiny", ("y",), runtime="tensorrt")
    monkeypatch.setenv("C98K_RUNTIME", "torch")
    assert onnx_module(net, x, "tiny", ("y",)) is None
    assert not list(cache.glob("*.onnx"))


def test_sessions_take_the_workers_thread_share(cache):
    net, x = _small_net(), torch.randn(1, 3, 16, 16)
    with restored_thread_limits():
        set_worker_threads(1)
        one = onnx_module(net, x, "tiny", ("y",), runtime="onnxruntime")
        set_worker_threads(2)
        two = onnx_module(net, x, "tiny", ("y",), runtime="onnxruntime")
    assert one.session.get_session_options().intra_op_num_threads == 1
    assert two.session.get_session_options().intra_op_num_threads == 2
