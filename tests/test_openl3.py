"""OpenL3 in PyTorch: front end, framing, Keras-HDF5 round trip, dims, and parity with the official model.

The official weights cannot be downloaded here; a synthetic file in the exact Keras layout
(random weights) goes through the real loader. The parity test runs wherever the official
weights are found and skips (saying where it looked) elsewhere.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from commercial98k.media.ffmpeg_io import load_audio, probe
from commercial98k.models.openl3 import (
    INPUT_REPRS,
    SR,
    Frontend,
    OpenL3Embedder,
    embed_audio,
    find_weights,
    frame_audio,
)
from commercial98k.models.registry import AUDIO, AudioEmbedder
from commercial98k.models.weights import WeightsUnavailable
from commercial98k.storage.files import sha256_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_keras_h5(path: Path, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Random OpenL3-shaped weights in Keras' HDF5 layout (with weightless layers in between)."""
    rng = np.random.default_rng(seed)
    layers: list[tuple[str, dict[str, np.ndarray]]] = [("input_1", {})]
    bn_i = conv_i = act_i = 0

    def bn(n: int) -> None:
        nonlocal bn_i
        bn_i += 1
        layers.append((f"batch_normalization_{bn_i}", {
            "gamma": rng.uniform(0.5, 1.5, n), "beta": rng.normal(0, 0.1, n),
            "moving_mean": rng.normal(0, 0.1, n), "moving_variance": rng.uniform(0.5, 2.0, n)}))

    bn(1)
    c_in = 1
    for block, f in enumerate((64, 128, 256, 512)):
        for j in range(2):
            conv_i += 1
            last = block == 3 and j == 1
            name = "audio_embedding_layer" if last else f"conv2d_{conv_i}"
            layers.append((name, {"kernel": rng.normal(0, math.sqrt(2 / (9 * c_in)), (3, 3, c_in, f)),
                                  "bias": rng.normal(0, 0.01, f)}))
            c_in = f
            if not last:
                bn(f)
                act_i += 1
                layers.append((f"activation_{act_i}", {}))
        if block < 3:
            layers.append((f"max_pooling2d_{block + 1}", {}))
    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = [n.encode() for n, _ in layers]
        h5.attrs["backend"] = b"tensorflow"
        for name, weights in layers:
            g = h5.create_group(name)
            g.attrs["weight_names"] = [f"{name}/{w}:0".encode() for w in weights]
            for w, value in weights.items():
                g.create_dataset(f"{name}/{w}:0", data=value.astype(np.float32))
    return dict(layers)


@pytest.fixture(scope="module")
def synthetic_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("openl3") / "openl3_audio_mel256_music.h5"
    return path, write_keras_h5(path)


def test_round_trip_through_the_real_loader(synthetic_weights: tuple[Path, dict]) -> None:
    path, layers = synthetic_weights
    m = AUDIO.create("openl3", input_repr="mel256", embedding_size=512, weights=path, hop_s=0.5)
    assert isinstance(m, AudioEmbedder)
    assert m.sample_rate == 48000 and m.dim == 512 and m.hop_s == 0.5
    assert m.info.name == "openl3-mel256-music-512-hop0.5" and len(m.info.weights_sha256) == 64
    net = m.net
    np.testing.assert_allclose(net.convs[0].weight.numpy(), layers["conv2d_1"]["kernel"].transpose(3, 2, 0, 1), rtol=1e-6)
    np.testing.assert_allclose(net.convs[7].bias.numpy(), layers["audio_embedding_layer"]["bias"], rtol=1e-6)
    np.testing.assert_allclose(net.bn_in.running_var.numpy(), layers["batch_normalization_1"]["moving_variance"], rtol=1e-6)
    np.testing.assert_allclose(net.bns[6].weight.numpy(), layers["batch_normalization_8"]["gamma"], rtol=1e-6)
    assert net.bn_in.eps == 1e-3


