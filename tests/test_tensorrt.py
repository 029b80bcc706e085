"""TensorRT engines: profiles, cache keys, stale-engine detection, fallback choice, operator check.

Everything except the ``gpu``-marked tests runs without a GPU or TensorRT. The cache tests use a
stand-in for the one function that calls TensorRT's builder, so they exercise only streamgan's own
caching decisions; nothing here pretends to be TensorRT's output.
"""

from __future__ import annotations

import importlib.machinery
import json
import logging
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from streamgan import engines
from streamgan.engines import trt_build as tb
from streamgan.errors import BackendError, UsageError

REPO = Path(__file__).resolve().parent.parent
ENV = ("10.3.0", "NVIDIA H100 80GB HBM3", "9.0")


# -- a tiny generator, exported like the trainer's ----------------------------------------------

@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch", reason="torch is needed to export the test generator")
    pytest.importorskip("onnx", reason="onnx is needed to export the test generator")
    from torch import nn

    class Block(nn.Module):
        def __init__(self, ch):
            super().__init__()
            self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch),
                                      nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3),
                                      nn.InstanceNorm2d(ch))

        def forward(self, x):
            return x + self.body(x)

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.ReflectionPad2d(3), nn.Conv2d(3, 8, 7), nn.InstanceNorm2d(8), nn.ReLU(True),
        nn.Conv2d(8, 16, 3, 2, 1), nn.InstanceNorm2d(16), nn.LeakyReLU(0.2, True),
        Block(16),
        nn.ConvTranspose2d(16, 8, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(8), nn.ReLU(True),
        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(8, 8, 3, 2, 1),
        nn.ReflectionPad2d(3), nn.Conv2d(8, 3, 7), nn.Tanh(),
    ).eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    dyn = {0: "n", 2: "h", 3: "w"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer/deprecation chatter
        torch.onnx.export(net, torch.randn(1, 3, 32, 48), str(path), opset_version=17,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": dyn, "output": dyn}, dynamo=False)
    return path


# -- operator support -------------------------------------------------------------------------

def test_tiny_generator_uses_only_tensorrt_supported_operators(tiny_onnx):
    ops = tb.onnx_operators(tiny_onnx)
    assert {"Conv", "ConvTranspose", "InstanceNormalization", "Pad", "Tanh", "Resize"} <= ops
    assert ops <= tb.TRT_SUPPORTED_OPS, sorted(ops - tb.TRT_SUPPORTED_OPS)
    assert tb.unsupported_operators(tiny_onnx) == []


def test_unsupported_operator_is_reported_before_any_build(tmp_path, monkeypatch):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Unique", ["r"], ["y"]),
         helper.make_node("Inverse", ["r"], ["z"], domain="com.microsoft")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert tb.unsupported_operators(path) == ["Unique", "com.microsoft::Inverse"]
    monkeypatch.setattr(tb, "_build_engine_bytes", lambda *a, **k: pytest.fail("must not build"))
    with pytest.raises(BackendError, match="does not support: Unique"):
        tb.compile_engine(path, cache_dir=tmp_path / "c", environment=ENV)


def _state_for(onnx_path: Path, n: int, h: int, w: int):
    """A temporal plugin's zero state for n frames of h x w (float32 arrays), None for a frame-by-frame one."""
    from streamgan.card import ModelCard
    from streamgan.temporal import state_size

    card = ModelCard.load(onnx_path.parent / "card.yaml")
    if card.temporal is None:
        return None
    return [np.zeros((n, s.channels, *state_size(w, h, card.processing, s.scale)[::-1]), np.float32)
            for s in card.temporal.state]


def _plugin_onnx():
    found = sorted((REPO / "plugins").glob("*/*.onnx"))  # model.onnx, or what a card names
    return found or [pytest.param(None, marks=pytest.mark.skip(
        reason="no shipped plugins/*/model.onnx in this checkout (trained weights not present)"))]


@pytest.mark.parametrize("onnx_path", _plugin_onnx(), ids=lambda p: p.parent.name if p else "none")
def test_shipped_plugins_use_only_tensorrt_supported_operators(onnx_path):
    pytest.importorskip("onnx")
    assert tb.unsupported_operators(onnx_path) == []


# -- profiles ---------------------------------------------------------------------------------

def test_profile_360p_to_1080p_rounds_up_to_the_size_multiple():
    p = tb.compute_profile("1..8", "360p..1080p", size_multiple=16)
    assert p.batch == (1, 8, 8)
    assert p.height == (368, 720, 1088)  # 360 and 1080 are padded up to multiples of 16
    assert p.width == (640, 1280, 1920)
    assert p.shapes() == ((1, 3, 368, 640), (8, 3, 720, 1280), (8, 3, 1088, 1920))
    assert tb.compute_profile("1..8", "360p..1080p", size_multiple=4).height == (360, 720, 1080)


def test_profile_from_lists_explicit_ranges_and_opt():
    p = tb.compute_profile((2, 6), "720p,1920x1080", opt_resolution="1920x1080", opt_batch=4)
    assert (p.batch, p.height, p.width) == ((2, 4, 6), (720, 1080, 1080), (1280, 1920, 1920))
    p = tb.compute_profile(4, height_range=(100, 200), width_range=(300, 301), size_multiple=8)
    assert (p.batch, p.height, p.width) == ((1, 4, 4), (104, 200, 200), (304, 304, 304))
    p = tb.compute_profile("1..2", "360p..480p")  # opt 1280x720 clamped into the range
    assert p.height == (360, 480, 480) and p.width == (640, 856, 856)  # 854 -> 856


@pytest.mark.parametrize("batch,res,mult", [("0..4", "720p", 4), ("8..2", "720p", 4), ("x", "720p", 4),
                                            ("1..4", "720q", 4), ("1..4", "0x10", 4), ("1..4", "720p", 0),
                                            ("1..4", "", 4)])
def test_profile_rejects_bad_input_with_a_usage_error(batch, res, mult):
    with pytest.raises(UsageError):
        tb.compute_profile(batch, res, size_multiple=mult)


def test_profile_covers_union_and_json_roundtrip():
    p = tb.compute_profile("1..8", "360p..1080p")
    assert p.covers(8, 1080, 1920) and p.covers(1, 360, 640)
    assert not p.covers(9, 720, 1280) and not p.covers(1, 1920, 1080)  # portrait 1080p
    q = p.union(1, 1920, 1080)
    assert q.covers(1, 1920, 1080) and q.covers(8, 360, 640) and q.height[1] == 720
    assert tb.Profile.from_json(json.loads(json.dumps(q.to_json()))) == q


# -- cache keys and stale engines -------------------------------------------------------------

PROFILE = tb.compute_profile("1..8", "360p..1080p")
BASE = dict(onnx_sha256="a" * 64, tensorrt_version=ENV[0], gpu_name=ENV[1], compute_capability=ENV[2],
            precision="fp16", profile=PROFILE)
CHANGES = {
    "onnx_sha256": "b" * 64,
    "tensorrt_version": "10.0.1",
    "gpu_name": "NVIDIA A100-SXM4-80GB",
    "compute_capability": "8.0",
    "precision": "fp32",
    "profile": tb.compute_profile("1..4", "360p..1080p"),
}


def test_cache_key_is_stable_and_changes_with_each_component(tmp_path):
    key = tb.engine_key(**BASE)
    assert tb.key_digest(key) == tb.key_digest(tb.engine_key(**BASE))
    assert set(key) == set(CHANGES)
    paths = {tb.engine_path_for(tmp_path, "m.onnx", key)}
    for field, value in CHANGES.items():
        other = tb.engine_key(**{**BASE, field: value})
        assert tb.key_digest(other) != tb.key_digest(key), field
        paths.add(tb.engine_path_for(tmp_path, "m.onnx", other))
    assert len(paths) == len(CHANGES) + 1


def test_fresh_engine_with_matching_sidecar_is_loadable(tmp_path):
    key = tb.engine_key(**BASE)
    path = tb.engine_path_for(tmp_path, "m.onnx", key)
    tb.write_engine(path, b"serialised engine", key)
    assert tb.check_engine(path, key) is None
    side = json.loads(tb.sidecar_path(path).read_text())
    assert side["key"] == key and side["engine_bytes"] == len(b"serialised engine")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize("field", list(CHANGES))
def test_engine_built_elsewhere_must_be_rebuilt(tmp_path, field):
    built = tb.engine_key(**{**BASE, field: CHANGES[field]})
    wanted = tb.engine_key(**BASE)
    path = tmp_path / "copied.engine"  # e.g. a cache folder copied from another machine
    tb.write_engine(path, b"engine", built)
    reason = tb.check_engine(path, wanted)
    assert reason, field
    if field in ("tensorrt_version", "gpu_name", "compute_capability"):
        assert str(CHANGES[field]) in reason and str(BASE[field]) in reason


def test_missing_corrupt_or_changed_engines_must_be_rebuilt(tmp_path):
    key = tb.engine_key(**BASE)
    path = tmp_path / "m.engine"
    assert tb.check_engine(path, key) == "no cached engine"
    path.write_bytes(b"engine")
    assert "no sidecar" in tb.check_engine(path, key)
    tb.sidecar_path(path).write_text("{not json")
    assert "unreadable" in tb.check_engine(path, key)
    tb.sidecar_path(path).write_text("[]")
    assert "malformed" in tb.check_engine(path, key)
    tb.write_engine(path, b"engine", key)
    path.write_bytes(b"engine, truncated or swapped")
    assert "does not match its sidecar" in tb.check_engine(path, key)


def test_compile_engine_builds_once_then_reuses_and_rebuilds_when_stale(tiny_onnx, tmp_path, monkeypatch, caplog):
    calls = []

    def stand_in_builder(onnx_path, precision, profile, workspace_gib, **kw):  # replaces TensorRT's builder
        calls.append((precision, profile))
        assert kw["timing_cache"].parent == cache  # one timing cache per TensorRT version and GPU
        return f"engine {len(calls)}".encode()

    monkeypatch.setattr(tb, "_build_engine_bytes", stand_in_builder)
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, logger="streamgan"):
        p1 = tb.compile_engine(tiny_onnx, precision="fp16", batch_range=(1, 4), resolutions="360p..720p",
                               cache_dir=cache, environment=ENV)
    assert len(calls) == 1 and "building TensorRT engine" in caplog.text and "no cached engine" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="streamgan"):
        assert tb.compile_engine(tiny_onnx, precision="fp16", batch_range=(1, 4), resolutions="360p..720p",
                                 cache_dir=cache, environment=ENV) == p1
    assert len(calls) == 1 and caplog.text == ""
    # another TensorRT version on the same machine: another engine, the old one is left alone
    p2 = tb.compile_engine(tiny_onnx, precision="fp16", batch_range=(1, 4), resolutions="360p..720p",
                           cache_dir=cache, environment=("10.4.0", *ENV[1:]))
    assert p2 != p1 and len(calls) == 2
    # a foreign engine copied over the expected name is rebuilt, never returned
    key1 = json.loads(tb.sidecar_path(p1).read_text())["key"]
    tb.write_engine(p1, b"foreign", {**key1, "gpu_name": "NVIDIA GeForce RTX 4090"})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="streamgan"):
        assert tb.compile_engine(tiny_onnx, precision="fp16", batch_range=(1, 4), resolutions="360p..720p",
                                 cache_dir=cache, environment=ENV) == p1
    assert len(calls) == 3 and "RTX 4090" in caplog.text and p1.read_bytes() == b"engine 3"
    tb.compile_engine(tiny_onnx, precision="fp16", batch_range=(1, 4), resolutions="360p..720p",
                      cache_dir=cache, environment=ENV, force=True)
    assert len(calls) == 4
    with pytest.raises(UsageError, match="fp16 or fp32"):
        tb.compile_engine(tiny_onnx, precision="bf16", cache_dir=cache, environment=ENV)


