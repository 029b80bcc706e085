"""The one interface every inference backend implements.

A backend is built from an ONNX file and runs it on NCHW float32 batches in [-1, 1]
(``infer``). ``run`` is what the pipeline calls: uint8 NHWC RGB in, uint8 NHWC RGB out, same
shape. The default ``run`` converts on the host around ``infer``; a backend that can fuse the
conversion into its own graph or onto the GPU (OpenVINO pre/post-processing, TensorRT) overrides
``run`` instead. A backend that can also take the decoder's YUV 4:2:0 frames as they are and give
YUV back (the colour conversion compiled into its graph) sets ``takes_i420`` and implements
``run_i420``; the pipeline then skips FFmpeg's RGB conversions where no scaling is needed. Everything backend-specific (precision, device, compiled-shape caches) stays
inside the backend's own module; adding a backend is one file plus one line in ``engines/__init__.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..errors import ModelError

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def to_model_input(batch: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW, normalised as the card says."""
    x = batch.transpose(0, 3, 1, 2).astype(np.float32)
    x *= (1.0 / 255.0) / std[None, :, None, None]
    x -= (mean / std)[None, :, None, None]
    return x


def from_model_output(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """float32 NCHW (model space) -> uint8 NHWC, rounded and clipped."""
    y = y * (255.0 * std)[None, :, None, None] + (255.0 * mean)[None, :, None, None]
    np.clip(y, 0.0, 255.0, out=y)
    return np.rint(y, out=y).astype(np.uint8).transpose(0, 2, 3, 1)


def check_finite(finite: bool, onnx_path) -> None:
    """A model whose output holds NaN or infinity writes garbage (black or frozen frames, read
    as uint8): the first batch's output is checked, and such a model is refused."""
    if not finite:
        raise ModelError(f"{onnx_path}: the model's output holds NaN or infinite values (first "
                         "frames checked); the model is broken: re-export or replace it")


def no_int8(onnx_path) -> ModelError:
    """``--precision int8`` for a model whose card names no int8 version."""
    return ModelError(f"{onnx_path}: this model has no int8 version (its card names none; for a frame-by-frame "
                      "model `streamgan-train quantize` makes one, a temporal one has none); use another precision")


class Backend(ABC):
    """Runs one ONNX generator. Subclasses set ``name`` and implement ``infer``."""

    name: str = "?"
    takes_i420: bool = False  # run_i420 is implemented
    # a temporal model's state: (graph input, graph output) names, as its card declares them
    state_io: list[tuple[str, str]] = []
    output_checked: bool = False  # the first output was finite (check_finite)

    def __init__(
        self,
        onnx_path: str | Path,
        precision: str = "auto",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    ) -> None:
        self.onnx_path = Path(onnx_path)
        self.precision = precision
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    @abstractmethod
    def infer(self, x: np.ndarray, state: list[np.ndarray] | None = None):
        """float32 NCHW in model space -> float32 NCHW in model space. With ``state`` (a temporal
        model's state tensors, float32, in ``state_io`` order): (output, [new state tensors])."""

    def run(self, batch: np.ndarray, state: list[np.ndarray] | None = None):
        """uint8 NHWC RGB -> uint8 NHWC RGB of the same shape; with ``state``: (frames, new
        state), as ``infer``."""
        x = to_model_input(batch, self.mean, self.std)
        y, new = self.infer(x, state) if state is not None else (self.infer(x), None)
        if not self.output_checked:
            check_finite(bool(np.isfinite(y).all()), self.onnx_path)
            self.output_checked = True
        out = from_model_output(y, self.mean, self.std)
        return out if state is None else (out, new)

    def run_i420(self, batch: np.ndarray, state: list[np.ndarray] | None = None):
        """uint8 N x (H*3/2) x W, I420 (BT.601 limited range: the Y plane, then U and V at half
        size, as FFmpeg's yuv420p) -> the same for the output (with ``state``: and the new
        state, as ``run``). Only where ``takes_i420``."""
        raise NotImplementedError(f"the {self.name} backend takes RGB frames only")

    def prepare(self, shapes) -> None:
        """Called before a stream starts with the (batch, height, width) shapes ``run`` will be
        given (batch: the largest; smaller batches of the same size follow). A backend that
        compiles per shape (TensorRT profiles) does it here, never in the middle of a stream.
        The default does nothing."""

    def describe(self) -> str:
        """One line for logs and `streamgan bench`: backend, device, precision."""
        return f"{self.name} ({self.precision})"

    def close(self) -> None:  # release device memory etc.
        pass
