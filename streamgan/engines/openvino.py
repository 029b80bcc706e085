"""OpenVINO backend: the CPU default.

The uint8 -> float normalisation, the NHWC <-> NCHW layout change and the rounding back to uint8
are compiled into the OpenVINO graph (PrePostProcessor), so the pipeline hands OpenVINO the decoded
frames as they are and gets displayable frames back without numpy conversions. Models are compiled
for static shapes (measured ~10% faster than dynamic ones here) and cached per (N, H, W).

Precision: "auto" lets OpenVINO choose (bf16 on CPUs with AVX512_BF16/AMX, max error ~0.04 on a
[-1, 1] output), "fp32" forces exact float32, "bf16" asks for bf16 explicitly, "fp16" runs fp16
where the device has it and otherwise says what it runs instead (bf16 if present, else fp32).
"int8" runs the plugin's int8 model (``int8``: an OpenVINO IR made by NNCF post-training
quantisation, see trainer/quantize.py); "auto" runs it too when one is given (the translator gives
it only when the card says it passed its quality gate) and the CPU has int8 dot-product
instructions (VNNI or AMX), where it is faster than bf16. A graph with a depthwise convolution of
15 or more columns runs in fp32 whatever was asked, with a notice: OpenVINO's bf16/fp16 CPU kernels
never finished compiling one on an AVX512-FP16 Xeon (``wide_row_convolutions``).

YUV: ``run_i420`` takes the decoder's I420 frames (FFmpeg yuv420p, BT.601 limited range) and
returns I420: the YUV -> RGB conversion is OpenVINO preprocessing, the RGB -> YUV conversion (a
1x1 convolution for Y, a 2x2 average and a 1x1 convolution for U and V) is appended to the graph,
so no swscale colour conversion is needed around the model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import BackendError
from .base import Backend, check_finite, no_int8

_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
log = logging.getLogger("streamgan")
# CPU flags of int8 dot-product instructions: where an int8 model is worth choosing by itself
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# BT.601 limited range (what FFmpeg's swscale uses for yuv420p without colour tags): RGB 0..255
# -> Y 16..235, U/V 16..240 (OpenVINO's I420 -> RGB preprocessing is the inverse)
_TO_Y = np.array([0.256788, 0.504129, 0.0979059], np.float32)
_TO_UV = np.array([[-0.148223, -0.290993, 0.439216], [0.439216, -0.367788, -0.0714274]],
                  np.float32)


# kernel width from which OpenVINO's bf16/fp16 CPU compile of a depthwise convolution may never end
WIDE_ROW = 15


def wide_row_convolutions(model) -> list[str]:
    """Grouped convolutions whose kernel is ``WIDE_ROW`` or more wide. OpenVINO's bf16 and fp16 CPU kernels never
    finish compiling a 1xK depthwise convolution with K >= 15 on some CPUs (seen with OpenVINO 2026.4 on an
    AVX512-FP16 Xeon: the day2night plugins before 2026.11.27 hung before their first frame); Kx1 ones and
    fp32 compile at once."""
    wide = []
    for op in model.get_ops():
        if op.get_type_name() != "GroupConvolution":
            continue
        w = op.input_value(1).get_partial_shape()
        if w.rank.is_static and w[w.rank.get_length() - 1].is_static and w[w.rank.get_length() - 1].get_length() >= WIDE_ROW:
            wide.append(op.get_friendly_name())
    return wide


def cpu_int8_accelerated(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when this CPU has VNNI or AMX int8 instructions (read from /proc/cpuinfo)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(set(line.split(":", 1)[1].split()) & set(INT8_FLAGS))
    return False


class OpenVINOBackend(Backend):
    name = "openvino"

    takes_i420 = True

    def __init__(self, onnx_path, precision="auto", mean=(0.5,) * 3, std=(0.5,) * 3, device="CPU",
                 threads: int | None = None, int8: str | Path | None = None):
        super().__init__(onnx_path, precision, mean, std)
        try:
            import openvino as ov
        except ImportError as e:  # pragma: no cover - openvino is a core dependency
            raise BackendError(f"OpenVINO is not installed ({e}); pip install openvino") from None
        self._ov = ov
        self.core = ov.Core()
        self.device = device
        self.config: dict = {}
        if threads:  # several files at once (batch workers): each gets its share of the cores
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
            # OpenVINO pins its threads to the first cores: two 1-thread workers would share core 0
            # (measured: 3.7 fps each, against 6.6 unpinned). Let the OS spread the processes.
            self.config["ENABLE_CPU_PINNING"] = False
        self.runs = precision  # what really runs (fp16 falls back where the device lacks it)
        if precision == "fp16" and "FP16" not in self._capabilities():
            self.runs = "bf16" if "BF16" in self._capabilities() else "fp32"
            log.warning("notice: this %s has no fp16 support; running %s instead", device,
                        self.runs)
            precision = self.runs
        path = self.onnx_path
        if precision == "int8" and int8 is None:
            raise no_int8(self.onnx_path)
        if precision in _HINTS:
            if precision == "bf16" and "BF16" not in self._capabilities():
                raise BackendError(f"precision bf16: this {device} has no bf16 support; use fp32")
            self.config["INFERENCE_PRECISION_HINT"] = _HINTS[precision]
        elif precision == "int8" or (precision == "auto" and int8 is not None
                                     and device == "CPU" and cpu_int8_accelerated()):
            path = Path(int8)  # layers kept out of int8 run at OpenVINO's default precision
            self.runs = "int8"
        elif precision != "auto":
            raise BackendError(f"OpenVINO: unknown precision '{precision}' (auto, fp32, bf16, "
                               "int8)")
        self.model_path = path
        try:
            self._model = self.core.read_model(str(path))
        except Exception as e:
            raise BackendError(f"OpenVINO cannot read {path}: {e}") from None
        self.note = ""  # why the precision differs from the one asked for
        reduced = self.config.get("INFERENCE_PRECISION_HINT", "f32") != "f32" or (
            self.runs in ("auto", "int8") and {"BF16", "FP16"} & set(self._capabilities("CPU")))
        wide = wide_row_convolutions(self._model) if "CPU" in device and reduced else []  # CPU, AUTO, HETERO
        if wide:
            self.config["INFERENCE_PRECISION_HINT"] = "f32"
            self.note = (f"{len(wide)} depthwise convolution(s) of 15 or more columns, which OpenVINO's bf16/fp16 "
                         "CPU kernels may never finish compiling; re-export the plugin to run it faster")
            log.warning("notice: %s: running fp32: %s", path, self.note)
            if self.runs != "int8":
                self.runs = "fp32"
        self._float: dict[tuple, object] = {}
        self._uint8: dict[tuple, object] = {}
        self._i420: dict[tuple, object] = {}

    def _capabilities(self, device: str | None = None) -> list[str]:
        try:
            return list(self.core.get_property(device or self.device, "OPTIMIZATION_CAPABILITIES"))
        except Exception:
            return []

    def describe(self) -> str:
        p = self.runs
        if self.note:
            p = "int8 (other layers fp32)" if p == "int8" else f"fp32 ({self.precision}: wide depthwise convolutions)"
        elif p == "int8":
            p = "int8 (auto: VNNI/AMX)" if self.precision == "auto" else "int8"
        elif p == "auto":
            p = "bf16 (auto)" if "BF16" in self._capabilities() else "fp32 (auto)"
        elif p != self.precision:
            p = f"{p} ({self.precision} not supported here)"
        return f"openvino {self.device} {p}"

    def _compile(self, model, shape, state=None):
        """Compiled for these shapes: the image input's and, for a temporal model, its state's."""
        shapes = {model.inputs[0].any_name: shape}
        shapes.update((name, list(s.shape)) for (name, _), s in zip(self.state_io, state or ()))
        model.reshape(shapes)
        return self.core.compile_model(model, self.device, self.config)

    def _call(self, cache: dict, make, x: np.ndarray, state):
        """Run the compiled model for these shapes (compiled the first time) on ``x`` and ``state``:
        its results."""
        key = (x.shape,) + tuple(s.shape for s in state or ())
        compiled = cache.get(key)
        if compiled is None:
            compiled = cache[key] = self._compile(make(), list(x.shape), state)
        inputs = {0: x}
        inputs.update((name, s) for (name, _), s in zip(self.state_io, state or ()))
        return compiled(inputs)

    def _state(self, results, state):
        return None if state is None else [results[out] for _, out in self.state_io]

    def infer(self, x: np.ndarray, state: list[np.ndarray] | None = None):
        results = self._call(self._float, self._model.clone, x, state)
        return results[0] if state is None else (results[0], self._state(results, state))

    def _checked(self, results):
        """The image output; the first time, the graph's last output (whether the network's
        output was all finite, see _with_finite_flag) is checked."""
        if not self.output_checked:
            check_finite(bool(results[len(results) - 1] > 0.5), self.model_path)
            self.output_checked = True
        return results[0]

    def run(self, batch: np.ndarray, state: list[np.ndarray] | None = None):
        results = self._call(self._uint8, self._uint8_model, batch, state)
        out = self._checked(results)
        return out if state is None else (out, self._state(results, state))

    def run_i420(self, batch: np.ndarray, state: list[np.ndarray] | None = None):
        n, rows, w = batch.shape
        h = rows * 2 // 3
        results = self._call(self._i420, self._i420_model, batch.reshape(n, rows, w, 1), state)
        out = self._checked(results).reshape(n, h * 3 // 2, w)
        return out if state is None else (out, self._state(results, state))

    def _with_finite_flag(self):
        """A copy of the graph with a second output: 1 when the network's output is all finite,
        0 when it holds NaN or infinity (which the uint8 conversion would hide)."""
        import openvino.opset13 as ops

        model = self._model.clone()
        y = model.get_results()[0].input_value(0)
        axes = ops.constant(np.arange(len(y.get_partial_shape()), dtype=np.int64))
        model.add_results([ops.result(ops.reduce_min(ops.convert(ops.is_finite(y), "f32"),
                                                     axes, False))])
        return model

    def _i420_model(self):
        """The graph wrapped so it takes and returns I420 frames (N x H*3/2 x W uint8)."""
        ov = self._ov
        import openvino.opset13 as ops
        from openvino.preprocess import ColorFormat, PrePostProcessor

        ppp = PrePostProcessor(self._with_finite_flag())
        inp = ppp.input(0)
        inp.tensor().set_element_type(ov.Type.u8).set_color_format(
            ColorFormat.I420_SINGLE_PLANE).set_layout(ov.Layout("NHWC"))
        inp.model().set_layout(ov.Layout("NCHW"))
        inp.preprocess().convert_color(ColorFormat.RGB).convert_element_type(ov.Type.f32).mean(
            [float(v) for v in 255.0 * self.mean]).scale([float(v) for v in 255.0 * self.std])
        scale = (255.0 * self.std).reshape(1, 3, 1, 1).astype(np.float32)
        offset = (255.0 * self.mean).reshape(1, 3, 1, 1).astype(np.float32)

        def conv(x, weights):
            return ops.convolution(x, ops.constant(weights[:, :, None, None]), [1, 1], [0, 0],
                                   [0, 0], [1, 1])

        def flat(x, n):
            return ops.reshape(x, ops.concat([n, ops.constant(np.int64([-1]))], 0), False)

        def to_i420(node):
            rgb = ops.add(ops.multiply(node, ops.constant(scale)), ops.constant(offset))
            # +0.5 then truncating convert == round half up
            y = ops.add(conv(rgb, _TO_Y[None]), ops.constant(np.float32(16.5)))
            half = ops.avg_pool(rgb, [2, 2], [0, 0], [0, 0], [2, 2], True)
            uv = ops.add(conv(half, _TO_UV), ops.constant(np.float32(128.5)))
            n = ops.gather(ops.shape_of(node), ops.constant(np.int64([0])),
                           ops.constant(np.int64(0)))
            out = ops.concat([flat(y, n), flat(uv, n)], 1)  # Y plane, then U, then V
            return ops.convert(ops.clamp(out, 0.0, 255.0), "u8").output(0)

        ppp.output(0).postprocess().custom(to_i420)
        return ppp.build()

    def _uint8_model(self):
        """The ONNX graph wrapped so it takes and returns uint8 NHWC RGB frames."""
        ov = self._ov
        import openvino.opset13 as ops
        from openvino.preprocess import PrePostProcessor

        ppp = PrePostProcessor(self._with_finite_flag())
        inp = ppp.input(0)
        inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        inp.model().set_layout(ov.Layout("NCHW"))
        inp.preprocess().convert_element_type(ov.Type.f32).mean(
            [float(v) for v in 255.0 * self.mean]
        ).scale([float(v) for v in 255.0 * self.std])

        scale = (255.0 * self.std).reshape(1, 3, 1, 1).astype(np.float32)
        # +0.5 then truncating convert == round half up
        offset = (255.0 * self.mean + 0.5).reshape(1, 3, 1, 1).astype(np.float32)

        def to_uint8(node):
            y = ops.add(ops.multiply(node, ops.constant(scale)), ops.constant(offset))
            y = ops.clamp(y, 0.0, 255.0)
            return ops.convert(y, "u8").output(0)

        out = ppp.output(0)
        out.postprocess().custom(to_uint8)
        out.model().set_layout(ov.Layout("NCHW"))
        out.tensor().set_layout(ov.Layout("NHWC"))
        return ppp.build()