def test_compile_without_tensorrt_fails_with_one_clear_line(tiny_onnx, tmp_path):
    if engines._installed("tensorrt"):
        pytest.skip("TensorRT is installed here")
    with pytest.raises(BackendError, match=r"TensorRT is not installed: pip install"):
        tb.compile_engine(tiny_onnx, cache_dir=tmp_path)


def test_compile_arguments_parse(tmp_path):
    import argparse

    parser = tb.add_compile_arguments(argparse.ArgumentParser(prog="streamgan compile"))
    args = parser.parse_args(["derain", "--precision", "fp32", "--batch", "1..16", "--resolutions",
                              "720p,1080p", "--cache-dir", str(tmp_path), "--force"])
    assert (args.model, args.precision, args.batch, args.resolutions, args.force) == (
        "derain", "fp32", "1..16", "720p,1080p", True)
    defaults = parser.parse_args(["m.onnx"])
    assert (defaults.precision, defaults.batch, defaults.resolutions) == ("fp16", "1..8", None)


def test_gpu_side_normalisation_matches_the_host_reference():
    """The uint8 <-> model-space conversions the TensorRT backend runs on the GPU, here on CPU
    tensors, against ``base.to_model_input`` / ``from_model_output``."""
    torch = pytest.importorskip("torch")
    from streamgan.engines.base import from_model_output, to_model_input
    from streamgan.engines.tensorrt import denormalise, normalise_into

    rng = np.random.default_rng(1)
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    frames = rng.integers(0, 256, (2, 6, 10, 3), dtype=np.uint8)
    x = normalise_into(torch.empty(2, 3, 6, 10), torch.from_numpy(frames),
                       torch.tensor(1.0 / (255.0 * std)).view(1, 3, 1, 1), torch.tensor(mean / std).view(1, 3, 1, 1))
    assert np.abs(x.numpy() - to_model_input(frames, mean, std)).max() < 1e-5
    y = rng.uniform(-3, 3, (2, 3, 6, 10)).astype(np.float32)
    yt = torch.from_numpy(y.copy())
    got = denormalise(yt, torch.tensor(255.0 * std).view(1, 3, 1, 1), torch.tensor(255.0 * mean).view(1, 3, 1, 1))
    assert got.dtype == torch.uint8 and got.is_contiguous() and torch.equal(yt, torch.from_numpy(y))
    assert np.array_equal(got.numpy(), from_model_output(y.copy(), mean, std))


