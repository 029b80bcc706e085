"""pytest-benchmark suites for the pipeline stages at 640x360.

    pytest benchmarks --benchmark-only

The model is the shipped derain generator when present (else a compact generator of the same
architecture with random weights, which costs the same). Efficiency goals are checked as ratios of
stages measured in this same run (see test_efficiency), never as absolute times.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from streamgan import Translator, bench
from streamgan.plugins import discover

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO.parent / "shared" / "data" / "clips" / "udacity_lanelines_solidWhiteRight.mp4"
FRAMES = 120


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    if not SOURCE.exists():
        pytest.skip(f"{SOURCE} not found")
    return bench.make_clip(SOURCE, tmp_path_factory.mktemp("b") / "clip360.mp4", 640, 360, FRAMES)


@pytest.fixture(scope="session")
def model(tmp_path_factory):
    if "derain" in discover() and (discover()["derain"] / "model.onnx").exists():
        return "derain"
    torch = pytest.importorskip("torch")
    from trainer.networks import build_generator

    net = build_generator(kind="mobile", ngf=16, n_blocks=9, norm="none", skips=True,
                          residual=True).eval()
    path = tmp_path_factory.mktemp("m") / "compact.onnx"
    torch.onnx.export(net, torch.randn(1, 3, 64, 96), str(path), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "n", 2: "h", 3: "w"},
                                    "output": {0: "n", 2: "h", 3: "w"}})
    return path


@pytest.fixture(scope="session")
def translator(model):
    return Translator(model, backend="openvino", size=360)


@pytest.fixture(scope="session")
def identity(tmp_path_factory):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])
    g = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "id", [x], [y])
    path = tmp_path_factory.mktemp("id") / "identity.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return Translator(path, backend="openvino")


def _e2e(tr, clip):
    with tempfile.TemporaryDirectory() as d:
        return tr.translate_video(clip, Path(d) / "o.mp4").frames


def test_decode(benchmark, clip):
    assert benchmark.pedantic(bench._frames_in, (clip, None, None), rounds=3) == FRAMES


def test_decode_encode(benchmark, clip):
    m = benchmark.pedantic(lambda: bench.transcode(clip, reps=1), rounds=3)
    assert m.fps


def test_model_only(benchmark, translator):
    import numpy as np

    frames = np.zeros((1, 360, 640, 3), np.uint8)
    translator.backend.run(frames)
    benchmark.pedantic(translator.backend.run, (frames,), rounds=20, warmup_rounds=2)


def test_end_to_end(benchmark, translator, clip):
    assert benchmark.pedantic(_e2e, (translator, clip), rounds=3) == FRAMES


def test_end_to_end_identity(benchmark, identity, clip):
    assert benchmark.pedantic(_e2e, (identity, clip), rounds=3) == FRAMES


@pytest.fixture(scope="session")
def heavy(tmp_path_factory):
    """A compute-heavy generator: the paper's ResNet-9, ngf 64 (random weights cost the same)."""
    torch = pytest.importorskip("torch")
    from trainer.networks import build_generator

    net = build_generator(kind="resnet", ngf=64, n_blocks=9).eval()
    path = tmp_path_factory.mktemp("heavy") / "resnet9.onnx"
    torch.onnx.export(net, torch.randn(1, 3, 64, 96), str(path), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "n", 2: "h", 3: "w"},
                                    "output": {0: "n", 2: "h", 3: "w"}})
    return Translator(path, backend="openvino")


def test_efficiency(heavy, identity, clip, tmp_path):
    """Issue targets, as ratios within one run: e2e >= 90% of model-only for a compute-heavy
    model, identity e2e >= 80% of decode+encode."""
    short = bench.make_clip(clip, tmp_path / "short.mp4", 640, 360, 12)
    model = bench.model_only(heavy.backend, 640, 360, iters=4, reps=3)
    e2e = bench.end_to_end(heavy, short, reps=3)
    io = bench.transcode(clip, reps=3)
    ident = bench.end_to_end(identity, clip, reps=3)
    print(bench.report([model, e2e, io, ident], bench.machine(), {}))
    assert e2e.median >= 0.9 * model.median
    assert ident.median >= 0.8 * io.median