def test_broken_weight_files_and_missing_weights_fail_clearly(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = [b"conv2d_1"]
        g = h5.create_group("conv2d_1")
        g.attrs["weight_names"] = [b"conv2d_1/kernel:0", b"conv2d_1/bias:0"]
        g.create_dataset("conv2d_1/kernel:0", data=np.zeros((3, 3, 1, 64), np.float32))
        g.create_dataset("conv2d_1/bias:0", data=np.zeros(64, np.float32))
    with pytest.raises(WeightsUnavailable, match="1 conv / 0 batch-norm layers"):
        OpenL3Embedder(weights=path)
    with pytest.raises(WeightsUnavailable, match="no such file or folder"):
        OpenL3Embedder(weights=tmp_path / "missing.h5")
    monkeypatch.setenv("C98K_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("C98K_OFFLINE", "1")
    monkeypatch.setenv("C98K_OPENL3_WEIGHTS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(WeightsUnavailable) as err:
        AUDIO.create("openl3", input_repr="mel128", content_type="env")
    msg = str(err.value)
    assert "\n" not in msg and "openl3_audio_mel128_env.h5" in msg and "nowhere" in msg


def test_download_verify_and_cache(tmp_path: Path, monkeypatch) -> None:
    """The models-branch download path, served from a local folder (file:// URL)."""
    from commercial98k.models import openl3

    branch = tmp_path / "models"
    branch.mkdir()
    h5 = tmp_path / "w.h5"
    write_keras_h5(h5, seed=4)
    gz = branch / "openl3_audio_mel128_env-v0_4_0.h5.gz"
    gz.write_bytes(gzip.compress(h5.read_bytes()))
    monkeypatch.setattr(openl3, "MODELS_URL", branch.as_uri() + "/")
    monkeypatch.setenv("C98K_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("C98K_OFFLINE", raising=False)
    monkeypatch.delenv("C98K_OPENL3_WEIGHTS_DIR", raising=False)
    monkeypatch.setitem(openl3.KNOWN_SHA256, gz.name, "0" * 64)
    with pytest.raises(WeightsUnavailable, match="checksum mismatch"):
        find_weights("mel128", "env")
    monkeypatch.setitem(openl3.KNOWN_SHA256, gz.name, sha256_file(gz))
    path = find_weights("mel128", "env")
    assert path == tmp_path / "cache" / "weights" / "openl3_audio_mel128_env.h5"
    assert path.read_bytes() == h5.read_bytes()
    gz.unlink()  # later runs use the cache
    m = AUDIO.create("openl3", input_repr="mel128", content_type="env", embedding_size=512)
    assert m.info.weights_sha256 == sha256_file(h5)


@pytest.mark.parametrize("input_repr", INPUT_REPRS)
def test_dims_and_pooling_per_input_repr(input_repr: str, tmp_path: Path) -> None:
    path = tmp_path / f"openl3_audio_{input_repr}_env.h5"
    write_keras_h5(path, seed=1)
    audio = np.random.default_rng(2).normal(0, 0.1, int(0.3 * SR)).astype(np.float32)
    big = OpenL3Embedder(input_repr, "env", 6144, center=False, weights=path)
    small = OpenL3Embedder(input_repr, "env", 512, center=False, weights=path)
    e_big, e_small = big.embed(audio), small.embed(audio)
    assert e_big.shape == (1, 6144) and e_small.shape == (1, 512)
    assert np.isfinite(e_big).all()
    # 6144 = (4 x 3) cells x 512 channels flattened channels-last; 512 = the max over all cells
    np.testing.assert_allclose(e_big.reshape(4, 3, 512).max(axis=(0, 1)), e_small[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("input_repr", "bins", "frames"), [("linear", 257, 197), ("mel128", 128, 199), ("mel256", 256, 199)])
def test_frontend_shapes_and_normalisation(input_repr: str, bins: int, frames: int) -> None:
    t = np.arange(SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    spec = Frontend(input_repr)(torch.from_numpy(tone)[None])
    assert spec.shape == (1, 1, bins, frames)
    assert spec.max().item() == pytest.approx(0.0, abs=1e-5) and spec.min().item() >= -80.0
    peak = spec[0, 0, :, frames // 2].argmax().item()
    if input_repr == "linear":
        assert abs(peak - 1000 / (SR / 512)) <= 1
    else:  # the mel band whose centre is nearest 1 kHz
        from commercial98k.models.musicnn import hz_to_mel, mel_to_hz

        centres = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SR / 2), bins + 2))[1:-1]
        assert abs(peak - int(np.argmin(np.abs(centres - 1000)))) <= 1


@pytest.mark.parametrize(("seconds", "hop", "center"), [(2.0, 0.1, True), (0.3, 0.1, True), (3.3, 0.5, False), (1.0, 0.25, False)])
def test_framing_matches_openl3(seconds: float, hop: float, center: bool) -> None:
    n = int(seconds * SR)
    audio = np.zeros(n, np.float32)
    audio[n // 2] = 1.0  # an impulse in the middle
    frames = frame_audio(audio, int(hop * SR), center)
    padded = n + (SR // 2 if center else 0)  # openl3.core._get_num_windows
    expected = 1 if padded <= SR else 1 + math.ceil((padded - SR) / int(hop * SR))
    assert frames.shape == (expected, SR)
    offset = SR // 2 if center else 0
    for i, row in enumerate(frames):  # window i starts at i * hop (minus the centre padding)
        pos = n // 2 + offset - i * int(hop * SR)
        assert row.sum() == (1.0 if 0 <= pos < SR else 0.0)


def test_batched_windows_equal_the_full_framing() -> None:
    audio = np.random.default_rng(3).normal(size=int(2.35 * SR)).astype(np.float32)
    full = frame_audio(audio, 4800, center=True)
    probe = lambda w: w[:, ::997]  # noqa: E731  (a "network" that returns a sample of each window)
    for batch in (1, 3, 32):
        np.testing.assert_array_equal(embed_audio(probe, audio, 4800, True, batch_size=batch), full[:, ::997])


def _official() -> Path:
    try:
        return find_weights("mel256", "music", download=False)
    except WeightsUnavailable as e:
        pytest.skip(f"official OpenL3 weights not present: {e}")


@pytest.mark.parametrize("fixture", ["chirp_44k", "bento_audio"])
def test_parity_with_official_embeddings(fixture: str, shared_media: Path) -> None:
    weights = _official()
    ref = np.load(shared_media / "openl3" / f"{fixture}.npz")
    source = shared_media / "openl3" / ("chirp_44k.wav" if fixture == "chirp_44k" else "bento.mp4")
    audio = load_audio(source, SR)  # the official run resampled with resampy; ours is ffmpeg's
    if source.suffix == ".mp4":  # openl3 read video audio with moviepy: zero-filled to the container duration
        audio = np.pad(audio, (0, max(0, round(probe(source).duration_s * SR) - audio.size)))
    model = OpenL3Embedder("mel256", "music", 6144, hop_s=0.1, center=True, weights=weights)
    emb = model.embed(audio)
    assert emb.shape == ref["embedding"].shape
    np.testing.assert_allclose(np.arange(len(emb)) * model.hop_s, ref["timestamps"], atol=1e-6)
    cos = (emb * ref["embedding"]).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref["embedding"], axis=1))
    assert cos.min() > 0.99
    np.testing.assert_allclose(emb, ref["embedding"], rtol=0.05, atol=0.05 * np.abs(ref["embedding"]).max())


def test_device_string_places_weights_and_inputs(tmp_path: Path) -> None:
    """OpenL3 on an explicit device string: weights there, numpy float32 out; a bad device fails first."""
    path = tmp_path / "openl3_audio_mel128_env.h5"
    write_keras_h5(path, seed=5)
    audio = np.random.default_rng(6).normal(0, 0.1, int(1.5 * SR)).astype(np.float32)
    default = OpenL3Embedder("mel128", "env", 512, hop_s=0.5, weights=path)
    on_cpu0 = OpenL3Embedder("mel128", "env", 512, hop_s=0.5, device="cpu:0", weights=path)
    assert on_cpu0.device == torch.device("cpu:0")
    assert {p.device.type for p in on_cpu0.net.parameters()} == {"cpu"}
    emb = on_cpu0.embed(audio)
    assert type(emb) is np.ndarray and emb.dtype == np.float32
    np.testing.assert_allclose(emb, default.embed(audio), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not a torch device"):
        OpenL3Embedder(device="tpu", weights=tmp_path / "missing.h5")  # before the missing file is noticed