# -- the PyTorch CUDA fallback: no device mixing ---------------------------------------------------

@pytest.mark.parametrize("onnx_path", _plugin_onnx(), ids=lambda p: p.parent.name if p else "none")
def test_shipped_models_run_on_one_device_in_the_torch_backend(onnx_path):
    """Both shipped graphs compute their reflection-pad amounts at run time (Constant ->
    ConstantOfShape -> Concat -> ... -> Pad). On the ``meta`` device any tensor left on the CPU
    next to one on the backend's device (the CUDA failure "Expected all tensors to be on the same
    device") raises here, as does shape arithmetic that strayed onto the device."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from streamgan.engines.torch import TorchBackend

    backend = TorchBackend(onnx_path, precision="fp32", device="meta")
    assert {b.device.type for b in backend.module.buffers()} == {"meta"}
    for shape in ((2, 360, 480, 3), (1, 640, 360, 3)):  # 4:3 and portrait at short side 360
        frames = torch.empty(shape, dtype=torch.uint8, device="meta")
        state = _state_for(onnx_path, *shape[:3])
        state = None if state is None else [torch.from_numpy(s).to("meta") for s in state]
        with _HostToDevice() as copies:
            if state is None:
                out = backend.run_tensor(frames)
            else:  # a temporal graph: its state on the device too
                out, new = backend.run_tensor(frames, state)
                assert [t.device.type for t in new] == ["meta"] * len(state)
        assert out.device.type == "meta" and out.dtype == torch.uint8 and tuple(out.shape) == shape
        # on CUDA each host-to-device copy waits for the device to finish all it was given: none per frame
        assert copies.seen == [], f"{len(copies.seen)} host-to-device copies a frame: {copies.seen[:5]}"


def _HostToDevice():
    """A dispatch mode recording each copy of a host tensor to another device (shape, dtype)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Copies(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            src = args[1] if func.overloadpacket is torch.ops.aten.copy_ else args[0] if args else None
            if (func.overloadpacket in (torch.ops.aten.to, torch.ops.aten._to_copy, torch.ops.aten.copy_)
                    and isinstance(src, torch.Tensor) and isinstance(out, torch.Tensor)
                    and src.device.type == "cpu" and out.device.type != "cpu"):
                self.seen.append((tuple(src.shape), str(src.dtype)))
            return out

    return Copies()


def test_a_convolution_to_one_channel_runs_in_bf16_in_the_torch_backend(tmp_path):
    """Its one-element bias is a buffer on the device with the weights (not a host constant, copied at
    every call); the convolution takes it in the image data's type (a drop finder's last layer)."""
    torch = pytest.importorskip("torch")
    from streamgan.engines.torch import TorchBackend

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1), torch.nn.Conv2d(1, 3, 1))
    path = tmp_path / "one.onnx"
    torch.onnx.export(net.eval(), (torch.zeros(1, 3, 8, 8),), str(path), input_names=["input"],
                      output_names=["output"], opset_version=17, dynamo=False)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    backend = TorchBackend(path, precision="bf16", device="cpu")
    assert sum(b.numel() == 1 for b in backend.module.buffers()) == 1
    got = backend.infer(x)
    assert np.abs(got - want).max() < 0.05


def test_constant_of_shape_keeps_the_device_and_dtype_of_its_inputs():
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from onnx import numpy_helper

    from streamgan.engines.torch import OPS

    pads = OPS["ConstantOfShape"](torch.tensor([4]), value=numpy_helper.from_array(np.array([0], np.int64)))
    assert pads.dtype == torch.int64 and pads.device.type == "cpu" and pads.tolist() == [0, 0, 0, 0]
    zeros = OPS["ConstantOfShape"](torch.tensor([2, 3]))  # ONNX default: float32 zeros
    assert zeros.dtype == torch.float32 and tuple(zeros.shape) == (2, 3) and not zeros.any()



