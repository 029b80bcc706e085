"""TensorRT backend: cached engines run on PyTorch CUDA tensors.

The engine comes from ``trt_build.compile_engine`` (built once per ONNX / TensorRT version / GPU /
precision / profile, with a visible message, then loaded from the cache). I/O buffers are PyTorch
CUDA tensors handed to TensorRT with ``IExecutionContext.set_tensor_address`` and run with
``execute_async_v3`` on PyTorch's current stream. Frames go up from pinned host memory on a
second (copy) stream, and the uint8 -> float normalisation and the rounding back to uint8 run on
the GPU. ``submit``/``collect`` keep two batches in flight (two buffer slots), so the upload of
batch k+1 and the host work around it overlap the compute of batch k; ``run`` is
``collect(submit(batch))``.

A frame size or batch outside the engine's profile builds (once, cached) an engine whose profile
is widened to include it, rather than failing inside TensorRT.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendError, UsageError
from . import trt_build
from .base import Backend


def _card_size_multiple(onnx_path: Path) -> int:
    card = onnx_path.parent / "card.yaml"
    if card.is_file():
        try:
            from ..card import ModelCard

            return ModelCard.load(card).processing.size_multiple
        except Exception:
            pass
    return 4


def normalise_into(x, frames, scale, shift):
    """uint8 NHWC ``frames`` -> model-space NCHW written into ``x`` (any device, one layout pass):
    x = frames * scale - shift, with scale = 1 / (255 std) and shift = mean / std per channel."""
    x.copy_(frames.permute(0, 3, 1, 2))
    return x.mul_(scale).sub_(shift)


def denormalise(y, out_scale, out_shift):
    """Model-space NCHW ``y`` -> uint8 NHWC (contiguous), rounded half to even and clipped, as
    ``base.from_model_output`` does on the host; ``y`` itself is left unchanged."""
    import torch

    z = torch.addcmul(out_shift, y.float(), out_scale).clamp_(0.0, 255.0).round_()
    return z.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class _Slot:
    """Buffers for one batch in flight; grown on demand, never shrunk."""

    def __init__(self):
        self.cap = self.ocap = 0
        self.done = None  # CUDA event: this slot's last batch is fully back in pinned memory
        self.n = self.h = self.w = 0


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, onnx_path, precision="auto", mean=(0.5,) * 3, std=(0.5,) * 3, *,
                 batch_range=trt_build.DEFAULT_BATCH, resolutions=trt_build.DEFAULT_RESOLUTIONS,
                 size_multiple: int | None = None, cache_dir=None, engine_path=None, device: int = 0):
        super().__init__(onnx_path, precision, mean, std)
        self._trt = trt_build._trt()
        import torch

        if not torch.cuda.is_available():
            raise BackendError("TensorRT backend: no usable CUDA GPU (driver missing or too old)")
        self._torch = torch
        self.precision = "fp16" if precision == "auto" else precision
        if self.precision not in trt_build.TRT_PRECISIONS:
            raise BackendError(f"TensorRT backend: precision '{precision}' is not supported (fp16, fp32)")
        self.device = torch.device("cuda", device)
        if device:
            torch.cuda.set_device(self.device)  # TensorRT runs on the current CUDA device
        self.cache_dir = cache_dir
        self.size_multiple = size_multiple or _card_size_multiple(self.onnx_path)
        self.env = trt_build.current_environment(device)
        self.profile = trt_build.compute_profile(batch_range, resolutions, size_multiple=self.size_multiple)
        self.preferred_batch = self.profile.batch[1]
        self._logger = self._trt.Logger(self._trt.Logger.ERROR)
        self._runtime = self._trt.Runtime(self._logger)
        self._scale = torch.tensor(1.0 / (255.0 * self.std), device=self.device).view(1, 3, 1, 1)
        self._shift = torch.tensor(self.mean / self.std, device=self.device).view(1, 3, 1, 1)
        self._out_scale = torch.tensor(255.0 * self.std, device=self.device).view(1, 3, 1, 1)
        self._out_shift = torch.tensor(255.0 * self.mean, device=self.device).view(1, 3, 1, 1)
        self._copy_stream = torch.cuda.Stream(self.device)
        self._slots = [_Slot(), _Slot()]
        self._next = 0
        if engine_path is not None:
            self._load(Path(engine_path), explicit=True)
        else:
            self._load(self._compile(self.profile))

    # -- engine ---------------------------------------------------------------------------
    def _compile(self, profile, force=False) -> Path:
        return trt_build.compile_engine(self.onnx_path, precision=self.precision, profile=profile,
                                        cache_dir=self.cache_dir, force=force,
                                        environment=self.env, device=self.device.index)

    def _load(self, path: Path, explicit: bool = False, retried: bool = False) -> None:
        trt = self._trt
        if explicit:
            import json

            try:
                key = json.loads(trt_build.sidecar_path(path).read_text())["key"]
                self.profile = trt_build.Profile.from_json(key["profile"])
                self.precision = key["precision"]
            except (OSError, ValueError, KeyError) as e:
                raise BackendError(f"engine {path}: no valid sidecar ({e}); run streamgan compile") from None
            expected = trt_build.engine_key(key["onnx_sha256"], *self.env, self.precision, self.profile)
            from ..card import sha256_file

            if key["onnx_sha256"] != sha256_file(self.onnx_path):
                raise BackendError(f"engine {path.name} was built from another ONNX file than {self.onnx_path.name}")
            reason = trt_build.check_engine(path, expected)
            if reason:
                raise BackendError(f"engine {path.name} cannot be used here: {reason}; run streamgan compile")
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:  # incompatible despite the sidecar (e.g. a driver change): rebuild once
            if explicit or retried:
                raise BackendError(f"TensorRT could not load engine {path}; rebuild it with streamgan compile --force")
            return self._load(self._compile(self.profile, force=True), retried=True)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != 1 or len(outs) != 1:
            raise BackendError(f"engine {path.name}: expected one input and one output tensor")
        dtypes = {trt.DataType.FLOAT: self._torch.float32, trt.DataType.HALF: self._torch.float16}
        try:
            self._in_dtype = dtypes[engine.get_tensor_dtype(ins[0])]
            self._out_dtype = dtypes[engine.get_tensor_dtype(outs[0])]
        except KeyError:
            raise BackendError(f"engine {path.name}: I/O must be float32 or float16") from None
        self._engine, self._in_name, self._out_name = engine, ins[0], outs[0]
        self._context = engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"TensorRT could not create an execution context for {path.name} (GPU memory?)")
        self.engine_path = path

    def _ensure_profile(self, n: int, h: int, w: int) -> None:
        if self.profile.covers(n, h, w):
            return
        self.synchronize()
        self.profile = self.profile.union(n, h, w)
        self._load(self._compile(self.profile))

    def _enqueue(self, x, y, stream) -> None:
        """Run the engine on CUDA tensors x -> y (already shaped) on ``stream``."""
        ctx = self._context
        if not ctx.set_input_shape(self._in_name, tuple(x.shape)):
            raise BackendError(f"TensorRT rejected input shape {tuple(x.shape)} ({self.profile.describe()})")
        ctx.set_tensor_address(self._in_name, x.data_ptr())
        ctx.set_tensor_address(self._out_name, y.data_ptr())
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execution failed (see the messages above)")

    def _out_shape(self, n: int, h: int, w: int) -> tuple[int, ...]:
        self._context.set_input_shape(self._in_name, (n, 3, h, w))
        return tuple(self._context.get_tensor_shape(self._out_name))

    # -- Backend --------------------------------------------------------------------------
    def describe(self) -> str:
        return (f"tensorrt {self.env[0]} {self.env[1]} {self.precision} "
                f"[{self.profile.describe()}]")

    def infer(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        n, c, h, w = x.shape
        self._ensure_profile(n, h, w)
        stream = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(stream):
            xt = torch.from_numpy(np.ascontiguousarray(x)).to(self.device, self._in_dtype)
            y = torch.empty(self._out_shape(n, h, w), dtype=self._out_dtype, device=self.device)
            self._enqueue(xt, y, stream)
            out = y.float().cpu()  # synchronises with the stream
        return out.numpy()

    def _grow(self, slot: _Slot, n: int, h: int, w: int, oshape) -> None:
        torch = self._torch
        need = n * h * w * 3
        onumel = int(np.prod(oshape))
        if need <= slot.cap and onumel <= slot.ocap:
            return
        cap, ocap = max(need, slot.cap), max(onumel, slot.ocap)
        slot.h_in = torch.empty(cap, dtype=torch.uint8, pin_memory=True)
        slot.d_in = torch.empty(cap, dtype=torch.uint8, device=self.device)
        slot.x = torch.empty(cap, dtype=self._in_dtype, device=self.device)
        slot.y = torch.empty(ocap, dtype=self._out_dtype, device=self.device)
        slot.h_out = torch.empty(ocap, dtype=torch.uint8, pin_memory=True)
        slot.cap, slot.ocap = cap, ocap

    def submit(self, batch: np.ndarray) -> _Slot:
        """Start translating a uint8 NHWC RGB batch; returns a handle for ``collect``."""
        torch = self._torch
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
            raise UsageError(f"TensorRT backend: expected uint8 N x H x W x 3, got {batch.dtype} {batch.shape}")
        n, h, w, _ = batch.shape
        self._ensure_profile(n, h, w)
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        if slot.done is not None:
            slot.done.synchronize()  # its pinned buffers are free again
        oshape = self._out_shape(n, h, w)
        self._grow(slot, n, h, w, oshape)
        need = n * h * w * 3
        h_in = slot.h_in[:need].view(n, h, w, 3)
        np.copyto(h_in.numpy(), batch)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            d_in = slot.d_in[:need].view(n, h, w, 3)
            d_in.copy_(h_in, non_blocking=True)
            uploaded = torch.cuda.Event()
            uploaded.record(self._copy_stream)
        compute.wait_event(uploaded)
        with torch.cuda.stream(compute):
            x = normalise_into(slot.x[:need].view(n, 3, h, w), d_in, self._scale, self._shift)
            y = slot.y[: int(np.prod(oshape))].view(oshape)
            self._enqueue(x, y, compute)
            z = denormalise(y, self._out_scale, self._out_shift)
            on, oh, ow = z.shape[0], z.shape[1], z.shape[2]
            h_out = slot.h_out[: z.numel()].view(on, oh, ow, 3)
            h_out.copy_(z, non_blocking=True)
            slot.done = torch.cuda.Event()
            slot.done.record(compute)
        slot.n, slot.h, slot.w = on, oh, ow
        return slot

    def collect(self, slot: _Slot) -> np.ndarray:
        """Wait for a batch from ``submit`` and return it as uint8 NHWC (a copy)."""
        slot.done.synchronize()
        return slot.h_out[: slot.n * slot.h * slot.w * 3].view(slot.n, slot.h, slot.w, 3).numpy().copy()

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.collect(self.submit(batch))

    def synchronize(self) -> None:
        for slot in self._slots:
            if slot.done is not None:
                slot.done.synchronize()

    def close(self) -> None:
        if getattr(self, "_context", None) is not None:
            self.synchronize()
            self._context = None
            self._engine = None
            self._slots = [_Slot(), _Slot()]
