"""Every CPU backend agrees with the PyTorch model the ONNX file was exported from."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from streamgan import engines
from streamgan.engines.base import from_model_output, to_model_input
from streamgan.errors import BackendError, UsageError

FP32_TOL = 1e-3
BF16_TOL = 0.1  # stated tolerance for OpenVINO's bf16 on [-1, 1] outputs (observed ~0.04)

CPU_FP32 = [("openvino", "fp32"), ("onnxruntime", "fp32"), ("torch", "fp32")]


@pytest.fixture(scope="module")
def reference(tiny_generator):
    torch = pytest.importorskip("torch")
    model, onnx = tiny_generator
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 68, 100)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    return onnx, x, y


@pytest.mark.parametrize("name,precision", CPU_FP32)
def test_fp32_backends_match_pytorch(reference, name, precision):
    onnx, x, y = reference
    b = engines.create(name, onnx, precision)
    err = np.abs(b.infer(x) - y).max()
    assert err <= FP32_TOL, f"{b.describe()}: max abs error {err}"


def test_openvino_bf16_within_stated_tolerance(reference):
    onnx, x, y = reference
    b = engines.create("openvino", onnx, "auto")
    err = np.abs(b.infer(x) - y).max()
    assert err <= BF16_TOL, f"{b.describe()}: max abs error {err}"


@pytest.mark.parametrize("name", ["openvino", "onnxruntime", "torch"])
def test_uint8_path_matches_float_path(reference, name):
    """run() (uint8 NHWC, conversions fused where the backend can) equals infer() + host maths."""
    onnx, _, _ = reference
    b = engines.create(name, onnx, "fp32")
    frames = np.random.default_rng(1).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    expect = from_model_output(b.infer(to_model_input(frames, b.mean, b.std)), b.mean, b.std)
    got = b.run(frames)
    assert got.dtype == np.uint8 and got.shape == frames.shape
    assert np.abs(got.astype(int) - expect).max() <= 1  # rounding of exact halves only


def test_openvino_compiles_once_per_shape(reference):
    onnx, _, _ = reference
    b = engines.create("openvino", onnx, "fp32")
    frames = np.zeros((1, 64, 96, 3), np.uint8)
    b.run(frames)
    b.run(frames)
    b.run(np.zeros((1, 32, 48, 3), np.uint8))
    assert len(b._uint8) == 2


def test_openvino_workers_with_a_thread_share_are_not_pinned_to_the_first_cores(reference):
    """Batch workers get `threads=cores/jobs`; OpenVINO's default pinning would put every 1-thread
    worker on core 0 (two workers ran at half speed each). Checked on the compiled model."""
    onnx, _, _ = reference
    b = engines.create("openvino", onnx, "fp32", threads=1)
    b.run(np.zeros((1, 64, 96, 3), np.uint8))
    compiled = next(iter(b._uint8.values()))
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert compiled.get_property("ENABLE_CPU_PINNING") is False


def test_unknown_backend_and_precision(identity_onnx):
    with pytest.raises(UsageError, match="unknown backend"):
        engines.create("cuda-magic", identity_onnx)
    with pytest.raises(UsageError, match="unknown precision"):
        engines.create("openvino", identity_onnx, "int3")
    with pytest.raises(UsageError, match="onnxruntime runs the model as stored"):
        engines.create("onnxruntime", identity_onnx, "bf16")


def test_fp16_on_a_cpu_falls_back_and_says_so(identity_onnx, caplog):
    """As the README says of every CPU backend: fp16 where the CPU cannot runs bf16, with a notice."""
    pytest.importorskip("torch")
    with caplog.at_level("WARNING", logger="streamgan"):
        b = engines.create("torch", identity_onnx, "fp16", device="cpu")
    assert b.precision == "bf16" and "torch" in b.describe() and "bf16" in b.describe()
    assert any(r.getMessage().startswith("notice: the torch backend runs fp16 on CUDA only")
               for r in caplog.records)
    x = np.random.default_rng(0).integers(0, 255, (1, 32, 48, 3), dtype=np.uint8)
    assert np.abs(b.run(x).astype(int) - x).max() <= 2  # the identity model, in bf16


def test_broken_onnx_is_a_backend_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not an onnx file")
    for name in ("openvino", "onnxruntime"):
        with pytest.raises(BackendError):
            engines.create(name, bad)


def test_auto_choice_on_a_cpu_machine_is_openvino():
    if engines.nvidia_driver_present():
        pytest.skip("this machine has an NVIDIA driver")
    assert engines.auto_choice() == "openvino"


def test_import_does_not_load_torch(identity_onnx):
    code = ("import sys, streamgan, streamgan.cli, streamgan.engines as e;"
            f"t = streamgan.Translator({str(identity_onnx)!r}, backend='openvino');"
            "t.translate(__import__('numpy').zeros((16, 16, 3), 'uint8'));"
            "e.available(); print('torch' in sys.modules, 'trainer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_torch_backend_refuses_unknown_operators(tmp_path):
    pytest.importorskip("torch")
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 4, 4])
    g = helper.make_graph([helper.make_node("Erf", ["input"], ["output"])], "g", [x], [y])
    path = tmp_path / "erf.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(BackendError, match="Erf"):
        engines.create("torch", path, "fp32")


def _row_blur_onnx(path, k: int):
    """ONNX: a depthwise 1 x k box blur of each channel (zero padding), as the day2night light renderer's
    wide blurs were exported before 2026.11.27."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((3, 1, 1, k), 1.0 / k, np.float32), "w")
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])
    node = helper.make_node("Conv", ["input", "w"], ["output"], group=3, kernel_shape=[1, k], pads=[0, k // 2, 0, k // 2])
    onnx.save(helper.make_model(helper.make_graph([node], "rows", [x], [y], [w]),
                                opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.timeout(120)
def test_openvino_runs_wide_depthwise_rows_in_fp32(tmp_path, monkeypatch):
    """OpenVINO's bf16/fp16 CPU kernels never finish compiling a 1x17 depthwise convolution on some CPUs
    (AVX512-FP16 Xeons): such a model runs in fp32 (exactly) instead of hanging before its first frame."""
    from streamgan.engines.openvino import OpenVINOBackend, wide_row_convolutions

    # as on a CPU with bf16, where OpenVINO would choose it (on others the test still checks fp32 results)
    monkeypatch.setattr(OpenVINOBackend, "_capabilities", lambda self, device=None: ["BF16", "FP32"])
    wide = engines.create("openvino", _row_blur_onnx(tmp_path / "wide.onnx", 17), "auto")
    narrow = engines.create("openvino", _row_blur_onnx(tmp_path / "narrow.onnx", 13), "auto")
    assert len(wide_row_convolutions(wide._model)) == 1 and not wide_row_convolutions(narrow._model)
    assert wide.config.get("INFERENCE_PRECISION_HINT") == "f32"
    assert "INFERENCE_PRECISION_HINT" not in narrow.config  # the CPU's own choice
    assert "wide depthwise" in wide.describe() and "wide" not in narrow.describe()
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 36, 64)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (0, 0), (0, 0), (8, 8)))
    expect = np.stack([padded[..., i:i + 64] for i in range(17)]).mean(0)
    assert np.abs(wide.infer(x) - expect).max() < 1e-5


def test_shipped_plugins_have_no_wide_depthwise_rows():
    """The shipped graphs blur wide rows as columns of the transposed image, so they keep the CPU's fast
    precision (bf16 where it has it)."""
    import openvino as ov

    from streamgan.engines.openvino import wide_row_convolutions
    from streamgan import plugins

    for name in ("derain", "day2night"):
        model = plugins.load(name)
        for path in filter(None, (model.onnx, model.int8)):
            assert wide_row_convolutions(ov.Core().read_model(str(path))) == [], path


def test_loading_a_model_sends_nothing_over_the_network():
    """Importing OpenVINO sends a usage event (its converter's telemetry, from a child process):
    streamgan keeps it off, so a run starts no such process and makes no connection."""
    code = """
import multiprocessing, socket, sys
started = []
def refuse(*a, **k):
    started.append(repr(a)[:200])
    raise OSError("refused by the test")
multiprocessing.Process.start = refuse
socket.socket.connect = refuse
import numpy as np
import streamgan
tr = streamgan.Translator("derain", "openvino")
tr.translate(np.zeros((64, 64, 3), np.uint8))
import time; time.sleep(1)  # telemetry is sent from a thread
print("started", len(started), started)
"""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "started 0 []" in r.stdout, r.stdout + r.stderr