@pytest.mark.parametrize("mode", ["reflect", "edge", "constant"])
def test_pad_of_the_width_alone_matches_numpy(mode):
    """The day2night renderer blurs rows with a reflect pad of the width only (ONNX pads 0 on every other
    axis): torch's reflect and replicate pads need all spatial dimensions named."""
    torch = pytest.importorskip("torch")
    from streamgan.engines.torch import OPS

    x = np.arange(2 * 3 * 4 * 6, dtype=np.float32).reshape(2, 3, 4, 6)
    pads = torch.tensor([0, 0, 0, 2, 0, 0, 0, 3])  # ONNX: begins of the 4 axes, then ends
    got = OPS["Pad"](torch.from_numpy(x), pads, mode=mode.encode())
    assert np.array_equal(got.numpy(), np.pad(x, ((0, 0), (0, 0), (0, 0), (2, 3)), mode=mode))

# -- fallback choice --------------------------------------------------------------------------

def _machine(monkeypatch, *, packages, driver, cuda):
    monkeypatch.setattr(engines, "_installed", lambda pkg: pkg in packages)
    monkeypatch.setattr(engines, "nvidia_driver_present", lambda: driver)
    monkeypatch.setattr(engines, "_cuda_usable", lambda: cuda)


ALL = {"tensorrt", "torch", "openvino", "onnxruntime"}


def test_choice_with_tensorrt_and_a_gpu(monkeypatch):
    _machine(monkeypatch, packages=ALL, driver=True, cuda=True)
    assert engines.choose("auto") == ("tensorrt", None)
    assert engines.choose("tensorrt") == ("tensorrt", None)


def test_tensorrt_missing_falls_back_to_torch_cuda_with_a_notice_only_under_auto(monkeypatch):
    _machine(monkeypatch, packages=ALL - {"tensorrt"}, driver=True, cuda=True)
    name, notice = engines.choose("auto")
    assert name == "torch" and "TensorRT is not installed" in notice and "\n" not in notice
    with pytest.raises(BackendError, match="TensorRT is not installed") as e:
        engines.choose("tensorrt")  # asked for by name: never quietly another backend
    assert e.value.exit_code == 6


def test_no_driver_chooses_a_cpu_backend(monkeypatch):
    _machine(monkeypatch, packages=ALL, driver=False, cuda=False)
    assert engines.choose("auto") == ("openvino", None)
    with pytest.raises(BackendError, match="no usable CUDA GPU"):
        engines.choose("tensorrt")
    _machine(monkeypatch, packages={"onnxruntime"}, driver=False, cuda=False)
    assert engines.choose("auto")[0] == "onnxruntime"


def test_driver_too_old_is_noticed(monkeypatch):
    _machine(monkeypatch, packages=ALL, driver=True, cuda=False)
    name, notice = engines.choose("auto")
    assert name == "openvino" and "too old" in notice


def test_create_falls_back_when_tensorrt_cannot_build_the_model(tiny_onnx, monkeypatch, caplog):
    """The TensorRT backend raising BackendError (e.g. an unsupported operator) ends in a working
    backend and one notice; TensorRT-only arguments are dropped on the way."""
    fake = types.ModuleType("streamgan.engines._refusing")

    class Refusing:
        def __init__(self, *a, **k):
            raise BackendError("tiny.onnx uses operators TensorRT's ONNX parser does not support: X")

    fake.Refusing = Refusing
    monkeypatch.setitem(sys.modules, "streamgan.engines._refusing", fake)
    monkeypatch.setitem(engines._BACKENDS, "tensorrt", ("_refusing", "Refusing", "tensorrt"))
    _machine(monkeypatch, packages=ALL, driver=True, cuda=True)
    monkeypatch.setattr(engines, "_noticed", set())
    with caplog.at_level(logging.WARNING, logger="streamgan"):
        backend = engines.create("auto", tiny_onnx, batch_range=(1, 4), resolutions="720p")
        engines.create("auto", tiny_onnx)  # a second translator: the same notice is not repeated
    assert backend.name == "torch"  # the real PyTorch backend (on the CPU here: no CUDA)
    assert caplog.text.count("does not support: X; using the torch backend instead") == 1
    out = backend.run(np.zeros((1, 32, 48, 3), np.uint8))
    assert out.shape == (1, 32, 48, 3)
    with pytest.raises(BackendError, match="does not support: X"):
        engines.create("tensorrt", tiny_onnx)  # explicit: the error, not the fallback
    with pytest.raises(BackendError, match="does not support: X"):
        engines.create("auto", tiny_onnx, engine_path="given.engine")  # an explicit engine too


