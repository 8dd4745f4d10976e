"""OpenL3 audio embeddings (Cramer et al. 2019) in PyTorch, loading the official Keras weights.

Matches ``marl/openl3`` 0.4 with its kapre front end (``openl3/models.py``, ``openl3/core.py``):

* audio at 48 kHz is cut into 1 s windows every ``hop_s`` (default 0.1 s); with ``center``
  the signal is first padded with 0.5 s of zeros so timestamps mark window centres, and the
  end is zero-padded so every sample is covered;
* front end per window: Hann-window STFT (``tf.signal.stft``, no centring) ->
  magnitude -> for ``mel128``/``mel256`` a Slaney mel filterbank (n_fft 2048, hop 242,
  ``pad_end``: 199 frames); for ``linear`` the 257 bins (n_fft 512, hop 242, 197 frames) ->
  ``10 log10(max(x, 1e-10))`` minus the window's maximum, floored at -80 dB (kapre 0.1.4
  semantics kept by openl3 0.4);
* network: batch norm, four blocks of two 3x3 'same' convs (64, 128, 256, 512 filters;
  conv -> BN -> ReLU), 2x2 max pools after the first three blocks, the last conv
  (``audio_embedding_layer``) without BN/ReLU, then a 'same' max pool sized for 6144 or 512
  dims and a channels-last flatten. Batch norm eps is Keras' 1e-3.

Weights: ``openl3_audio_<input_repr>_<content_type>.h5`` (Keras HDF5 weights, layers in
topological order; kernels HWIO). Looked up in ``weights=``, ``$C98K_OPENL3_WEIGHTS_DIR``,
the weights cache, then downloaded (gzipped) from the OpenL3 repository's ``models`` branch.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from commercial98k.storage.files import atomic_path, sha256_file

from .musicnn import mel_filterbank
from .registry import AUDIO, ModelInfo, check_device
from .weights import WeightsUnavailable, cache_dir, fetch_weights

SR = 48000
VERSION = "0.4.0"
INPUT_REPRS = ("linear", "mel128", "mel256")
CONTENT_TYPES = ("music", "env")
EMBEDDING_SIZES = (6144, 512)
N_HOP = 242
BN_EPS = 1e-3
FILTERS = (64, 128, 256, 512)
# openl3.models.AUDIO_POOLING_SIZES: (freq, time) max-pool of the last conv map
POOLING = {"linear": {6144: (8, 8), 512: (32, 24)}, "mel128": {6144: (4, 8), 512: (16, 24)},
           "mel256": {6144: (8, 8), 512: (32, 24)}}
MODELS_URL = "https://github.com/marl/openl3/raw/models/"
# The OpenL3 project publishes no checksums. Known values (mel256/music, as recorded and verified
# by an independent project pinning openl3 0.4.0) are checked; for the other files the first
# download is trusted, and ModelInfo records the sha256 of the .h5 actually used.
KNOWN_SHA256: dict[str, str] = {
    "openl3_audio_mel256_music-v0_4_0.h5.gz": "e379f41e880b78e157c199ebddac80d3764e6a46282bcccdbe875bcf538f9afd",
    "openl3_audio_mel256_music.h5": "624ee7b1dd5ff87e18073f66fd8b2052bebb8ac70210e9c0937c0c940c63e9d6",
}


def weights_filename(input_repr: str, content_type: str) -> str:
    """File name the openl3 package installs (``openl3/openl3_audio_<repr>_<type>.h5``)."""
    return f"openl3_audio_{input_repr}_{content_type}.h5"


# ---------------------------------------------------------------- front end
class Frontend(nn.Module):
    """kapre front end: [B, 48000] windows -> normalised dB spectrogram [B, 1, freq, time]."""

    def __init__(self, input_repr: str):
        super().__init__()
        self.input_repr = input_repr
        self.n_fft = 512 if input_repr == "linear" else 2048
        self.pad_end = input_repr != "linear"
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)
        if input_repr != "linear":
            mel = mel_filterbank(SR, self.n_fft, int(input_repr[3:]))
            self.register_buffer("mel", torch.from_numpy(mel), persistent=False)
        else:
            self.mel = None

    def n_frames(self, n_samples: int = SR) -> int:
        if self.pad_end:
            return -(-n_samples // N_HOP)
        return 1 + (n_samples - self.n_fft) // N_HOP

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.n_frames(x.shape[-1])
        if self.pad_end:  # tf.signal.stft(pad_end=True): zeros so that ceil(N / hop) frames fit
            x = F.pad(x, (0, (n - 1) * N_HOP + self.n_fft - x.shape[-1]))
        frames = x.unfold(-1, self.n_fft, N_HOP)[:, :n] * self.window  # [B, T, n_fft]
        spec = torch.fft.rfft(frames, dim=-1).abs()  # [B, T, n_fft/2+1] magnitude
        if self.mel is not None:
            spec = spec @ self.mel.T  # [B, T, n_mels]
        db = 10.0 * torch.log10(spec.clamp_min(1e-10))
        db = db - db.amax(dim=(1, 2), keepdim=True)
        return db.clamp_min(-80.0).transpose(1, 2).unsqueeze(1)  # [B, 1, freq, time]


# ---------------------------------------------------------------- network
class OpenL3Audio(nn.Module):
    """The L3 audio sub-network with its embedding max pool."""

    def __init__(self, input_repr: str = "mel256", embedding_size: int = 6144):
        super().__init__()
        if input_repr not in INPUT_REPRS:
            raise ValueError(f"unknown OpenL3 input_repr {input_repr!r}; choose one of {INPUT_REPRS}")
        if embedding_size not in EMBEDDING_SIZES:
            raise ValueError(f"unknown OpenL3 embedding_size {embedding_size}; choose one of {EMBEDDING_SIZES}")
        self.frontend = Frontend(input_repr)
        self.pool = POOLING[input_repr][embedding_size]
        self.bn_in = nn.BatchNorm2d(1, eps=BN_EPS)
        convs, bns, c_in = [], [], 1
        for f in FILTERS:
            for _ in range(2):
                convs.append(nn.Conv2d(c_in, f, 3, padding=1))
                bns.append(nn.BatchNorm2d(f, eps=BN_EPS))
                c_in = f
        self.convs = nn.ModuleList(convs)
        self.bns = nn.ModuleList(bns[:-1])  # the embedding conv has no batch norm

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """[B, 48000] audio windows -> [B, embedding_size]."""
        h = self.bn_in(self.frontend(windows))
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i == len(self.convs) - 1:
                break
            h = F.relu(self.bns[i](h))
            if i in (1, 3, 5):
                h = F.max_pool2d(h, 2, 2)
        ph, pw = self.pool
        H, W = h.shape[-2:]
        pad_h = max((-(-H // ph) - 1) * ph + ph - H, 0)
        pad_w = max((-(-W // pw) - 1) * pw + pw - W, 0)
        h = F.pad(h, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=float("-inf"))
        h = F.max_pool2d(h, (ph, pw), (ph, pw))
        return h.permute(0, 2, 3, 1).flatten(1)  # Keras flattens channels-last


# ---------------------------------------------------------------- Keras HDF5 weights
def _keras_layers(path: Path) -> list[tuple[str, dict[str, np.ndarray]]]:
    """``[(layer_name, {weight: array})]`` of the weighted layers, in the file's layer order."""
    import h5py

    out = []
    with h5py.File(path, "r") as f:
        root = f.get("model_weights", f)
        for raw in root.attrs["layer_names"]:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            group = root[name]
            weights = {}
            for wraw in group.attrs.get("weight_names", []):
                wname = wraw.decode() if isinstance(wraw, bytes) else str(wraw)
                weights[wname.split("/")[-1].split(":")[0]] = np.asarray(group[wname])
            if weights:
                out.append((name, weights))
    return out


