"""Inference backends behind one interface (``base.Backend``).

``create(name, onnx_path, ...)`` builds one; ``name="auto"`` picks the best present in the order
TensorRT > PyTorch CUDA > OpenVINO > ONNX Runtime. Backend modules are imported only when chosen,
so a CPU install never imports torch.

Only ``auto`` falls back, and it says so once (one ``notice:`` line on the 'streamgan' logger per
distinct reason and process). A backend named explicitly (``--backend tensorrt``), or an explicit
TensorRT engine file, runs as asked or fails with a ``BackendError`` (exit 6).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from pathlib import Path

from .. import errors
from ..errors import BackendError, UsageError
from .base import PRECISIONS, Backend, no_int8

# name -> (module, class, python package it needs)
_BACKENDS = {
    "tensorrt": ("tensorrt", "TensorRTBackend", "tensorrt"),
    "torch": ("torch", "TorchBackend", "torch"),
    "openvino": ("openvino", "OpenVINOBackend", "openvino"),
    "onnxruntime": ("onnxruntime", "ONNXRuntimeBackend", "onnxruntime"),
}
NAMES = tuple(_BACKENDS)
# keyword arguments only the TensorRT backend takes (dropped when falling back)
_TRT_ONLY = ("batch_range", "resolutions", "size_multiple", "cache_dir", "engine_path")
# keyword arguments only the CPU-capable backends take (TensorRT runs on the GPU)
_CPU_ONLY = ("threads",)
# keyword arguments only OpenVINO takes: the int8 model (an OpenVINO IR)
_OPENVINO_ONLY = ("int8",)
log = logging.getLogger("streamgan")
_noticed: set[str] = set()
# what the TensorRT bindings (pybind11) and CUDA raise when they break outside our checks: an
# attribute missing in this TensorRT version, a pybind argument mismatch, a CUDA runtime error
_FOREIGN_ERRORS = (AttributeError, TypeError, RuntimeError, OSError, ImportError)


def _notice(text: str) -> None:
    """Log a fallback notice once per process (several translators, one line)."""
    if text not in _noticed:
        _noticed.add(text)
        log.warning("notice: %s", text)


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


def _after_tensorrt() -> str:
    """What runs when TensorRT cannot: PyTorch CUDA (fp16 under precision auto), else a CPU backend."""
    if _cuda_usable():
        return "torch"
    for name in ("openvino", "onnxruntime"):
        if _installed(name):
            return name
    raise BackendError("no inference backend is installed: pip install openvino")


def choose(name: str) -> tuple[str, str | None]:
    """(backend to build, one-line notice or None) for a requested name ("auto" or one of NAMES)."""
    if name == "auto":
        choice = auto_choice()
        if choice == "torch" and not _installed("tensorrt"):
            return choice, ("TensorRT is not installed; using PyTorch CUDA instead "
                            "(pip install 'streamgan[tensorrt]' for faster inference)")
        if choice not in ("tensorrt", "torch") and nvidia_driver_present() and _installed("torch"):
            return choice, (f"an NVIDIA driver is loaded but CUDA is unusable (driver too old for "
                            f"this PyTorch?); using the {choice} backend on the CPU")
        return choice, None
    if name == "tensorrt" and not (_installed("tensorrt") and _cuda_usable()):
        why = ("TensorRT is not installed (pip install 'streamgan[tensorrt]')"
               if not _installed("tensorrt")
               else "no usable CUDA GPU (NVIDIA driver missing or too old)")
        raise BackendError(f"backend 'tensorrt' cannot run here: {why}; use --backend auto to "
                           "run on the best backend present")
    return name, None


def _build(name: str, onnx_path, precision: str, kwargs: dict) -> Backend:
    module, cls, _ = _BACKENDS[name]
    drop = _CPU_ONLY if name == "tensorrt" else _TRT_ONLY
    if name != "openvino":
        drop = drop + _OPENVINO_ONLY
    kwargs = {k: v for k, v in kwargs.items() if k not in drop}
    mod = importlib.import_module(f".{module}", __name__)
    if name != "tensorrt":
        return getattr(mod, cls)(onnx_path, precision=precision, **kwargs)
    try:
        return getattr(mod, cls)(onnx_path, precision=precision, **kwargs)
    except BackendError:
        raise
    except _FOREIGN_ERRORS as e:  # from the bindings, not ours: a backend error, one line
        log.debug("TensorRT backend failed to start", exc_info=True)
        text = (str(e).strip() or type(e).__name__).splitlines()[0]
        raise BackendError(f"TensorRT backend failed to start ({type(e).__name__}: {text}); "
                           "--debug shows the traceback") from e


def create(name: str, onnx_path: str | Path, precision: str = "auto", **kwargs) -> Backend:
    """Build backend ``name`` ("auto" or one of NAMES) for an ONNX file.

    ``precision="int8"`` runs the model's int8 version (``int8``: the OpenVINO IR its card names)
    on OpenVINO, the one backend with int8 models here (``auto`` then means OpenVINO); another
    backend, or a model without an int8 version, is an error: nothing else is run instead.

    Under ``auto`` only, TensorRT falls back, with one notice on the 'streamgan' logger, to
    PyTorch CUDA (or the CPU backends without a GPU) when it is missing or cannot start or build
    this model. An explicit backend, or an explicit ``engine_path``, never falls back.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if name != "auto" and name not in _BACKENDS:
        raise UsageError(f"unknown backend '{name}'; choose auto or one of {', '.join(NAMES)}")
    if precision == "int8":
        if name == "auto":
            name = "openvino"
        elif name != "openvino":
            use = errors.flag("--backend openvino", "backend='openvino'")
            raise UsageError(f"precision int8 runs on the openvino backend only (the int8 models "
                             f"are OpenVINO IR); the {name} backend has none: use "
                             f"{use} or "
                             "another precision")
        if kwargs.get("int8") is None:
            raise no_int8(onnx_path)
    requested = name
    name, notice = choose(name)
    if notice:
        _notice(notice)
    _, _, pkg = _BACKENDS[name]
    if not _installed(pkg):
        raise BackendError(f"backend '{name}' is not installed: pip install 'streamgan[{name}]'")
    try:
        return _build(name, onnx_path, precision, kwargs)
    except BackendError as e:
        if name != "tensorrt" or requested != "auto" or kwargs.get("engine_path") is not None:
            raise
        alt = _after_tensorrt()
        _notice(f"{e}; using the {alt} backend instead")
        return _build(alt, onnx_path, precision, kwargs)