def test_registry_import_and_auto_choice_do_not_import_torch():
    if engines.nvidia_driver_present():
        pytest.skip("an NVIDIA driver is loaded here: checking for CUDA legitimately imports torch")
    code = textwrap.dedent("""
        import sys
        import streamgan.engines as e
        from streamgan.engines import trt_build, tensorrt
        from streamgan import gpu_io
        print(e.auto_choice(), e.choose("auto"), e.available()["tensorrt"])
        try:
            e.choose("tensorrt")
        except e.BackendError:
            pass
        trt_build.compute_profile("1..8", "360p..1080p")
        trt_build.policy_profile()
        gpu_io.describe_video_io()
        heavy = [m for m in ("torch", "tensorrt") if m in sys.modules]
        assert not heavy, heavy
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr


# -- GPU (skipped here) -----------------------------------------------------------------------

def _need_gpu():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'streamgan[tensorrt]')")
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("no usable CUDA GPU")
    return torch


@pytest.mark.gpu
def test_tensorrt_engine_matches_pytorch_and_is_cached(tiny_onnx, tmp_path, caplog):
    _need_gpu()
    from streamgan.engines.tensorrt import TensorRTBackend
    from streamgan.engines.torch import TorchBackend

    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, 96, 128, 3), dtype=np.uint8)
    ref = TorchBackend(tiny_onnx, precision="fp32", device="cuda")
    for precision, tol_f, tol_u8 in (("fp32", 1e-3, 1), ("fp16", 3e-2, 4)):
        with caplog.at_level(logging.WARNING, logger="streamgan"):
            trt_b = TensorRTBackend(tiny_onnx, precision=precision, batch_range=(1, 4),
                                    resolutions="96x64..256x192", cache_dir=tmp_path)
        assert "building TensorRT engine" in caplog.text
        x = rng.uniform(-1, 1, (2, 3, 64, 96)).astype(np.float32)
        assert np.abs(trt_b.infer(x) - ref.infer(x)).max() < tol_f
        diff = np.abs(trt_b.run(batch).astype(int) - ref.run(batch).astype(int)).max()
        assert diff <= tol_u8, (precision, diff)
        handles = [trt_b.submit(batch[:1]), trt_b.submit(batch[1:])]  # two in flight
        assert np.array_equal(np.concatenate([trt_b.collect(h) for h in handles]), trt_b.run(batch))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="streamgan"):
            again = TensorRTBackend(tiny_onnx, precision=precision, batch_range=(1, 4),
                                    resolutions="96x64..256x192", cache_dir=tmp_path)
        assert "building" not in caplog.text and again.engine_path == trt_b.engine_path
        big = rng.integers(0, 256, (1, 320, 256, 3), dtype=np.uint8)  # outside the profile
        with pytest.raises(BackendError, match="before a stream starts"):
            again.run(big)  # never a rebuild in the middle of a stream
        again.prepare([(1, 320, 256)])
        assert again.run(big).shape == big.shape and again.profile.covers(1, 320, 256)
        again.close()
        trt_b.close()


@pytest.mark.gpu
def test_stale_engine_is_rebuilt_on_a_real_gpu(tiny_onnx, tmp_path, caplog):
    _need_gpu()
    path = tb.compile_engine(tiny_onnx, precision="fp32", batch_range=(1, 2), resolutions="64x64",
                             cache_dir=tmp_path)
    key = json.loads(tb.sidecar_path(path).read_text())["key"]
    tb.write_engine(path, path.read_bytes(), {**key, "tensorrt_version": "9.9.9"})
    with caplog.at_level(logging.WARNING, logger="streamgan"):
        assert tb.compile_engine(tiny_onnx, precision="fp32", batch_range=(1, 2), resolutions="64x64",
                                 cache_dir=tmp_path) == path
    assert "'9.9.9'" in caplog.text and tb.check_engine(path, key) is None


# -- the TensorRT backend against a stand-in TensorRT and a CPU stand-in for CUDA ---------------
#
# The stand-in engine negates its input in model space (so uint8 frames come back as 255 - x with
# mean = std = 0.5) reading and writing the memory at the addresses the backend binds, and refuses
# shapes outside the profile it was "built" for, as TensorRT's set_input_shape does. The CPU
# device runs every copy at once, and records allocations, stream waits and enqueues.

import contextlib  # noqa: E402
import ctypes  # noqa: E402

def _short_side_plugin() -> Path:
    """The shipped derain network (frame by frame: ``conftest.frame_derain``) with a short-side card (what
    the profile tests reason about: frames scaled to short side 360 before the engine); the shipped card's
    'source' policy is covered apart."""
    import shutil
    import tempfile

    import yaml

    from conftest import frame_derain

    d = Path(tempfile.mkdtemp(prefix="sg-trt-plugin-")) / "derain"
    shutil.copytree(frame_derain(), d)
    card = yaml.safe_load((d / "card.yaml").read_text())
    card["processing"] = {"policy": "short_side", "short_side": 360, "size_multiple": 4}
    card.pop("int8", None)
    (d / "card.yaml").write_text(yaml.safe_dump(card))
    return d


DERAIN = _short_side_plugin()


def _fake_tensorrt(version="10.3.0", runtime_error=None):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # found by importlib.util.find_spec

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, min_severity=2):
            self.min_severity = min_severity

    class TensorIOMode:
        INPUT, OUTPUT = "input", "output"

    class DataType:
        FLOAT, HALF = "float", "half"

    class Context:
        def __init__(self, engine):
            self.engine, self.shape, self.addr, self.streams = engine, None, {}, []
            self.shapes = {}

        def set_input_shape(self, name, shape):
            if name != self.engine.ins[0]:  # a temporal model's state: inside the profile built for it
                lo, hi = self.engine.state_profile[name]
                if not all(a <= v <= b for a, v, b in zip(lo, shape, hi)):
                    return False
                self.shapes[name] = tuple(shape)
                return True
            n, _, h, w = shape
            if not self.engine.profile.covers(n, h, w):
                return False
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            if name in self.engine.outs[1:]:  # a state output: its input's shape
                return self.shapes[self.engine.ins[self.engine.outs.index(name)]]
            return self.shape

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def execute_async_v3(self, stream):
            self.streams.append(stream)
            numel = int(np.prod(self.shape))
            ctype, dt = (ctypes.c_float, np.float32) if self.engine.dtype == "float" else (ctypes.c_uint16, np.float16)
            x = np.ctypeslib.as_array((ctype * numel).from_address(self.addr["input"])).view(dt)
            y = np.ctypeslib.as_array((ctype * numel).from_address(self.addr["output"])).view(dt)
            y[:] = -x
            for name, out in zip(self.engine.ins[1:], self.engine.outs[1:]):  # state: + 1 each call
                k = int(np.prod(self.shapes[name]))
                st = np.ctypeslib.as_array((ctypes.c_float * k).from_address(self.addr[name]))
                np.ctypeslib.as_array((ctypes.c_float * k).from_address(self.addr[out]))[:] = st + 1
            return True

    class Engine:
        def __init__(self, meta):
            self.profile = tb.Profile.from_json(meta["profile"])
            self.dtype = DataType.HALF if meta["precision"] == "fp16" else DataType.FLOAT
            self.ins, self.outs = meta.get("io", (["input"], ["output"]))
            self.state_profile = meta.get("state_profile", {})
            self.num_io_tensors = len(self.ins) + len(self.outs)
            self.contexts = []

        def get_tensor_name(self, i):
            return (self.ins + self.outs)[i]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name in self.ins else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return self.dtype if name in ("input", "output") else DataType.FLOAT

        def create_execution_context(self):
            self.contexts.append(Context(self))
            return self.contexts[-1]

    class Runtime:
        def __init__(self, logger):
            if runtime_error:
                raise runtime_error
            assert isinstance(logger, Logger)
            self.engines = []

        def deserialize_cuda_engine(self, data):
            self.engines.append(Engine(json.loads(data)))
            return self.engines[-1]

    trt.Logger, trt.TensorIOMode, trt.DataType, trt.Runtime = Logger, TensorIOMode, DataType, Runtime
    return trt


class _Stream:
    def __init__(self, dev, sid):
        self.dev, self.id = dev, sid

    def wait_stream(self, other):
        self.dev.log.append(("wait_stream", self.id, other.id))

    def wait_event(self, event):
        self.dev.log.append(("wait_event", self.id, event.stream))


class _Event:
    def __init__(self, dev):
        self.dev, self.stream = dev, None

    def record(self, stream):
        self.stream = stream.id
        self.dev.log.append(("event", stream.id))

    def synchronize(self):
        pass


class CpuDevice:
    """Stand-in for tensorrt.CudaDevice: CPU memory, streams that only record what is asked."""

    def __init__(self, torch, index=0):
        self.torch, self.device, self.log, self.current = torch, torch.device("cpu"), [], 0
        self.streams = 0

    def stream(self):
        self.streams += 1
        return _Stream(self, self.streams)  # the default stream would be 0

    def event(self):
        return _Event(self)

    @contextlib.contextmanager
    def use(self, stream):
        before, self.current = self.current, stream.id
        try:
            yield
        finally:
            self.current = before

    def handle(self, stream):
        return stream.id

    def record(self, tensor, stream):
        self.log.append(("record_stream", stream.id))

    def pinned(self, numel, dtype):
        self.log.append(("alloc", self.current))
        return self.torch.empty(numel, dtype=dtype)

    def empty(self, numel, dtype):
        self.log.append(("alloc", self.current))
        return self.torch.empty(numel, dtype=dtype)


@pytest.fixture
def fake_trt(monkeypatch, tmp_path):
    """TensorRTBackend on this CPU: stand-in tensorrt module, CPU device, stand-in builder."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from streamgan.engines import tensorrt as trt_backend

    builds = []

    def stand_in_builder(onnx_path, precision, profile, workspace_gib, processing=None, **kw):
        builds.append(profile)
        ins, outs = tb.io_names(onnx_path)
        states = {n: [list(s) for s in tb.state_shapes(profile, 1, processing)][::2] for n in ins[1:]}
        return json.dumps({"profile": profile.to_json(), "precision": precision, "io": [ins, outs],
                           "state_profile": states}).encode()

    trt = _fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(tb, "_LOGGER", None)
    monkeypatch.setattr(tb, "_build_engine_bytes", stand_in_builder)
    monkeypatch.setattr(tb, "current_environment", lambda device=0: ENV)
    monkeypatch.setattr(trt_backend, "CudaDevice", CpuDevice)

    def make(onnx=DERAIN / "model.onnx", **kw):
        kw.setdefault("cache_dir", tmp_path / "engines")
        return trt_backend.TensorRTBackend(onnx, **kw)

    make.builds = builds
    return make


def _frames(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_backend_binds_buffers_and_returns_each_batch(fake_trt, precision):
    backend = fake_trt(precision=precision)
    a = _frames(2, 360, 480, 1)
    assert np.array_equal(backend.run(a), 255 - a)
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 360, 640)).astype(np.float32)
    assert np.abs(backend.infer(x) + x).max() < (1e-3 if precision == "fp16" else 1e-6)


