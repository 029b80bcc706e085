"""pytest-benchmark suites for the pipeline stages at 640x360.

    pytest benchmarks

The model is the shipped derain generator when present (else a compact generator of the same
architecture with random weights, which costs the same). Efficiency goals are checked as ratios of
stages measured in this same run (see test_efficiency), never as absolute times.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import models
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
    pytest.importorskip("torch")
    return models.compact(tmp_path_factory.mktemp("m") / "compact.onnx")


@pytest.fixture(scope="session")
def translator(model):
    return Translator(model, backend="openvino", size=360)


@pytest.fixture(scope="session")
def identity(tmp_path_factory):
    pytest.importorskip("onnx")
    return Translator(models.identity(tmp_path_factory.mktemp("id") / "identity.onnx"),
                      backend="openvino")


def _e2e(tr, clip):
    with tempfile.TemporaryDirectory() as d:
        return tr.translate_video(clip, Path(d) / "o.mp4").frames


def test_decode(benchmark, clip):
    assert benchmark.pedantic(bench._frames_in, (clip, None, None), rounds=3) == FRAMES


def test_decode_encode(benchmark, clip):
    m = benchmark.pedantic(lambda: bench.transcode(clip, reps=1), rounds=3)
    assert m.fps


def test_model_only(benchmark, translator):
    """One 640x360 frame through the engine; a temporal model with its stream's state (``run_batch``)."""
    import numpy as np

    frames = np.zeros((1, 360, 640, 3), np.uint8)
    run = translator.backend.run if translator.model.temporal is None else translator.run_batch
    run(frames)
    benchmark.pedantic(run, (frames,), rounds=20, warmup_rounds=2)


def test_end_to_end(benchmark, translator, clip):
    assert benchmark.pedantic(_e2e, (translator, clip), rounds=3) == FRAMES


def test_end_to_end_identity(benchmark, identity, clip):
    assert benchmark.pedantic(_e2e, (identity, clip), rounds=3) == FRAMES


@pytest.fixture(scope="session")
def heavy(tmp_path_factory):
    """A compute-heavy generator: the paper's ResNet-9, ngf 64 (random weights cost the same)."""
    pytest.importorskip("torch")
    return Translator(models.resnet9(tmp_path_factory.mktemp("heavy") / "resnet9.onnx"),
                      backend="openvino")


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
