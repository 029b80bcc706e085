"""TensorRT backend: cached engines run on PyTorch CUDA tensors.

The engine comes from ``trt_build.compile_engine`` (built once per ONNX / TensorRT version / GPU /
precision / profile, with a visible message, then loaded from the cache). I/O buffers are PyTorch
CUDA tensors handed to TensorRT with ``IExecutionContext.set_tensor_address`` and run with
``execute_async_v3`` on the backend's own compute stream (a ``torch.cuda.Stream``, never the
legacy default stream, which TensorRT documents as costing extra synchronisation). Frames go up
from pinned host memory on a second (copy) stream, and the uint8 -> float normalisation and the
rounding back to uint8 run on the GPU. ``submit``/``collect`` keep two batches in flight (two
buffer slots); ``run`` is ``collect(submit(batch))``. A temporal model's state tensors are more
bindings (their profiles sized from the image's, ``trt_build.state_shapes``); its frames run one call
at a time with the state handed back to the runtime, which keeps it per stream. Whether the upload of batch k+1 really
overlaps the compute of batch k has not been measured yet (docs/GPU.md).

Streams and memory: every buffer is allocated while the compute stream is current, so the caching
allocator ties it to that stream. The copy stream writes a slot's input buffer only after the
compute stream has finished with that slot (its ``done`` event) and, after buffers were
(re)allocated, after ``wait_stream(compute)``: freshly allocated memory may still be in use by
compute work queued for the other slot. Buffers the copy stream touches are ``record_stream``-ed
for it, so their memory is not reused before the copy finished.

Handles are not slots: ``submit`` returns a ``Handle`` carrying the slot and a generation; a third
``submit`` before ``collect`` reuses the slot, and the old handle then raises instead of returning
the newer batch.

Profiles: the default profile follows the card's processing policy (``trt_build.policy_profile``:
landscape, 4:3 and portrait at the size the model runs at). ``prepare(shapes)`` builds whatever a
stream needs beyond it before the stream starts; a batch outside the profile in the middle of a
stream is an error, never a minutes-long rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BackendError, UsageError
from . import trt_build
from .base import Backend


def _card_processing(onnx_path: Path):
    """The processing policy of the card beside ``onnx_path`` (a plugin folder), None without a
    card. A card that is there but broken is a model problem (``ModelError``), not ignored."""
    card = onnx_path.parent / "card.yaml"
    if not card.is_file():
        return None
    from ..card import ModelCard

    return ModelCard.load(card).processing


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


class CudaDevice:
    """The CUDA calls the backend makes, in one place: streams, events, pinned and device memory.
    (Tests replace it with a CPU stand-in to check the slot, stream and profile logic.)"""

    def __init__(self, torch, index: int = 0):
        if not torch.cuda.is_available():
            raise BackendError("TensorRT backend: no usable CUDA GPU (driver missing or too old)")
        self.torch = torch
        self.device = torch.device("cuda", index)
        if index:
            torch.cuda.set_device(self.device)  # TensorRT runs on the current CUDA device

    def stream(self):
        return self.torch.cuda.Stream(self.device)

    def event(self):
        return self.torch.cuda.Event()

    def use(self, stream):
        """Context manager: make ``stream`` current (allocations and kernels go to it)."""
        return self.torch.cuda.stream(stream)

    def handle(self, stream) -> int:
        """The raw cudaStream_t that ``execute_async_v3`` takes."""
        return stream.cuda_stream

    def record(self, tensor, stream) -> None:
        """``tensor`` (allocated on another stream) is used on ``stream``: keep its memory from
        being reused before the work queued there so far is done."""
        tensor.record_stream(stream)

    def pinned(self, numel: int, dtype):
        return self.torch.empty(numel, dtype=dtype, pin_memory=True)

    def empty(self, numel: int, dtype):
        return self.torch.empty(numel, dtype=dtype, device=self.device)


@dataclass(frozen=True)
class Handle:
    """What ``submit`` returns: a slot and the generation of the batch submitted into it."""

    slot: int
    generation: int


class _Slot:
    """Buffers for one batch in flight; grown on demand, never shrunk."""

    def __init__(self, index: int):
        self.index = index
        self.generation = 0  # of the batch now in this slot
        self.pending = False  # submitted and not yet collected
        self.cap = self.ocap = 0
        self.done = None  # event: this slot's last batch is fully back in pinned memory
        self.n = self.h = self.w = 0


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, onnx_path, precision="auto", mean=(0.5,) * 3, std=(0.5,) * 3, *,
                 batch_range=trt_build.DEFAULT_BATCH, resolutions=None,
                 size_multiple: int | None = None, cache_dir=None, engine_path=None, device: int = 0):
        super().__init__(onnx_path, precision, mean, std)
        # the graph's image input and output first; a temporal model's state inputs and outputs after them
        self._io = trt_build.io_names(self.onnx_path)
        self._trt = trt_build._trt()  # BackendError for a missing or unsupported TensorRT
        import torch

        self._torch = torch
        self.precision = "fp16" if precision == "auto" else precision
        if self.precision not in trt_build.TRT_PRECISIONS:
            raise BackendError(f"TensorRT backend: precision '{precision}' is not supported (fp16, fp32)")
        self._cuda = CudaDevice(torch, device)
        self.device = self._cuda.device
        self.cache_dir = cache_dir
        processing = self._processing = _card_processing(self.onnx_path)
        self.size_multiple = size_multiple or (processing.size_multiple if processing else 4)
        self.env = trt_build.current_environment(device)
        if resolutions is None:
            self.profile = trt_build.policy_profile(processing, batch_range,
                                                    size_multiple=self.size_multiple)
        else:
            self.profile = trt_build.compute_profile(batch_range, resolutions,
                                                     size_multiple=self.size_multiple)
        self.preferred_batch = self.profile.batch[2]
        self._runtime = self._trt.Runtime(trt_build.trt_logger(self._trt))
        self._compute = self._cuda.stream()
        self._copy_stream = self._cuda.stream()
        with self._cuda.use(self._compute):
            self._scale = torch.tensor(1.0 / (255.0 * self.std), device=self.device).view(1, 3, 1, 1)
            self._shift = torch.tensor(self.mean / self.std, device=self.device).view(1, 3, 1, 1)
            self._out_scale = torch.tensor(255.0 * self.std, device=self.device).view(1, 3, 1, 1)
            self._out_shift = torch.tensor(255.0 * self.mean, device=self.device).view(1, 3, 1, 1)
        self._slots = [_Slot(0), _Slot(1)]
        self._next = 0
        self._generation = 0
        self._explicit = engine_path is not None
        if self._explicit:
            self._load(Path(engine_path), explicit=True)
        else:
            self._load(self._compile(self.profile))

    # -- engine ---------------------------------------------------------------------------
    def _compile(self, profile, force=False) -> Path:
        return trt_build.compile_engine(self.onnx_path, precision=self.precision, profile=profile,
                                        cache_dir=self.cache_dir, force=force,
                                        environment=self.env, device=self.device.index or 0,
                                        processing=self._processing)

    def _load(self, path: Path, explicit: bool = False, retried: bool = False) -> None:
        trt = self._trt
        if explicit:
            import json

            try:
                key = json.loads(trt_build.sidecar_path(path).read_text())["key"]
                self.profile = trt_build.Profile.from_json(key["profile"])
                self.precision = key["precision"]
                onnx_sha = key["onnx_sha256"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise BackendError(f"engine {path}: no valid sidecar ({type(e).__name__}: {e}); "
                                   "run streamgan compile") from None
            expected = trt_build.engine_key(onnx_sha, *self.env, self.precision, self.profile)
            from ..card import sha256_file

            if onnx_sha != sha256_file(self.onnx_path):
                raise BackendError(f"engine {path.name} was built from another ONNX file than {self.onnx_path.name}")
            reason = trt_build.check_engine(path, expected)
            if reason:
                raise BackendError(f"engine {path.name} cannot be used here: {reason}; run streamgan compile")
            self.preferred_batch = self.profile.batch[2]
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:  # incompatible despite the sidecar (e.g. a driver change): rebuild once
            if explicit or retried:
                raise BackendError(f"TensorRT could not load engine {path}; rebuild it with streamgan compile --force")
            return self._load(self._compile(self.profile, force=True), retried=True)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if sorted(ins) != sorted(self._io[0]) or sorted(outs) != sorted(self._io[1]):
            raise BackendError(f"engine {path.name}: its tensors ({', '.join(ins)} in; {', '.join(outs)} out) are "
                               f"not the model's ({', '.join(self._io[0])} in; {', '.join(self._io[1])} out)")
        dtypes = {trt.DataType.FLOAT: self._torch.float32, trt.DataType.HALF: self._torch.float16}
        try:
            self._dtypes = {n: dtypes[engine.get_tensor_dtype(n)] for n in names}
        except KeyError:
            raise BackendError(f"engine {path.name}: I/O must be float32 or float16") from None
        ins, outs = self._io
        in_dtype, out_dtype = self._dtypes[ins[0]], self._dtypes[outs[0]]
        context = engine.create_execution_context()
        if context is None:
            raise BackendError(f"TensorRT could not create an execution context for {path.name} (GPU memory?)")
        self.synchronize()
        if getattr(self, "_in_dtype", None) not in (None, in_dtype) or \
                getattr(self, "_out_dtype", None) not in (None, out_dtype):
            self._slots = [_Slot(0), _Slot(1)]  # buffers of another dtype: reallocate
        self._in_dtype, self._out_dtype = in_dtype, out_dtype
        self._engine, self._in_name, self._out_name = engine, ins[0], outs[0]
        self._context = context
        self.engine_path = path

    def prepare(self, shapes) -> None:
        """Make sure the engine takes every (batch, height, width) in ``shapes``: build (or load
        from the cache) an engine whose profile is widened to them, tuned for the first one —
        the size the model will really run at. Called before a stream starts."""
        missing = [tuple(int(v) for v in s) for s in shapes if not self.profile.covers(*s)]
        if not missing:
            return
        if self._explicit:
            raise BackendError(f"engine {self.engine_path.name} does not take batch x height x width "
                               f"{' '.join('%dx%dx%d' % s for s in missing)} ({self.profile.describe()}); "
                               "compile one with streamgan compile --resolutions/--batch")
        old = profile = self.profile
        for n, h, w in missing:
            profile = profile.union(n, h, w)
        _, h, w = missing[0]  # tune for the size this stream runs at
        profile = trt_build.Profile(profile.batch, (profile.height[0], h, profile.height[2]),
                                    (profile.width[0], w, profile.width[2]))
        self.profile = profile
        try:
            self._load(self._compile(profile))
        except BaseException:
            self.profile = old
            raise
        self.preferred_batch = profile.batch[2]

    def _check_shape(self, n: int, h: int, w: int) -> None:
        if not self.profile.covers(n, h, w):
            raise BackendError(
                f"TensorRT engine does not take a batch of {n} x {w}x{h} ({self.profile.describe()}); "
                "engines are built before a stream starts (Backend.prepare), never in the middle of "
                "one: prepare this size first, or streamgan compile --resolutions")

    def _enqueue(self, x, y, stream) -> None:
        """Run the engine on device tensors x -> y (already shaped) on ``stream``."""
        ctx = self._context
        if not ctx.set_input_shape(self._in_name, tuple(x.shape)):
            raise BackendError(f"TensorRT rejected input shape {tuple(x.shape)} ({self.profile.describe()})")
        ctx.set_tensor_address(self._in_name, x.data_ptr())
        ctx.set_tensor_address(self._out_name, y.data_ptr())
        if not ctx.execute_async_v3(self._cuda.handle(stream)):
            raise BackendError("TensorRT execution failed (see TensorRT's messages above)")

    def _out_shape(self, n: int, h: int, w: int) -> tuple[int, ...]:
        if not self._context.set_input_shape(self._in_name, (n, 3, h, w)):
            raise BackendError(f"TensorRT rejected input shape {(n, 3, h, w)} ({self.profile.describe()})")
        return tuple(self._context.get_tensor_shape(self._out_name))

    @property
    def compute_stream(self):
        """The stream the engine runs on (for callers timing ``_enqueue`` themselves)."""
        return self._compute

    # -- Backend --------------------------------------------------------------------------
    def describe(self) -> str:
        return (f"tensorrt {self.env[0]} {self.env[1]} {self.precision} "
                f"[{self.profile.describe()}]")

    @property
    def temporal(self) -> bool:
        return len(self._io[0]) > 1

    def infer(self, x: np.ndarray, state: list[np.ndarray] | None = None):
        torch = self._torch
        n, c, h, w = x.shape
        self._check_shape(n, h, w)
        if self.temporal and state is None:
            raise UsageError(f"TensorRT backend: {self.onnx_path.name} is a temporal model; it runs with its "
                             "state (infer(x, state), run(batch, state))")
        self.synchronize()  # the context's shapes are about to change
        with self._cuda.use(self._compute):
            xt = torch.from_numpy(np.ascontiguousarray(x)).to(self.device, self._in_dtype)
            if state is not None:
                return self._infer_state(xt, state)
            y = torch.empty(self._out_shape(n, h, w), dtype=self._out_dtype, device=self.device)
            self._enqueue(xt, y, self._compute)
            out = y.float().cpu()  # synchronises with the compute stream
        return out.numpy()

    def _infer_state(self, x, state: list[np.ndarray]):
        """A temporal model: the image and its state tensors bound as the engine's inputs, the image and
        the new state as its outputs, on the compute stream; returned to the host (the runtime keeps each
        stream's state, ``streamgan.temporal``)."""
        torch, ctx = self._torch, self._context
        io = self.state_io or list(zip(self._io[0][1:], self._io[1][1:]))
        if len(state) != len(io):
            raise UsageError(f"TensorRT backend: {len(state)} state tensors given, the model takes {len(io)}")
        inputs = [(self._in_name, x)] + [
            (name, torch.from_numpy(np.ascontiguousarray(s)).to(self.device, self._dtypes[name]))
            for (name, _), s in zip(io, state)]
        for name, t in inputs:
            if not ctx.set_input_shape(name, tuple(t.shape)):
                raise BackendError(f"TensorRT rejected {name} of shape {tuple(t.shape)} ({self.profile.describe()})")
            ctx.set_tensor_address(name, t.data_ptr())
        outputs = []
        for name in [self._out_name] + [out for _, out in io]:
            t = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=self._dtypes[name], device=self.device)
            ctx.set_tensor_address(name, t.data_ptr())
            outputs.append(t)
        if not ctx.execute_async_v3(self._cuda.handle(self._compute)):
            raise BackendError("TensorRT execution failed (see TensorRT's messages above)")
        host = [t.float().cpu().numpy() for t in outputs]  # synchronises with the compute stream
        return host[0], host[1:]

    def _grow(self, slot: _Slot, n: int, h: int, w: int, oshape) -> bool:
        """Make ``slot`` big enough; True when its buffers were (re)allocated. Allocation happens on
        the compute stream (the caller has waited for this slot's previous batch)."""
        torch = self._torch
        need = n * h * w * 3
        onumel = int(np.prod(oshape))
        if need <= slot.cap and onumel <= slot.ocap:
            return False
        cap, ocap = max(need, slot.cap), max(onumel, slot.ocap)
        cuda = self._cuda
        with cuda.use(self._compute):
            slot.h_in = cuda.pinned(cap, torch.uint8)
            slot.d_in = cuda.empty(cap, torch.uint8)
            slot.x = cuda.empty(cap, self._in_dtype)
            slot.y = cuda.empty(ocap, self._out_dtype)
            slot.h_out = cuda.pinned(ocap, torch.uint8)
        slot.cap, slot.ocap = cap, ocap
        return True

    def submit(self, batch: np.ndarray) -> Handle:
        """Start translating a uint8 NHWC RGB batch; returns a handle for ``collect``. At most two
        batches are in flight: a third ``submit`` reuses the oldest slot, whose handle goes stale."""
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
            raise UsageError(f"TensorRT backend: expected uint8 N x H x W x 3, got {batch.dtype} {batch.shape}")
        if self.temporal:
            raise UsageError(f"TensorRT backend: {self.onnx_path.name} is a temporal model; it runs with its "
                             "state through run(batch, state), not submit")
        n, h, w, _ = batch.shape
        self._check_shape(n, h, w)
        cuda = self._cuda
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        if slot.done is not None:
            slot.done.synchronize()  # its buffers are free again (on both streams)
        self._generation += 1
        slot.generation, slot.pending = self._generation, True
        oshape = self._out_shape(n, h, w)
        grown = self._grow(slot, n, h, w, oshape)
        need = n * h * w * 3
        h_in = slot.h_in[:need].view(n, h, w, 3)
        np.copyto(h_in.numpy(), batch)
        compute, copy = self._compute, self._copy_stream
        if grown:  # new memory may still be read by compute work queued for the other slot
            copy.wait_stream(compute)
        with cuda.use(copy):
            d_in = slot.d_in[:need].view(n, h, w, 3)
            d_in.copy_(h_in, non_blocking=True)
            cuda.record(slot.d_in, copy)
            uploaded = cuda.event()
            uploaded.record(copy)
        compute.wait_event(uploaded)
        with cuda.use(compute):
            x = normalise_into(slot.x[:need].view(n, 3, h, w), d_in, self._scale, self._shift)
            y = slot.y[: int(np.prod(oshape))].view(oshape)
            self._enqueue(x, y, compute)
            z = denormalise(y, self._out_scale, self._out_shift)
            on, oh, ow = z.shape[0], z.shape[1], z.shape[2]
            h_out = slot.h_out[: z.numel()].view(on, oh, ow, 3)
            h_out.copy_(z, non_blocking=True)
            slot.done = cuda.event()
            slot.done.record(compute)
        slot.n, slot.h, slot.w = on, oh, ow
        return Handle(slot.index, slot.generation)

    def collect(self, handle: Handle) -> np.ndarray:
        """Wait for a batch from ``submit`` and return it as uint8 NHWC (a copy). A handle whose
        slot has since taken a later batch, or one already collected, raises ``UsageError``."""
        if not isinstance(handle, Handle) or not 0 <= handle.slot < len(self._slots):
            raise UsageError(f"TensorRT backend: collect() takes a handle from submit(), got {handle!r}")
        slot = self._slots[handle.slot]
        if slot.generation != handle.generation:
            raise UsageError(
                f"TensorRT backend: stale handle (batch {handle.generation}); its buffers now hold "
                f"batch {slot.generation}. At most two batches are in flight: collect each one "
                "before the second submit after it")
        if not slot.pending:
            raise UsageError(f"TensorRT backend: batch {handle.generation} was already collected")
        slot.done.synchronize()
        slot.pending = False
        return slot.h_out[: slot.n * slot.h * slot.w * 3].view(slot.n, slot.h, slot.w, 3).numpy().copy()

    def run(self, batch: np.ndarray, state: list[np.ndarray] | None = None):
        """``collect(submit(batch))``; a temporal model's frames with their ``state`` run synchronously
        (normalised on the host, as the other backends: ``Backend.run``) and give (frames, new state)."""
        if state is not None or self.temporal:
            return super().run(batch, state)
        return self.collect(self.submit(batch))

    def synchronize(self) -> None:
        for slot in getattr(self, "_slots", ()):
            if slot.done is not None:
                slot.done.synchronize()

    def close(self) -> None:
        if getattr(self, "_context", None) is not None:
            self.synchronize()
            self._context = None
            self._engine = None
            self._slots = [_Slot(0), _Slot(1)]