def test_handles_carry_a_generation_and_a_stale_one_raises(fake_trt):
    backend = fake_trt(precision="fp32")
    a, b, c = _frames(1, 360, 640, 1), _frames(2, 360, 640, 2), _frames(1, 360, 480, 3)
    ha, hb = backend.submit(a), backend.submit(b)
    hc = backend.submit(c)  # third before any collect: reuses a's slot
    assert ha.slot == hc.slot and ha != hc
    with pytest.raises(UsageError, match="stale handle"):
        backend.collect(ha)  # never c's frames under a's handle
    assert np.array_equal(backend.collect(hb), 255 - b)
    assert np.array_equal(backend.collect(hc), 255 - c)
    with pytest.raises(UsageError, match="already collected"):
        backend.collect(hc)


def test_engine_runs_on_its_own_stream_and_fresh_buffers_wait_for_compute(fake_trt):
    backend = fake_trt(precision="fp32")
    dev, compute, copy = backend._cuda, backend.compute_stream.id, backend._copy_stream.id
    assert compute not in (0, copy)  # not the default stream, not the copy stream
    dev.log.clear()
    backend.submit(_frames(1, 360, 640))
    first = list(dev.log)
    allocs = [e for e in first if e[0] == "alloc"]
    assert allocs and all(e[1] == compute for e in allocs)  # tied to the compute stream
    waited = first.index(("wait_stream", copy, compute))
    uploaded = first.index(("event", copy))
    assert max(i for i, e in enumerate(first) if e[0] == "alloc") < waited < uploaded
    assert ("record_stream", copy) in first and ("wait_event", compute, copy) in first
    dev.log.clear()
    backend.submit(_frames(1, 360, 640))  # same size, other slot: allocates, waits again
    backend.submit(_frames(1, 360, 640))  # first slot again, big enough: no new memory, no wait
    assert ("alloc", compute) not in dev.log[dev.log.index(("event", compute)) + 1:]
    assert dev.log.count(("wait_stream", copy, compute)) == 1
    streams = {s for e in backend._engine.contexts for s in e.streams}
    assert streams == {compute}


def test_logger_shows_tensorrt_warnings(fake_trt, monkeypatch):
    trt = sys.modules["tensorrt"]
    backend = fake_trt(precision="fp32")
    logger = tb.trt_logger(trt)
    assert logger.min_severity == trt.Logger.WARNING and tb.trt_logger(trt) is logger
    monkeypatch.setattr(tb, "_LOGGER", None)
    monkeypatch.setenv("STREAMGAN_TRT_LOG", "verbose")
    assert tb.trt_logger(trt).min_severity == trt.Logger.VERBOSE
    backend.close()


def test_default_profile_fits_landscape_4_3_and_portrait_at_the_cards_size(fake_trt, caplog):
    backend = fake_trt(precision="fp16")
    assert len(fake_trt.builds) == 1
    p = backend.profile
    for h, w in ((360, 640), (360, 480), (640, 360), (360, 840), (240, 320)):
        assert p.covers(backend.preferred_batch, h, w) and p.covers(1, h, w), (h, w)
    assert (p.height[1], p.width[1]) == (360, 640)  # tuned for what the card runs: 16:9 at 360
    for shape in ((8, 360, 480), (1, 640, 360)):
        backend.run(_frames(*shape))
    assert len(fake_trt.builds) == 1  # no rebuild for 4:3 or portrait
    # the compile command's default is the same engine (same key: no second build)
    tb.compile_engine(DERAIN / "model.onnx", precision="fp16", profile=tb.policy_profile(
        __import__("streamgan.card", fromlist=["ModelCard"]).ModelCard.load(DERAIN / "card.yaml").processing),
        cache_dir=backend.cache_dir, environment=ENV)
    assert len(fake_trt.builds) == 1