def load_keras_weights(model: OpenL3Audio, path: str | Path) -> None:
    """Copy the conv/batch-norm weights of an official OpenL3 ``.h5`` into ``model``.

    Layers are matched in order (as Keras ``load_weights`` does); kapre spectrogram layers
    of older files are skipped; kernels go from HWIO to OIHW.
    """
    path = Path(path)
    convs = [(n, w) for n, w in _keras_layers(path) if set(w) == {"kernel", "bias"}]
    bns = [(n, w) for n, w in _keras_layers(path) if {"moving_mean", "moving_variance"} <= set(w)]
    targets_bn = [model.bn_in, *model.bns]
    if len(convs) != len(model.convs) or len(bns) != len(targets_bn):
        raise WeightsUnavailable(f"{path}: {len(convs)} conv / {len(bns)} batch-norm layers, expected "
                                 f"{len(model.convs)} / {len(targets_bn)} (not an OpenL3 audio model file?)")
    with torch.no_grad():
        for conv, (name, w) in zip(model.convs, convs, strict=True):
            kernel = torch.from_numpy(np.ascontiguousarray(w["kernel"].transpose(3, 2, 0, 1), dtype=np.float32))
            if kernel.shape != conv.weight.shape:
                raise WeightsUnavailable(f"{path}: layer {name} kernel {tuple(kernel.shape)}, "
                                         f"expected {tuple(conv.weight.shape)}")
            conv.weight.copy_(kernel)
            conv.bias.copy_(torch.from_numpy(w["bias"].astype(np.float32)))
        for bn, (name, w) in zip(targets_bn, bns, strict=True):
            if w["moving_mean"].shape != (bn.num_features,):
                raise WeightsUnavailable(f"{path}: layer {name} has {w['moving_mean'].shape[0]} channels, "
                                         f"expected {bn.num_features}")
            n = bn.num_features
            bn.weight.copy_(torch.from_numpy(w.get("gamma", np.ones(n)).astype(np.float32)))
            bn.bias.copy_(torch.from_numpy(w.get("beta", np.zeros(n)).astype(np.float32)))
            bn.running_mean.copy_(torch.from_numpy(w["moving_mean"].astype(np.float32)))
            bn.running_var.copy_(torch.from_numpy(w["moving_variance"].astype(np.float32)))


