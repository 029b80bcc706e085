"""Inference backends behind one interface (``base.Backend``).

``create(name, onnx_path, ...)`` builds one; ``name="auto"`` picks the best present in the order
TensorRT > PyTorch CUDA > OpenVINO > ONNX Runtime. Backend modules are imported only when chosen,
so a CPU install never imports torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

from ..errors import BackendError, UsageError
from .base import PRECISIONS, Backend

# name -> (module, class, python package it needs)
_BACKENDS = {
    "tensorrt": ("tensorrt", "TensorRTBackend", "tensorrt"),
    "torch": ("torch", "TorchBackend", "torch"),
    "openvino": ("openvino", "OpenVINOBackend", "openvino"),
    "onnxruntime": ("onnxruntime", "ONNXRuntimeBackend", "onnxruntime"),
}
NAMES = tuple(_BACKENDS)


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def nvidia_driver_present() -> bool:
    """True when an NVIDIA driver is loaded; checked without importing torch."""
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


def _cuda_usable() -> bool:
    if not (nvidia_driver_present() and _installed("torch")):
        return False
    import torch

    return torch.cuda.is_available()


def available() -> dict[str, str]:
    """Backend name -> 'ready' or the reason it cannot run here."""
    out = {}
    for name, (_, _, pkg) in _BACKENDS.items():
        if not _installed(pkg):
            out[name] = f"not installed (pip install {pkg})"
        elif name == "tensorrt" and not _cuda_usable():
            out[name] = "no CUDA GPU"
        else:
            out[name] = "ready"
    return out


def auto_choice() -> str:
    if _installed("tensorrt") and _cuda_usable():
        return "tensorrt"
    if _cuda_usable():
        return "torch"
    if _installed("openvino"):
        return "openvino"
    if _installed("onnxruntime"):
        return "onnxruntime"
    raise BackendError("no inference backend is installed: pip install openvino")


def create(name: str, onnx_path: str | Path, precision: str = "auto", **kwargs) -> Backend:
    """Build backend ``name`` ("auto" or one of NAMES) for an ONNX file."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if name == "auto":
        name = auto_choice()
    if name not in _BACKENDS:
        raise UsageError(f"unknown backend '{name}'; choose auto or one of {', '.join(NAMES)}")
    module, cls, pkg = _BACKENDS[name]
    if not _installed(pkg):
        raise BackendError(f"backend '{name}' is not installed: pip install 'streamgan[{name}]'")
    mod = importlib.import_module(f".{module}", __name__)
    return getattr(mod, cls)(onnx_path, precision=precision, **kwargs)