def test_missing_profiles_are_built_before_the_stream_never_in_the_middle(fake_trt):
    backend = fake_trt(precision="fp32")
    with pytest.raises(BackendError, match="before a stream starts"):
        backend.run(_frames(1, 720, 1280))  # --size 720: not prepared
    assert len(fake_trt.builds) == 1
    backend.prepare([(8, 720, 1280)])  # what Translator does when it opens the stream
    assert len(fake_trt.builds) == 2 and backend.profile.covers(8, 720, 1280)
    assert (backend.profile.height[1], backend.profile.width[1]) == (720, 1280)  # tuned for it
    assert backend.profile.covers(8, 640, 360)  # still everything the card's size needs
    a = _frames(3, 720, 1280)
    assert np.array_equal(backend.run(a), 255 - a)
    backend.prepare([(8, 720, 1280), (1, 360, 640)])  # covered: nothing to build
    assert len(fake_trt.builds) == 2


def test_translator_prepares_the_backend_before_the_stream_starts(monkeypatch, tmp_path):
    """Translator tells the backend the padded size a stream will run at before any frame."""
    import streamgan
    from streamgan.engines.base import Backend
    from streamgan.frames import backend_shapes

    assert backend_shapes(8, 360, 638, 4) == [(8, 360, 640)]  # padded as translate_batch pads
    assert backend_shapes(2, 1080, 1920, 16, tile=512) == [(2, 512, 512)]
    assert backend_shapes(2, 300, 400, 4, tile=512) == [(2, 300, 400)]
    events = []

    class Recording(Backend):
        name = "recording"
        preferred_batch = 4

        def prepare(self, shapes):
            events.append(("prepare", list(shapes)))

        def infer(self, x):
            return x

        def run(self, batch):
            events.append(("run", batch.shape[1:3]))
            return batch

    monkeypatch.setattr(engines, "create", lambda name, onnx, precision, **kw: Recording(onnx))
    tr = streamgan.Translator(DERAIN, backend="openvino")
    tr.translate(np.zeros((2, 480, 640, 3), np.uint8))  # 4:3 at the card's short side 360
    assert events == [("prepare", [(2, 360, 480)]), ("run", (360, 480))]
    events.clear()
    tr.translate_video(REPO / "samples" / "rainy_dashcam.mp4", tmp_path / "o.mp4", frames=2)
    assert events[0] == ("prepare", [(4, 360, 640)]) and {e[0] for e in events[1:]} == {"run"}


def test_explicit_engine_with_an_invalid_sidecar_fails_and_never_falls_back(fake_trt, tmp_path, monkeypatch):
    engine = tmp_path / "derain.engine"
    engine.write_bytes(b"{}")
    with pytest.raises(BackendError, match="no valid sidecar"):
        fake_trt(engine_path=engine)
    tb.sidecar_path(engine).write_text(json.dumps({"key": {"profile": "nonsense"}}))
    with pytest.raises(BackendError, match="no valid sidecar"):
        fake_trt(engine_path=engine)
    _machine(monkeypatch, packages=ALL, driver=True, cuda=True)
    with pytest.raises(BackendError, match="no valid sidecar") as e:
        engines.create("auto", DERAIN / "model.onnx", engine_path=engine)
    assert e.value.exit_code == 6


def test_tensorrt_11_is_refused_with_a_clear_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt("11.4.0.106"))
    with pytest.raises(BackendError, match=r"TensorRT 11.4.0.106 is not supported.*tensorrt>=10,<11") as e:
        tb._trt()
    assert e.value.exit_code == 6
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt("8.6.1"))
    with pytest.raises(BackendError, match="too old"):
        tb._trt()
    assert "tensorrt>=10,<11" in (REPO / "pyproject.toml").read_text()


def test_errors_of_the_bindings_are_backend_errors_and_auto_falls_back_once(fake_trt, monkeypatch, caplog):
    pybind = TypeError("__init__(): incompatible constructor arguments. The following argument types are supported")
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(runtime_error=pybind))
    _machine(monkeypatch, packages=ALL, driver=True, cuda=True)
    monkeypatch.setattr(engines, "_noticed", set())
    with pytest.raises(BackendError, match="TensorRT backend failed to start \\(TypeError") as e:
        engines.create("tensorrt", DERAIN / "model.onnx")
    assert e.value.exit_code == 6
    with caplog.at_level(logging.WARNING, logger="streamgan"):
        for _ in range(2):
            assert engines.create("auto", DERAIN / "model.onnx").name == "torch"
    assert caplog.text.count("notice:") == 1 and "TypeError" in caplog.text


def test_a_broken_card_is_reported_not_swallowed(tmp_path):
    from streamgan.engines.tensorrt import _card_processing
    from streamgan.errors import ModelError

    (tmp_path / "model.onnx").write_bytes(b"")
    assert _card_processing(tmp_path / "model.onnx") is None  # no card: the generic profile
    (tmp_path / "card.yaml").write_text("task: [unclosed\n")
    with pytest.raises(ModelError, match="card"):
        _card_processing(tmp_path / "model.onnx")


