"""Run a model's torch module through onnxruntime on CPU: exported once per weights, then cached.

On a CPU core, onnxruntime runs EfficientNet-Lite0 and musicnn about twice as fast as torch
eager at batch 1 (22 vs 50 ms a frame; 0.56 vs 1.27 s for ten 3-s musicnn patches; features
equal to cosine 0.9999998; ``benchmarks/compare.py``, label row). The graph is exported from the
very module torch would run (weights loaded, batch norms folded), so both runtimes compute the
same function. The file lives in ``cache_dir()/onnx/<name>-<digest>.onnx``; the digest covers
the module's class, its parameters and buffers, and the torch version, so a changed model never
reuses a stale graph. After export the graph is checked against torch on the example input; a
graph that disagrees is not used (a warning names the model and the gap).

``runtime``: ``"auto"`` (onnxruntime on CPU when ``onnx`` and ``onnxruntime`` import, torch
otherwise and always on CUDA), ``"torch"``, or ``"onnxruntime"`` (an error if it cannot run).
The environment variable ``C98K_RUNTIME`` sets the default for every model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from commercial98k.engine.threads import ort_session_options
from commercial98k.errors import C98kError, error_line
from commercial98k.storage.files import atomic_path

from .weights import cache_dir

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnxruntime")
OPSET = 17
#: Largest absolute gap to torch's output (relative to its scale) that counts as the same function.
TOLERANCE = 1e-3


class RuntimeUnavailable(C98kError, RuntimeError):
    """``runtime="onnxruntime"`` was asked for but cannot run here."""


def default_runtime() -> str:
    """``$C98K_RUNTIME`` or ``auto``."""
    value = os.environ.get("C98K_RUNTIME", "auto").strip().lower() or "auto"
    if value not in RUNTIMES:
        raise ValueError(f"C98K_RUNTIME={value!r}: choose one of {RUNTIMES}")
    return value


def module_digest(module: torch.nn.Module) -> str:
    """sha256 over the module's class, parameter/buffer names, shapes and bytes, and torch's version."""
    h = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__} torch {torch.__version__}".encode())
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name} {tuple(t.shape)} {t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


class OnnxModule:
    """An onnxruntime session over an exported torch module: ``run(x) -> list of outputs``."""

    def __init__(self, path: Path, output_names: tuple[str, ...]):
        import onnxruntime as ort

        self.path = path
        self.output_names = output_names
        opts = ort_session_options()  # the worker's thread share (threads.py)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """The module's outputs for float32 input ``x`` (batch on axis 0)."""
        return self.session.run(list(self.output_names), {self.input_name: np.ascontiguousarray(x, np.float32)})


def export(module: torch.nn.Module, example: torch.Tensor, path: Path, output_names: tuple[str, ...]) -> Path:
    """Export ``module`` (its outputs a tensor or a tuple of tensors) to ONNX at ``path``, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".onnx") as part, warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape arithmetic
        torch.onnx.export(module.eval(), (example,), str(part), input_names=["x"], output_names=list(output_names),
                          dynamic_axes={"x": {0: "batch"}, **{o: {0: "batch"} for o in output_names}},
                          opset_version=OPSET, dynamo=False)
    return path


def _load_or_export(module: torch.nn.Module, example: torch.Tensor, path: Path,
                    output_names: tuple[str, ...]) -> OnnxModule:
    if path.is_file():
        try:
            return OnnxModule(path, output_names)
        except Exception as e:  # a torn or foreign file in the cache: export again
            log.warning("%s: unreadable (%s); exporting again", path, error_line(e))
            path.unlink(missing_ok=True)
    export(module, example, path, output_names)
    return OnnxModule(path, output_names)


def _outputs(result) -> list[torch.Tensor]:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def onnx_module(module: torch.nn.Module, example: torch.Tensor, name: str, output_names: tuple[str, ...],
                runtime: str | None = None, device: str | torch.device = "cpu") -> OnnxModule | None:
    """An ``OnnxModule`` computing ``module`` on CPU, or None where torch should run it.

    ``module`` must return one tensor or a tuple of tensors (``output_names`` names them).
    """
    runtime = runtime or default_runtime()
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: choose one of {RUNTIMES}")
    if runtime == "torch":
        return None
    if torch.device(device).type != "cpu":
        if runtime == "onnxruntime":
            raise RuntimeUnavailable(f"{name}: runtime onnxruntime runs on CPU only (device {device})")
        return None
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError as e:
        if runtime == "onnxruntime":
            raise RuntimeUnavailable(f"{name}: runtime onnxruntime needs the packages onnx and onnxruntime ({e})") from e
        log.info("%s: runs on torch (%s)", name, e)
        return None
    module = module.eval()
    path = cache_dir() / "onnx" / f"{name}-{module_digest(module)[:16]}.onnx"
    try:
        ort_module = _load_or_export(module, example, path, output_names)
        with torch.inference_mode():
            want = [t.float().numpy() for t in _outputs(module(example))]
        got = ort_module.run(example.numpy())
        gap = max(float(np.max(np.abs(g - w)) / (np.max(np.abs(w)) + 1e-6)) for g, w in zip(got, want, strict=True))
    except Exception as e:  # a graph the exporter or onnxruntime cannot handle: torch runs it
        path.unlink(missing_ok=True)
        if runtime == "onnxruntime":
            raise RuntimeUnavailable(f"{name}: cannot run on onnxruntime ({error_line(e)})") from e
        log.warning("%s: onnxruntime unavailable (%s); running on torch", name, error_line(e))
        return None
    if gap > TOLERANCE:
        path.unlink(missing_ok=True)
        msg = f"{name}: the exported graph differs from torch by {gap:.2g} (relative)"
        if runtime == "onnxruntime":
            raise RuntimeUnavailable(msg)
        log.warning("%s; running on torch", msg)
        return None
    return ort_module


__all__ = ["RUNTIMES", "OnnxModule", "RuntimeUnavailable", "default_runtime", "export", "module_digest",
           "onnx_module"]