def _gunzip(src: Path, dst: Path) -> Path:
    with gzip.open(src, "rb") as fin, atomic_path(dst) as tmp:
        tmp.write_bytes(fin.read())
    return dst


def find_weights(input_repr: str, content_type: str, weights: str | Path | None = None,
                 download: bool = True) -> Path:
    """Local path of the official weights, downloading them on first use.

    Order: ``weights`` (an .h5/.h5.gz file or a folder), ``$C98K_OPENL3_WEIGHTS_DIR``, the
    weights cache, then the OpenL3 ``models`` branch. Raises ``WeightsUnavailable`` naming
    every place it looked.
    """
    name = weights_filename(input_repr, content_type)
    stem = name[:-3]
    gz_name = f"{stem}-v{VERSION.replace('.', '_')}.h5.gz"
    if weights is not None and Path(weights).is_file():
        p = Path(weights)
        return _gunzip(p, cache_dir() / "weights" / p.name[:-3]) if p.suffix == ".gz" else p
    if weights is not None and not Path(weights).is_dir():
        raise WeightsUnavailable(f"OpenL3 weights {weights}: no such file or folder")
    folders = [Path(weights)] if weights is not None else []
    if os.environ.get("C98K_OPENL3_WEIGHTS_DIR"):
        folders.append(Path(os.environ["C98K_OPENL3_WEIGHTS_DIR"]))
    folders.append(cache_dir() / "weights")
    for folder in folders:
        for candidate in (name, f"{stem}-v{VERSION.replace('.', '_')}.h5"):
            if (folder / candidate).is_file():
                return folder / candidate
        if (folder / gz_name).is_file():
            return _gunzip(folder / gz_name, cache_dir() / "weights" / name)
    looked = ", ".join(str(f) for f in folders)
    if not download:
        raise WeightsUnavailable(f"OpenL3 weights {name} not found (looked in {looked})")
    try:
        gz = fetch_weights(MODELS_URL + gz_name, KNOWN_SHA256.get(gz_name), filename=gz_name)
    except WeightsUnavailable as e:
        raise WeightsUnavailable(f"OpenL3 weights {name} not found (looked in {looked}) and {e}") from e
    path = _gunzip(gz, cache_dir() / "weights" / name)
    if name in KNOWN_SHA256 and sha256_file(path) != KNOWN_SHA256[name]:
        path.unlink()
        raise WeightsUnavailable(f"OpenL3 weights {name}: checksum mismatch after decompressing {gz}")
    return path


