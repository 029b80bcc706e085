"""PyTorch backend: the reference, and the GPU path when TensorRT is absent.

The plugin ships ONNX only, so this module runs the ONNX graph with PyTorch operators: a small
interpreter covering the operators image-to-image generators use (convolutions, normalisation,
activations, padding, resizing, arithmetic and the shape arithmetic exporters emit). An operator
outside that set raises a clear ``BackendError`` naming it, never a wrong result.

Devices: image data (the input and float weights/constants) lives on the backend's device; shape
arithmetic (integer and boolean constants, ``Shape``, and what is computed from them, such as the
run-time reflection-pad amounts the exporter writes as ``Constant -> ConstantOfShape -> Concat ->
... -> Pad``) stays on the host, where operators like ``Pad`` and ``Reshape`` read it as Python
ints. Every operator creates its outputs on the device of its inputs, so the two never mix; the
tests run the shipped models on the ``meta`` device to catch a mix on a machine without CUDA.

Importing this module imports torch; the registry only does so when this backend is chosen.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import BackendError
from .base import Backend, check_finite

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - checked by the registry before import
    raise BackendError(
        "the torch backend needs PyTorch: pip install torch (CPU: pip install torch==2.13.0)"
    ) from None

log = logging.getLogger("streamgan")


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _ints(t) -> list[int]:
    return [int(v) for v in (t.tolist() if isinstance(t, torch.Tensor) else t)]


def _symmetric_pads(x, pads, n, value=0.0):
    """ONNX pads (begins, then ends) -> the symmetric padding torch convolutions and pools take, padding
    ``x`` by hand (with ``value``) where begin and end differ."""
    pads = list(pads or [0] * (2 * n))
    if any(pads[i] != pads[i + n] for i in range(n)):
        x = F.pad(x, [p for i in reversed(range(n)) for p in (pads[i], pads[i + n])], value=value)
        return x, (0,) * n
    return x, tuple(pads[:n])


def _like(x, t):
    """A weight or bias in the image data's dtype and device: a one-element bias (a convolution to one
    channel) stays a host fp32 tensor with the shape constants."""
    return t if t is None or (t.dtype == x.dtype and t.device == x.device) else t.to(x.device, x.dtype)


def _conv(x, w, b=None, *, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1, **_):
    w, b = _like(x, w), _like(x, b)
    x, pad = _symmetric_pads(x, pads, len(strides))
    if group > 1 and x.device.type == "cpu":
        # PyTorch 2.13's CPU grouped convolution on a channels-last bf16 tensor with a long kernel (the
        # day2night renderer's 1x17 blur) runs for minutes on AVX-512 BF16 CPUs; on a contiguous copy it
        # takes milliseconds.
        x = x.contiguous()
    return F.conv2d(x, w, b, tuple(strides), pad, tuple(dilations), group)


def _conv_transpose(x, w, b=None, *, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1),
                    group=1, output_padding=(0, 0), **_):
    n = len(strides)
    w, b = _like(x, w), _like(x, b)
    y = F.conv_transpose2d(x, w, b, tuple(strides), 0, tuple(output_padding), group,
                           tuple(dilations))
    h, w_ = y.shape[-2:]
    return y[..., pads[0]: h - pads[n], pads[1]: w_ - pads[n + 1]]


def _pad(x, pads, value=None, axes=None, *, mode=b"constant", **_):
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = _ints(pads)
    r = x.dim()
    axes = _ints(axes) if axes is not None else list(range(r))
    k = len(axes)
    per_axis = {a % r: (pads[i], pads[i + k]) for i, a in enumerate(axes)}
    flat = []
    for a in reversed(range(r)):
        if a in per_axis:
            flat += per_axis[a]
        elif flat:
            flat += (0, 0)
    while flat and flat[-2:] == [0, 0]:
        flat = flat[:-2]
    mode = {"edge": "replicate"}.get(mode, mode)
    if mode != "constant" and len(flat) < 2 * (r - 2):  # torch's reflect/replicate pad all r-2 last dims
        flat += [0] * (2 * (r - 2) - len(flat))
    if mode == "constant":
        return F.pad(x, flat, value=float(value) if value is not None else 0.0)
    return F.pad(x, flat, mode=mode)


def _resize(x, roi=None, scales=None, sizes=None, *, mode=b"nearest",
            coordinate_transformation_mode=b"half_pixel", **_):
    mode = mode.decode() if isinstance(mode, bytes) else mode
    ctm = coordinate_transformation_mode
    ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
    if sizes is not None and sizes.numel():
        size = _ints(sizes)[2:]
        kw = {"size": size}
    else:
        kw = {"scale_factor": [float(s) for s in scales.tolist()[2:]]}
    if mode == "nearest":
        return F.interpolate(x, mode="nearest", **kw)
    if mode in ("linear", "cubic"):
        m = "bilinear" if mode == "linear" else "bicubic"
        return F.interpolate(x, mode=m, align_corners=(ctm == "align_corners"), **kw)
    raise BackendError(f"torch backend: Resize mode '{mode}' is not supported")


def _slice(x, starts, ends, axes=None, steps=None, **_):
    starts, ends = _ints(starts), _ints(ends)
    axes = _ints(axes) if axes is not None else list(range(len(starts)))
    steps = _ints(steps) if steps is not None else [1] * len(starts)
    for s, e, a, st in zip(starts, ends, axes, steps):
        n = x.shape[a]
        clamp = lambda v: max(-n - 1, min(v, n))  # ONNX clamps out-of-range bounds (INT64_MAX etc.)
        keep = range(n)[slice(clamp(s), clamp(e), st)]
        if st == 1:
            x = x.narrow(a, keep.start, len(keep)) if len(keep) else x.narrow(a, 0, 0)
        else:
            x = torch.index_select(x, a, torch.tensor(list(keep), dtype=torch.long, device=x.device))
    return x


def _max_pool(x, *, kernel_shape, strides=None, pads=None, dilations=None, ceil_mode=0, **_):
    n = len(kernel_shape)
    x, pad = _symmetric_pads(x, pads, n, float("-inf"))
    return F.max_pool2d(x, tuple(kernel_shape), tuple(strides or (1,) * n), pad,
                        tuple(dilations or (1,) * n), bool(ceil_mode))


def _avg_pool(x, *, kernel_shape, strides=None, pads=None, ceil_mode=0, count_include_pad=0, **_):
    n = len(kernel_shape)
    x, pad = _symmetric_pads(x, pads, n)
    return F.avg_pool2d(x, tuple(kernel_shape), tuple(strides or (1,) * n), pad, bool(ceil_mode),
                        bool(count_include_pad))


def _reduce(fn):
    """ReduceMax / ReduceSum: axes as an attribute (opset < 18 for ReduceMax) or as the second input
    (ReduceSum from opset 13); none means every axis."""
    def op(x, axes_in=None, *, axes=None, keepdims=1, **_):
        ax = axes_in if axes_in is not None else axes
        return fn(x, _ints(ax), bool(keepdims)) if ax is not None and len(ax) else fn(x, list(range(x.dim())), bool(keepdims))
    return op


def _instance_norm(x, scale, bias, *, epsilon=1e-5, **_):
    return F.instance_norm(x, weight=scale, bias=bias, eps=epsilon)


def _batch_norm(x, scale, bias, mean, var, *, epsilon=1e-5, **_):
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, epsilon)


def _shape(x, **_):
    return torch.tensor(x.shape, dtype=torch.int64)  # shape arithmetic: on the host


def _constant_of_shape(s, value=None, **_):
    """A tensor of ``value`` (default float32 0) shaped ``s``, on the device of ``s`` (the host for
    shape arithmetic) and in the dtype of ``value`` (int64 for pad amounts)."""
    from onnx import numpy_helper

    fill = torch.from_numpy(numpy_helper.to_array(value).copy()).reshape(()) if value is not None \
        else torch.tensor(0.0)
    return torch.full(_ints(s), fill.item(), dtype=fill.dtype, device=s.device)


def _gather(x, idx, *, axis=0, **_):
    if idx.dim() == 0:
        return x.select(axis, int(idx))
    idx = idx.to(x.device)  # constant indices (host) into data on the device
    return torch.index_select(x, axis, idx.flatten().long()).reshape(
        x.shape[:axis] + idx.shape + x.shape[axis + 1:])


def _unsqueeze(x, axes=None, **kw):
    axes = sorted(_ints(axes if axes is not None else kw["axes"]))
    for a in axes:
        x = x.unsqueeze(a)
    return x


def _reshape(x, shape, **_):
    shape = _ints(shape)
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _cast(x, *, to, **_):
    import onnx

    dt = {onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.FLOAT16: torch.float16,
          onnx.TensorProto.INT64: torch.int64, onnx.TensorProto.INT32: torch.int32,
          onnx.TensorProto.BOOL: torch.bool, onnx.TensorProto.DOUBLE: torch.float64}[to]
    return x.to(dt)


def _clip(x, lo=None, hi=None, *, min=None, max=None, **_):
    """Bounds as inputs (opset 11 on: tensors, brought beside ``x`` as any elementwise operator's operands
    are, by _same_device) or as attributes (numbers)."""
    lo = lo if lo is not None else min
    hi = hi if hi is not None else max
    return torch.clamp(x, lo, hi)


OPS = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "InstanceNormalization": _instance_norm,
    "BatchNormalization": _batch_norm,
    "Relu": lambda x, **_: F.relu(x),
    "LeakyRelu": lambda x, alpha=0.01, **_: F.leaky_relu(x, alpha),
    "PRelu": lambda x, s, **_: torch.where(x >= 0, x, x * s),
    "Sigmoid": lambda x, **_: torch.sigmoid(x),
    "Tanh": lambda x, **_: torch.tanh(x),
    "HardSigmoid": lambda x, alpha=0.2, beta=0.5, **_: torch.clamp(alpha * x + beta, 0, 1),
    "HardSwish": lambda x, **_: F.hardswish(x),
    "Add": lambda a, b, **_: a + b,
    "Sub": lambda a, b, **_: a - b,
    "Mul": lambda a, b, **_: a * b,
    "Div": lambda a, b, **_: a / b if a.is_floating_point() else torch.div(a, b, rounding_mode="trunc"),
    "Pow": lambda a, b, **_: torch.pow(a, b),
    "Sqrt": lambda x, **_: torch.sqrt(x),
    "Neg": lambda x, **_: -x,
    "Max": lambda *xs, **_: torch.stack(torch.broadcast_tensors(*xs)).amax(0),
    "Min": lambda *xs, **_: torch.stack(torch.broadcast_tensors(*xs)).amin(0),
    "Clip": _clip,
    "Pad": _pad,
    "Resize": _resize,
    "Concat": lambda *xs, axis, **_: torch.cat(xs, axis),
    "Identity": lambda x, **_: x,
    "Shape": _shape,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": lambda x, axes=None, **_: x.squeeze(*_ints(axes)) if axes is not None else x.squeeze(),
    "Slice": _slice,
    "Reshape": _reshape,
    "Cast": _cast,
    "Transpose": lambda x, perm, **_: x.permute(*perm),
    "DepthToSpace": lambda x, blocksize, mode=b"DCR", **_: F.pixel_shuffle(x, blocksize),
    "ReduceMean": lambda x, axes=None, keepdims=1, **_: x.mean(_ints(axes), keepdim=bool(keepdims)),
    "ReduceMin": lambda x, axes=None, keepdims=1, **_: (x.amin(_ints(axes), keepdim=bool(keepdims))
                                                        if axes is not None else x.amin()),
    "ReduceMax": _reduce(lambda x, ax, k: x.amax(ax, keepdim=k)),
    "ReduceSum": _reduce(lambda x, ax, k: x.sum(ax, keepdim=k)),
    "MaxPool": _max_pool,
    "AveragePool": _avg_pool,
    "Abs": lambda x, **_: torch.abs(x),
    "Greater": lambda a, b, **_: a > b,
    "LessOrEqual": lambda a, b, **_: a <= b,
    "Reciprocal": lambda x, **_: 1.0 / x,
    "Floor": lambda x, **_: torch.floor(x),
    "Ceil": lambda x, **_: torch.ceil(x),
    "Equal": lambda a, b, **_: a == b,
    "Where": lambda c, a, b, **_: torch.where(c, a, b),
    "ConstantOfShape": _constant_of_shape,
}


class OnnxModule(torch.nn.Module):
    """Evaluates an ONNX graph with PyTorch operators."""

    def __init__(self, onnx_path):
        super().__init__()
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(onnx_path))
        graph = model.graph
        unsupported = sorted({n.op_type for n in graph.node} - set(OPS) - {"Constant"})
        if unsupported:
            raise BackendError(
                f"torch backend: {onnx_path} uses operators it does not implement: "
                + ", ".join(unsupported) + " (use --backend openvino or onnxruntime)")
        # float constants are buffers (moved and cast with the module: image data on the device);
        # integer and boolean ones, and one-element float ones, stay host tensors (shape arithmetic, such
        # as a processing size computed from the input's shape; _same_device passes them to the device's
        # kernels as numbers) - except a convolution's weights and bias, a one-element bias too (a
        # convolution to one channel): moved at every call, it would make the host wait for the device
        self.consts: dict[str, torch.Tensor | str] = {}
        weights = {n for node in graph.node if node.op_type in ("Conv", "ConvTranspose") for n in node.input[1:]}

        def keep(name, t):
            if t.is_floating_point() and (t.numel() > 1 or name in weights):
                buf = f"w{len(self.consts)}"
                self.register_buffer(buf, t)
                self.consts[name] = buf
            else:
                self.consts[name] = t

        for init in graph.initializer:
            keep(init.name, torch.from_numpy(numpy_helper.to_array(init).copy()))
        self.nodes = []
        for node in graph.node:
            attrs = _attrs(node)
            if node.op_type == "Constant":
                keep(node.output[0], torch.from_numpy(numpy_helper.to_array(attrs["value"]).copy()))
                continue
            if node.op_type == "DepthToSpace" and attrs.get("mode", b"DCR") not in (b"CRD", "CRD"):
                raise BackendError("torch backend: DepthToSpace mode DCR is not supported")
            self.nodes.append((node.op_type, list(node.input), list(node.output), attrs))
        self.input_names = [i.name for i in graph.input if i.name not in self.consts]
        self.output_names = [o.name for o in graph.output]
        # Nodes whose values follow from the inputs' shapes alone (Shape, and what is computed from it and
        # from constants: the exporter's run-time pad amounts, resize sizes): worked out on a call with new
        # input shapes and kept, so a call with shapes seen before runs the image operators only (on a GPU
        # the host's time per operator is what bounds a small model at batch 1)
        known = set(self.consts)
        self.static = []
        for op, ins, outs, _ in self.nodes:
            self.static.append(op == "Shape" or all(not n or n in known for n in ins))
            if self.static[-1]:
                known.update(outs)
        self._static_outs = [outs[0] for (_, _, outs, _), s in zip(self.nodes, self.static) if s]
        self._by_shapes: dict[tuple, dict] = {}

    def _const(self, name):
        v = self.consts[name]
        return getattr(self, v) if isinstance(v, str) else v

    def forward(self, x, *state):
        """The image output; with a temporal model's state tensors (the graph's other inputs, in
        order): the image output and the new state tensors."""
        inputs = (x, *state)
        key = tuple(tuple(t.shape) for t in inputs) + (x.dtype, x.device)
        known = self._by_shapes.get(key)
        env = dict(zip(self.input_names, inputs))
        if known is not None:
            env.update(known)
        for (op, ins, outs, attrs), static in zip(self.nodes, self.static):
            if static and known is not None:
                continue
            args = [None if not n else (env[n] if n in env else self._const(n)) for n in ins]
            while args and args[-1] is None:
                args.pop()
            if op in _ELEMENTWISE:
                args = _same_device(args, scalars=op != "Concat")
            y = OPS[op](*args, **attrs)
            if y.dim() == 4 and y.is_floating_point() and y.dtype != x.dtype:
                # image data stays in the backend's precision: a Cast to float, or zeros made by
                # ConstantOfShape, would otherwise carry fp32 into an fp16/bf16 convolution
                y = y.to(x.dtype)
            env[outs[0]] = y
        if known is None:
            if len(self._by_shapes) >= 16:  # a stream changes size rarely: keep the newest few
                self._by_shapes.pop(next(iter(self._by_shapes)))
            self._by_shapes[key] = {o: env[o] for o in self._static_outs}
        if not state:
            return env[self.output_names[0]]
        return env[self.output_names[0]], [env[n] for n in self.output_names[1:]]


_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Equal", "Greater", "LessOrEqual", "Where",
                "Clip", "Concat"}  # Concat: image data beside zeros made on the host (ConstantOfShape)


def _same_device(args: list, scalars: bool = True) -> list:
    """Operands of one elementwise op on one device: host tensors (shape arithmetic, one-element
    constants) meeting image data go to the image data's device and float type; host-only stays host.

    A one-element host tensor that cannot change the result's shape stays on the host as a 0-d tensor
    (``scalars``; not for Concat, which takes tensors only): PyTorch passes it to the device's kernel as
    a number. Copied instead, each would be a host-to-device copy, and PyTorch waits for the device to
    finish all queued work before such a copy: the light renderer's few hundred constants made the GPU
    idle between its small kernels."""
    ts = [a for a in args if isinstance(a, torch.Tensor)]
    if len({a.device for a in ts}) < 2:
        return args
    big = max(ts, key=lambda a: (a.device.type != "cpu", a.numel()))
    out = []
    for a in args:
        if isinstance(a, torch.Tensor) and a.device != big.device:
            if scalars and a.numel() == 1 and a.dim() <= big.dim():
                a = a.reshape(())
            else:
                a = a.to(big.device, big.dtype if a.is_floating_point() and big.is_floating_point() else a.dtype)
        out.append(a)
    return out


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, onnx_path, precision="auto", mean=(0.5,) * 3, std=(0.5,) * 3, device=None,
                 threads: int | None = None):
        super().__init__(onnx_path, precision, mean, std)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if threads and self.device.type == "cpu":
            torch.set_num_threads(int(threads))
        if precision == "auto":
            precision = "fp16" if self.device.type == "cuda" else "fp32"
        if precision not in ("fp32", "fp16", "bf16"):
            raise BackendError(f"torch backend: unknown precision '{precision}'")
        if precision == "fp16" and self.device.type != "cuda":  # as OpenVINO does on a CPU without fp16
            log.warning("notice: the torch backend runs fp16 on CUDA only; running bf16 on the CPU")
            precision = "bf16"
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self.precision = precision
        self.module = OnnxModule(onnx_path).to(self.device, self.dtype).eval()
        self._mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)

    def describe(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU"
        return f"torch {name} {self.precision}"

    def _states(self, state):
        """A temporal model's state, on the device in the backend's precision."""
        return [torch.from_numpy(np.ascontiguousarray(s)).to(self.device, self.dtype) for s in state]

    @staticmethod
    def _host(new) -> list[np.ndarray]:
        return [t.float().cpu().numpy() for t in new]

    @torch.inference_mode()
    def infer(self, x: np.ndarray, state: list[np.ndarray] | None = None):
        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device, self.dtype)
        if state is None:
            return self.module(t).float().cpu().numpy()
        y, new = self.module(t, *self._states(state))
        return y.float().cpu().numpy(), self._host(new)

    @torch.inference_mode()
    def run(self, batch: np.ndarray, state: list[np.ndarray] | None = None):
        """uint8 NHWC -> uint8 NHWC with the conversions on the backend's device (with ``state``:
        and the new state)."""
        frames = torch.from_numpy(batch).to(self.device)
        if state is None:
            return self.run_tensor(frames).cpu().numpy()
        out, new = self.run_tensor(frames, self._states(state))
        return out.cpu().numpy(), self._host(new)

    @torch.inference_mode()
    def run_tensor(self, frames: "torch.Tensor", state: list | None = None):
        """uint8 NHWC tensor on the backend's device -> uint8 NHWC tensor on the same device
        (with ``state``, tensors on the device: and the new state tensors)."""
        t = frames.permute(0, 3, 1, 2).float()
        t = ((t / 255.0 - self._mean) / self._std).to(self.dtype)
        if state is None:
            y = self.module(t)
        else:
            y, new = self.module(t, *state)
        y = y.float() * self._std + self._mean
        if not self.output_checked and y.device.type != "meta":  # meta: shapes, no values
            check_finite(bool(torch.isfinite(y).all()), self.onnx_path)
            self.output_checked = True
        y = (y * 255.0).clamp_(0, 255).round_().to(torch.uint8)
        y = y.permute(0, 2, 3, 1).contiguous()
        return y if state is None else (y, new)
