"""musicnn (Pons & Serra 2019) in PyTorch, with the weights of the ``musicnn`` 0.1.0 wheel.

The wheel ships TF1 checkpoints (``musicnn/<model>/.index`` + ``.data-00000-of-00001``);
``tf_checkpoint`` reads them without TensorFlow. The network re-implements
``musicnn/models.py::build_musicnn`` layer by layer:

* input: log-mel patches [B, 187, 96] (3 s at 16 kHz, n_fft 512, hop 256, Slaney mel,
  ``log10(10000 x + 1)`` of the float16 power spectrogram, as ``extractor.batch_data``);
* front-end: batch norm, timbral convs (7x38, 7x67; time padded by 3, valid) and temporal
  convs (128x1, 64x1, 32x1 with TF 'same' padding), each ReLU -> BN -> max over frequency;
* mid-end: three 1-D convs (kernel 7, 64 filters) over the 561 front-end channels with
  residual connections; dense concat of front-end + the three outputs (753 channels);
* back-end: max and mean over time (interleaved per channel, as TF flattens [753, 2]),
  BN -> dense(200) ReLU -> BN (the *penultimate* layer) -> dense(n_tags) -> sigmoid.

Batch norm runs in inference mode with the checkpoint's moving statistics (eps 1e-3).

Models: ``MSD_musicnn`` (default), ``MTT_musicnn`` and the ``MSD_vgg`` / ``MTT_vgg`` baselines
(five 3x3 conv blocks; their ``penultimate`` is the flattened pool5, 256-d).

Embedding layers (``layer=``): ``penultimate`` (default, 200-d: the ReLU+BN dense layer before
the tagger, musicnn's own ``penultimate`` feature; Essentia publishes the same dense layer
before its ReLU as its musicnn embedding; compact and genre/mood-discriminative), ``max_pool`` / ``mean_pool`` (753-d temporal pooling of the
mid-end), ``pool`` (both, 1506-d) or ``taggram`` (the n_tags probabilities). One row per 3 s
patch; patches hop by ``hop_s`` (default: 187 frames = 2.992 s, as musicnn); a trailing
remainder shorter than a patch is dropped (as musicnn), audio shorter than one patch is
repeat-padded (musicnn's training-time ``pad_short``).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from commercial98k.storage.files import sha256_file

from .onnx_runtime import onnx_module
from .registry import AUDIO, ModelInfo, check_device
from .tf_checkpoint import read_checkpoint, read_index
from .weights import WeightsUnavailable, package_file

WHEEL = "musicnn"
WHEEL_VERSION = "0.1.0"
MODELS = ("MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg")
SR = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
BN_EPS = 1e-3


# ---------------------------------------------------------------- log-mel input
def hz_to_mel(freqs: np.ndarray) -> np.ndarray:
    """Slaney mel scale (linear below 1 kHz, logarithmic above), as librosa with htk=False."""
    freqs = np.asarray(freqs, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    mels = freqs / f_sp
    high = freqs >= min_log_hz
    return np.where(high, min_log_mel + np.log(np.maximum(freqs, 1e-10) / min_log_hz) / logstep, mels)


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of ``hz_to_mel``."""
    mels = np.asarray(mels, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Slaney-normalised triangular mel filters [n_mels, 1 + n_fft // 2] (librosa.filters.mel)."""
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """musicnn's input representation of mono 16 kHz audio: [frames, 96] float32."""
    y = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    spec = torch.stft(y, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, pad_mode="reflect",
                      return_complex=True).abs().pow(2)
    mel = torch.from_numpy(mel_filterbank()) @ spec  # [96, frames]
    mel16 = mel.T.numpy().astype(np.float16)  # musicnn stores the spectrogram as float16
    return np.log10(10000 * mel16.astype(np.float32) + 1)


def patches(rep: np.ndarray, hop_frames: int, n_frames: int = PATCH_FRAMES) -> np.ndarray:
    """Split [frames, 96] into [N, n_frames, 96] patches every ``hop_frames`` (musicnn batch_data)."""
    if rep.shape[0] < n_frames:  # repeat-pad short inputs to one patch
        rep = np.tile(rep, (-(-n_frames // max(rep.shape[0], 1)), 1))[:n_frames]
    starts = range(0, rep.shape[0] - n_frames + 1, hop_frames)
    return np.stack([rep[s:s + n_frames] for s in starts])


# ---------------------------------------------------------------- network
class _BN(nn.BatchNorm1d):
    """Inference batch norm over the last axis (TF ``batch_normalization`` default axis=-1)."""

    def __init__(self, n: int):
        super().__init__(n, eps=BN_EPS)

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The inference-time affine map ``x * scale + shift``."""
        scale = self.weight / torch.sqrt(self.running_var + self.eps)
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * (x.dim() - 1) + [-1]
        scale, shift = self.scale_shift()
        return x * scale.view(shape) + shift.view(shape)

    def max_over_freq(self, h: torch.Tensor) -> torch.Tensor:
        """``max_F(BN(ReLU(h)))`` of a conv output [B, C, T, F] -> [B, T, C], without the big maps.

        ReLU and a per-channel affine are monotone, so the max commutes with them: take the
        max (or, where the BN scale is negative, the min) over F first, then ReLU and BN.
        """
        lo, hi = torch.aminmax(h, dim=3)
        scale, shift = self.scale_shift()
        picked = torch.where(scale[None, :, None] >= 0, hi, lo).clamp_min(0)
        return (picked * scale[None, :, None] + shift[None, :, None]).transpose(1, 2)


class MusicnnNet(nn.Module):
    """``build_musicnn`` with 1.6x front-end filters, ``midend`` filters and ``backend`` units."""

    TEMPORAL = (128, 64, 32)

    def __init__(self, n_tags: int = 50, n_mels: int = N_MELS, midend: int = 64, backend: int = 200):
        super().__init__()
        timbral = (int(0.4 * n_mels), int(0.7 * n_mels))
        nt, ns = int(1.6 * 128), int(1.6 * 32)
        self.bn_in = _BN(1)
        self.timbral = nn.ModuleList(nn.Conv2d(1, nt, (7, w)) for w in timbral)
        self.bn_timbral = nn.ModuleList(_BN(nt) for _ in timbral)
        self.temporal = nn.ModuleList(nn.Conv2d(1, ns, (k, 1)) for k in self.TEMPORAL)
        self.bn_temporal = nn.ModuleList(_BN(ns) for _ in self.TEMPORAL)
        front = nt * len(timbral) + ns * len(self.TEMPORAL)
        self.mid = nn.ModuleList(nn.Conv1d(c, midend, 7) for c in (front, midend, midend))
        self.bn_mid = nn.ModuleList(_BN(midend) for _ in range(3))
        self.pooled_dim = front + 3 * midend
        self.dims = {"penultimate": backend, "max_pool": self.pooled_dim, "mean_pool": self.pooled_dim,
                     "pool": 2 * self.pooled_dim}
        self.bn_pool = _BN(2 * self.pooled_dim)
        self.dense = nn.Linear(2 * self.pooled_dim, backend)
        self.bn_dense = _BN(backend)
        self.out = nn.Linear(backend, n_tags)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: log-mel patches [B, T, n_mels] -> penultimate, max_pool, mean_pool, logits."""
        x = self.bn_in(x.unsqueeze(-1)).squeeze(-1).unsqueeze(1)  # [B, 1, T, F]
        feats = []
        padded = F.pad(x, (0, 0, 3, 3))
        for conv, bn in zip(self.timbral, self.bn_timbral, strict=True):
            feats.append(bn.max_over_freq(conv(padded)))  # [B, T, C]
        for conv, bn, k in zip(self.temporal, self.bn_temporal, self.TEMPORAL, strict=True):
            feats.append(bn.max_over_freq(conv(F.pad(x, (0, 0, (k - 1) // 2, k // 2)))))  # TF 'same'

        front = torch.cat(feats, dim=2)  # [B, T, 561]
        outs = [front]
        h = front.transpose(1, 2)  # [B, C, T]
        for i, (conv, bn) in enumerate(zip(self.mid, self.bn_mid, strict=True)):
            y = bn(F.relu(conv(F.pad(h, (3, 3)))).transpose(1, 2)).transpose(1, 2)
            h = y if i == 0 else y + h
            outs.append(h.transpose(1, 2))
        mid = torch.cat(outs, dim=2)  # [B, T, 753]
        max_pool, mean_pool = mid.amax(dim=1), mid.mean(dim=1)
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF flatten of [753, 2]
        penultimate = self.bn_dense(F.relu(self.dense(self.bn_pool(flat))))
        return {"penultimate": penultimate, "max_pool": max_pool, "mean_pool": mean_pool,
                "logits": self.out(penultimate)}


class VggNet(nn.Module):
    """musicnn's ``vgg`` baseline: five 3x3 conv (128) -> ReLU -> BN -> max-pool blocks, dense."""

    POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))

    def __init__(self, n_tags: int = 50, filters: int = 128, n_frames: int = PATCH_FRAMES, n_mels: int = N_MELS):
        super().__init__()
        self.bn_in = _BN(1)
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else filters, filters, 3, padding=1) for i in range(5))
        self.bns = nn.ModuleList(_BN(filters) for _ in range(5))
        h, w = n_frames, n_mels
        for (ph, pw), (sh, sw) in self.POOLS:
            h, w = (h - ph) // sh + 1, (w - pw) // sw + 1
        self.dims = {"penultimate": h * w * filters}
        self.out = nn.Linear(h * w * filters, n_tags)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: log-mel patches [B, T, n_mels] -> flattened pool5 ('penultimate') and logits."""
        h = self.bn_in(x.unsqueeze(-1)).permute(0, 3, 1, 2)  # [B, 1, T, F]
        for conv, bn, (pool, stride) in zip(self.convs, self.bns, self.POOLS, strict=True):
            h = bn(F.relu(conv(h)).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            h = F.max_pool2d(h, pool, stride)
        flat = h.permute(0, 2, 3, 1).flatten(1)  # TF flattens channels-last
        return {"penultimate": flat, "logits": self.out(flat)}


def _vgg_tf_to_torch(ckpt: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map the vgg checkpoint (``1CNN``..``5CNN``, ``batch_normalization[_i]``, ``dense``) to ``VggNet``."""
    state: dict[str, torch.Tensor] = {}
    for i, name in enumerate(["bn_in"] + [f"bns.{j}" for j in range(5)]):
        tf = "batch_normalization" + (f"_{i}" if i else "")
        for ours, theirs in _BN_NAMES:
            state[f"{name}.{ours}"] = _t(ckpt[f"{tf}/{theirs}"])
    for j in range(5):
        state[f"convs.{j}.weight"] = _t(ckpt[f"{j + 1}CNN/kernel"].transpose(3, 2, 0, 1))
        state[f"convs.{j}.bias"] = _t(ckpt[f"{j + 1}CNN/bias"])
    state["out.weight"], state["out.bias"] = _t(ckpt["dense/kernel"].T), _t(ckpt["dense/bias"])
    return state


_BN_NAMES = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance"))


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _tf_to_torch(ckpt: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map TF variable names (creation order in ``build_musicnn``) to ``MusicnnNet`` parameters."""
    bns = ["bn_in", "bn_timbral.0", "bn_timbral.1", "bn_temporal.0", "bn_temporal.1", "bn_temporal.2",
           "bn_mid.0", "bn_mid.1", "bn_mid.2", "bn_pool", "bn_dense"]
    convs = ["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2", "mid.0", "mid.1", "mid.2"]
    state: dict[str, torch.Tensor] = {}
    t = _t
    for i, name in enumerate(bns):
        tf = "batch_normalization" + (f"_{i}" if i else "")
        for ours, theirs in _BN_NAMES:
            state[f"{name}.{ours}"] = t(ckpt[f"{tf}/{theirs}"])
    for i, name in enumerate(convs):
        tf = "conv2d" + (f"_{i}" if i else "")
        kernel = ckpt[f"{tf}/kernel"]  # HWIO
        if name.startswith("mid"):
            state[f"{name}.weight"] = t(kernel[:, :, 0, :].transpose(2, 1, 0))  # [out, in=W, k=H]
        else:
            state[f"{name}.weight"] = t(kernel.transpose(3, 2, 0, 1))
        state[f"{name}.bias"] = t(ckpt[f"{tf}/bias"])
    for name, tf in (("dense", "dense"), ("out", "dense_1")):
        state[f"{name}.weight"] = t(ckpt[f"{tf}/kernel"].T)
        state[f"{name}.bias"] = t(ckpt[f"{tf}/bias"])
    return state


def tag_names(model: str) -> list[str]:
    """The tagger's labels, read from the wheel's ``configuration.py`` without importing it."""
    source = package_file(WHEEL, "configuration.py").read_text()
    key = "MSD_LABELS" if model.startswith("MSD") else "MTT_LABELS"
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(tg, "id", None) == key for tg in node.targets):
            return list(ast.literal_eval(node.value))
    raise WeightsUnavailable(f"{key} not found in musicnn/configuration.py")


def checkpoint_prefix(model: str, weights: str | Path | None = None) -> str:
    """Checkpoint prefix: ``weights`` (a folder or prefix), else the wheel's ``musicnn/<model>/``."""
    base = Path(weights) if weights is not None else package_file(WHEEL, model)
    prefix = f"{base}/" if base.is_dir() else str(base)
    if not Path(prefix + ".index").is_file():
        raise WeightsUnavailable(f"musicnn {model}: no checkpoint index at {prefix}.index")
    return prefix


class MusicnnEmbedder:
    """musicnn as an ``AudioEmbedder``: one embedding row and one tag row per 3 s patch."""

    sample_rate = SR

    def __init__(self, model: str = "MSD_musicnn", layer: str = "penultimate", hop_s: float | None = None,
                 device: str = "cpu", batch_size: int = 32, weights: str | Path | None = None,
                 runtime: str | None = None):
        device = check_device(device)  # before any weights are read
        if model not in MODELS:
            raise ValueError(f"unknown musicnn model {model!r}; choose one of {MODELS}")
        vgg = model.endswith("_vgg")
        prefix = checkpoint_prefix(model, weights)
        self.model_name, self.layer, self.batch_size = model, layer, batch_size
        self.tag_names = tag_names(model)
        self.device = torch.device(device)
        self.net: MusicnnNet | VggNet = (VggNet if vgg else MusicnnNet)(n_tags=len(self.tag_names))
        dims = {**self.net.dims, "taggram": len(self.tag_names)}
        if layer not in dims:
            raise ValueError(f"unknown musicnn layer {layer!r} for {model}; choose one of {tuple(dims)}")
        self.dim = dims[layer]
        self.net.load_state_dict(_load_state(prefix, vgg))
        self.net.eval().requires_grad_(False).to(self.device)
        self.hop_frames = PATCH_FRAMES if hop_s is None else max(1, round(hop_s * SR / HOP))
        self.hop_s = self.hop_frames * HOP / SR
        self.patch_s = PATCH_FRAMES * HOP / SR
        data = Path(prefix + ".data-00000-of-00001")
        name = f"musicnn-{model}" + ("" if layer == "penultimate" else f"-{layer}")
        if self.hop_frames != PATCH_FRAMES:  # a different time grid is a different feature
            name += f"-hop{self.hop_s:.3f}"
        self.info = ModelInfo(name, WHEEL_VERSION, sha256_file(data))
        # On CPU the same network runs on onnxruntime (about 2x cheaper; onnx_runtime.py).
        self.outputs = ("penultimate", "logits") if vgg else ("penultimate", "max_pool", "mean_pool", "logits")
        example = torch.randn(2, PATCH_FRAMES, N_MELS, generator=torch.Generator().manual_seed(0))
        self.onnx = onnx_module(_Outputs(self.net, self.outputs), example, f"musicnn-{model}", self.outputs, runtime,
                                self.device)

    @torch.inference_mode()
    def forward_patches(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """All outputs for mono 16 kHz ``audio``: penultimate, max_pool, mean_pool, taggram [N, *]."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"musicnn expects non-empty mono audio, got shape {audio.shape}")
        if audio.size <= N_FFT // 2:  # too short to reflect-pad: repeat it (musicnn's pad_short)
            audio = np.tile(audio, -(-(N_FFT // 2 + 1) // audio.size))
        batch = patches(log_mel(audio), self.hop_frames)
        outs: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(batch), self.batch_size):
            if self.onnx is not None:
                step = dict(zip(self.outputs, self.onnx.run(batch[i:i + self.batch_size]), strict=True))
            else:
                x = torch.from_numpy(batch[i:i + self.batch_size]).to(self.device)
                step = {k: v.cpu().numpy() for k, v in self.net(x).items()}
            for k, v in step.items():
                outs.setdefault(k, []).append(v)
        res = {k: np.concatenate(v).astype(np.float32) for k, v in outs.items()}
        res["taggram"] = 1.0 / (1.0 + np.exp(-res.pop("logits")))
        return res

    def _select(self, res: dict[str, np.ndarray]) -> np.ndarray:
        if self.layer == "pool":
            return np.concatenate([res["max_pool"], res["mean_pool"]], axis=1)
        return res[self.layer]

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """Frame-level embeddings [T, dim] of mono float32 audio at 16 kHz."""
        return self._select(self.forward_patches(audio))

    def tags(self, audio: np.ndarray) -> np.ndarray:
        """Tag probabilities [T, n_tags] (columns in ``tag_names`` order)."""
        return self.forward_patches(audio)["taggram"]

    def embed_and_tag(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(embed(audio), tags(audio))`` from a single forward pass."""
        res = self.forward_patches(audio)
        return self._select(res), res["taggram"]


class _Outputs(nn.Module):
    """The network's dict of outputs as a tuple (``names`` in order), as one exportable module."""

    def __init__(self, net: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.net, self.names = net, names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(x)
        return tuple(out[k] for k in self.names)


@functools.lru_cache(maxsize=4)
def _load_state(prefix: str, vgg: bool = False) -> dict[str, torch.Tensor]:
    """Model variables of a checkpoint (crc-verified, optimizer slots skipped), cached per prefix."""
    names = [k for k in read_index(prefix + ".index")[0] if "Adam" not in k and not k.endswith("_power")]
    ckpt = read_checkpoint(prefix, names)
    return _vgg_tf_to_torch(ckpt) if vgg else _tf_to_torch(ckpt)


@AUDIO.register("musicnn")
def create_musicnn(model: str = "MSD_musicnn", layer: str = "penultimate", hop_s: float | None = None,
                   device: str = "cpu", batch_size: int = 32, weights: str | Path | None = None,
                   runtime: str | None = None) -> MusicnnEmbedder:
    """Factory for ``AUDIO.create("musicnn", ...)``."""
    return MusicnnEmbedder(model=model, layer=layer, hop_s=hop_s, device=device, batch_size=batch_size,
                           weights=weights, runtime=runtime)