def test_builder_uses_fp16_the_profile_and_a_timing_cache(tmp_path, monkeypatch):
    """_build_engine_bytes against a stand-in of the TensorRT 10 builder API."""
    trt = _fake_tensorrt()
    seen = {"flags": [], "caches": [], "shapes": None}

    class Inp:
        name, shape = "input", (-1, 3, -1, -1)

    class Network:
        num_inputs = num_outputs = 1

        def get_input(self, i):
            return Inp()

    class Cache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return self.data + b"+timings"

    class Config:
        def set_memory_pool_limit(self, pool, size):
            seen["workspace"] = size

        def set_flag(self, flag):
            seen["flags"].append(flag)

        def add_optimization_profile(self, p):
            seen["shapes"] = p.shapes

        def create_timing_cache(self, data):
            seen["caches"].append(bytes(data))
            return Cache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class OptProfile:
        def set_shape(self, name, lo, opt, hi):
            self.shapes = (name, lo, opt, hi)

    class Builder:
        def __init__(self, logger):
            seen["logger"] = logger

        def create_network(self, flags):
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return OptProfile()

        def build_serialized_network(self, network, config):
            return b"plan"

    class Parser:
        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            return True

    trt.Builder, trt.OnnxParser = Builder, Parser
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(tb, "_LOGGER", None)
    profile = tb.policy_profile(short_side=360)
    timing = tmp_path / "timing.cache"
    assert tb._build_engine_bytes(DERAIN / "model.onnx", "fp16", profile, timing_cache=timing) == b"plan"
    assert seen["flags"] == ["fp16"] and seen["shapes"] == ("input", *profile.shapes())
    assert seen["logger"] is tb.trt_logger(trt) and seen["logger"].min_severity == trt.Logger.WARNING
    assert seen["caches"] == [b""] and timing.read_bytes() == b"+timings"  # new cache, saved
    tb._build_engine_bytes(DERAIN / "model.onnx", "fp32", profile, timing_cache=timing)
    assert seen["caches"][-1] == b"+timings" and seen["flags"] == ["fp16"]  # reused; fp32: no flag
    assert timing.read_bytes() == b"+timings+timings"


@pytest.mark.gpu
@pytest.mark.parametrize("onnx_path", _plugin_onnx(), ids=lambda p: p.parent.name if p else "none")
def test_torch_cuda_fallback_runs_the_shipped_models(onnx_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("no usable CUDA GPU")
    from streamgan.engines.torch import TorchBackend

    frames = _sample_frames()
    cuda = _run_plugin(TorchBackend(onnx_path, precision="fp16", device="cuda"), onnx_path, frames)
    cpu = _run_plugin(TorchBackend(onnx_path, precision="fp32", device="cpu"), onnx_path, frames)
    assert np.abs(cuda.astype(int) - cpu.astype(int)).max() <= 8


def _run_plugin(backend, onnx_path: Path, frames: np.ndarray) -> np.ndarray:
    """``backend.run`` on frames of a shipped plugin: a temporal one with its zero state (its output alone)."""
    state = _state_for(onnx_path, *frames.shape[:3])
    return backend.run(frames) if state is None else backend.run(frames, state)[0]


def _sample_frames(n=2):
    """The first frames of the shipped sample clip (real footage: the day2night renderer's light and
    sky thresholds may flip a pixel in reduced precision on noise, not on a street)."""
    import av

    with av.open(str(REPO / "samples" / "rainy_dashcam.mp4")) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f, _ in zip(c.decode(video=0), range(n))])


@pytest.mark.parametrize("onnx_path", _plugin_onnx(), ids=lambda p: p.parent.name if p else "none")
def test_torch_bf16_runs_the_shipped_models_on_cpu(onnx_path):
    """Casts inside a graph (day2night's renderer) must not carry fp32 into a bf16 convolution."""
    pytest.importorskip("torch", reason="PyTorch is not installed")
    from streamgan.engines.torch import TorchBackend

    frames = _sample_frames()
    bf16 = _run_plugin(TorchBackend(onnx_path, precision="bf16", device="cpu"), onnx_path, frames)
    fp32 = _run_plugin(TorchBackend(onnx_path, precision="fp32", device="cpu"), onnx_path, frames)
    d = np.abs(bf16.astype(int) - fp32.astype(int))
    assert d.max() <= 8 and d.mean() < 0.5


# ------------------------------------------------------------------------------- temporal models
@pytest.mark.parametrize("scale", [1, 2])
def test_a_temporal_state_profile_holds_the_state_of_every_image_size_in_the_profile(scale):
    from streamgan.card import Processing
    from streamgan.temporal import state_size

    proc = Processing(policy="source", short_side=360, size_multiple=4)
    prof = tb.policy_profile(proc, (1, 4), size_multiple=4)
    lo, opt, hi = tb.state_shapes(prof, 9, proc, scale)
    assert lo[:2] == (1, 9) and hi[:2] == (4, 9)
    assert opt[2:] == state_size(prof.width[1], prof.height[1], proc, scale)[::-1]
    for h in range(prof.height[0], prof.height[2] + 1, 4):
        for w in range(prof.width[0], prof.width[2] + 1, 4):
            sw, sh = state_size(w, h, proc, scale)
            assert lo[2] <= sh <= hi[2] and lo[3] <= sw <= hi[3], (h, w, sh, sw)
    if scale == 2:
        assert hi[2:] == tuple(v // 2 for v in tb.state_shapes(prof, 9, proc)[2][2:])


def test_tensorrt_binds_a_temporal_models_state_and_the_runtime_keeps_it_per_stream(fake_trt, tmp_path, monkeypatch):
    """The state is an engine input and output (the stand-in engine adds one to it each call): the backend
    binds it beside the image, and a Translator on TensorRT carries each stream's own state."""
    from streamgan import Translator
    from streamgan.engines import tensorrt as trt_backend
    from test_temporal import plugin

    onnx = plugin(tmp_path) / "model.onnx"
    backend = fake_trt(onnx, precision="fp32")
    a = _frames(2, 360, 640, 1)
    out, (new,) = backend.run(a, [np.full((2, 1, 360, 640), 5, np.float32)])
    assert np.array_equal(out, 255 - a) and new.shape == (2, 1, 360, 640) and np.all(new == 6)
    with pytest.raises(UsageError, match="temporal model"):
        backend.submit(a)  # no state: not run as a frame-by-frame model
    _machine(monkeypatch, packages=ALL, driver=True, cuda=True)
    tr = Translator(onnx.parent, backend="tensorrt")
    assert isinstance(tr.backend, trt_backend.TensorRTBackend)
    f = _frames(1, 360, 640, 2)[0]
    for _ in range(3):
        tr.translate(f[None], stream="cam0")
    tr.translate(f[None], stream="cam1")
    states = {k: float(s.state[0].mean()) for k, s in tr.streams._streams.items() if s.state}
    assert sorted(states.values()) == [1.0, 3.0], states
