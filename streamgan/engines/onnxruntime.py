"""ONNX Runtime backend: CUDA provider where onnxruntime-gpu and a GPU are present, else CPU."""

from __future__ import annotations

import numpy as np

from .. import errors
from ..errors import BackendError, UsageError
from .base import Backend


class ONNXRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, onnx_path, precision="auto", mean=(0.5,) * 3, std=(0.5,) * 3,
                 threads: int | None = None):
        super().__init__(onnx_path, precision, mean, std)
        if precision not in ("auto", "fp32"):
            fp32 = errors.flag("--precision fp32", "precision='fp32'")
            raise UsageError(f"onnxruntime runs the model as stored (fp32), not {precision}; use {fp32} "
                             "with it, or another backend (openvino runs bf16, fp16 and int8 on CPUs)")
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError(
                "ONNX Runtime is not installed; pip install 'streamgan[onnxruntime]'"
            ) from None
        providers = [
            p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()
        ]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), opts, providers=providers)
        except Exception as e:
            raise BackendError(f"ONNX Runtime cannot load {self.onnx_path}: {e}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.provider = self.session.get_providers()[0]

    def describe(self) -> str:
        return f"onnxruntime {self.provider.replace('ExecutionProvider', '')} fp32"

    def infer(self, x: np.ndarray, state: list[np.ndarray] | None = None):
        feeds = {self.input_name: np.ascontiguousarray(x)}
        if state is None:
            return self.session.run([self.output_name], feeds)[0]
        feeds.update((name, s) for (name, _), s in zip(self.state_io, state))
        out = self.session.run([self.output_name] + [o for _, o in self.state_io], feeds)
        return out[0], out[1:]