class OpenL3Embedder:
    """OpenL3 as an ``AudioEmbedder``: one row per 1 s window every ``hop_s`` seconds."""

    sample_rate = SR

    def __init__(self, input_repr: str = "mel256", content_type: str = "music", embedding_size: int = 6144,
                 hop_s: float = 0.1, center: bool = True, device: str = "cpu", batch_size: int = 32,
                 weights: str | Path | None = None, download: bool = True):
        device = check_device(device)  # before any weights are read or downloaded
        if content_type not in CONTENT_TYPES:
            raise ValueError(f"unknown OpenL3 content_type {content_type!r}; choose one of {CONTENT_TYPES}")
        if hop_s <= 0:
            raise ValueError(f"OpenL3 hop_s must be positive, got {hop_s}")
        self.net = OpenL3Audio(input_repr, embedding_size)
        path = find_weights(input_repr, content_type, weights, download=download)
        load_keras_weights(self.net, path)
        self.device = torch.device(device)
        self.net.eval().requires_grad_(False).to(self.device, memory_format=torch.channels_last)  # ~20% faster on CPU
        self.dim, self.hop_s, self.center, self.batch_size = embedding_size, hop_s, center, batch_size
        self.hop_samples = int(hop_s * SR)
        name = f"openl3-{input_repr}-{content_type}-{embedding_size}"
        if self.hop_samples != int(0.1 * SR) or not center:  # a different time grid is a different feature
            name += f"-hop{hop_s:g}" + ("" if center else "-nocenter")
        self.info = ModelInfo(name, VERSION, sha256_file(path))

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """Embeddings [T, dim] of mono float32 audio at 48 kHz (row t is centred at t * hop_s)."""
        return embed_audio(self.net, audio, self.hop_samples, self.center, self.batch_size, self.device)


def _pad_for_frames(audio: np.ndarray, hop_samples: int, center: bool, frame_len: int = SR) -> tuple[np.ndarray, int]:
    """openl3.core padding: 0.5 s of zeros in front (``center``), zeros at the end to cover every sample."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"OpenL3 expects non-empty mono audio, got shape {audio.shape}")
    if center:
        audio = np.pad(audio, (frame_len // 2, 0))
    n = audio.size
    pad = frame_len - n if n < frame_len else -(-(n - frame_len) // hop_samples) * hop_samples - (n - frame_len)
    if pad > 0:
        audio = np.pad(audio, (0, pad))
    return audio, 1 + (audio.size - frame_len) // hop_samples


def frame_audio(audio: np.ndarray, hop_samples: int, center: bool = True, frame_len: int = SR) -> np.ndarray:
    """All 1 s windows [N, frame_len] exactly as ``openl3.core._preprocess_audio_batch`` cuts them."""
    padded, count = _pad_for_frames(audio, hop_samples, center, frame_len)
    return padded[np.arange(frame_len)[None, :] + hop_samples * np.arange(count)[:, None]]


@torch.inference_mode()
def embed_audio(net: Callable[[torch.Tensor], torch.Tensor], audio: np.ndarray, hop_samples: int, center: bool = True,
                batch_size: int = 32, device: torch.device | str = "cpu") -> np.ndarray:
    """Run ``net`` over the windows of ``audio`` in batches (windows are cut per batch, not all at once)."""
    padded, count = _pad_for_frames(audio, hop_samples, center)
    signal = torch.from_numpy(padded)
    out = []
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        span = signal[start * hop_samples:(stop - 1) * hop_samples + SR]
        windows = span.unfold(0, SR, hop_samples)  # [stop - start, SR]
        out.append(net(windows.to(device)).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


@AUDIO.register("openl3")
def create_openl3(input_repr: str = "mel256", content_type: str = "music", embedding_size: int = 6144,
                  hop_s: float = 0.1, center: bool = True, device: str = "cpu", batch_size: int = 32,
                  weights: str | Path | None = None, download: bool = True) -> OpenL3Embedder:
    """Factory for ``AUDIO.create("openl3", ...)``; raises ``WeightsUnavailable`` without weights."""
    return OpenL3Embedder(input_repr=input_repr, content_type=content_type, embedding_size=embedding_size,
                          hop_s=hop_s, center=center, device=device, batch_size=batch_size,
                          weights=weights, download=download)
