"""`streamgan bench`: runs every stage, writes JSON and a plot, refuses bad requests clearly."""

from __future__ import annotations

import json

import pytest

from conftest import make_clip, run_cli
from streamgan import errors


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("bench") / "c.mp4", frames=16, size=(128, 72))


def test_bench_runs_all_stages(tiny_generator, clip, tmp_path):
    _, onnx = tiny_generator
    out = tmp_path / "b.json"
    png = tmp_path / "b.png"
    r = run_cli("bench", clip, "--task", onnx, "--backend", "openvino,onnxruntime",
                "--resolution", "128x72,64x36", "--frames", "16", "--reps", "2", "--iters", "3",
                "--json", out, "--plot", png)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    stages = [s["stage"] for s in data["stages"]]
    for res in ("128x72", "64x36"):
        assert f"{res} decode -> rgb" in stages
        assert f"{res} decode+encode (no model)" in stages
        assert f"{res} end to end (tiny)" in stages
        assert sum(s.startswith(f"{res} model only") for s in stages) == 2  # two backends
        assert f"{res} pipeline efficiency" in data["derived"]
    assert all(len(s["fps"]) == 2 and s["median"] > 0 for s in data["stages"])
    assert data["machine"]["cores"] >= 1 and "openvino" in data["machine"]["versions"]
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "median" in r.stdout and "machine:" in r.stdout


def test_bench_baseline_ratio(tiny_generator, clip):
    pytest.importorskip("cv2")
    _, onnx = tiny_generator
    r = run_cli("bench", clip, "--task", onnx, "--resolution", "128x72", "--frames", "16",
                "--reps", "1", "--iters", "2", "--baseline")
    assert r.returncode == 0, r.stderr
    assert "naive baseline" in r.stdout and "speed-up over naive baseline" in r.stdout


@pytest.mark.parametrize("args,code,text", [
    (["--backend", "warp-drive"], errors.EXIT_USAGE, "unknown backend"),
    (["--precision", "int2"], errors.EXIT_USAGE, "unknown precision"),
    (["--resolution", "641x360"], errors.EXIT_USAGE, "must be even"),
    (["--resolution", "big"], errors.EXIT_USAGE, "bad resolution"),
])
def test_bench_bad_requests(identity_onnx, clip, args, code, text):
    r = run_cli("bench", clip, "--task", identity_onnx, "--frames", "16", "--reps", "1", *args)
    assert r.returncode == code and text in r.stderr, r.stderr


def test_bench_clip_too_short(identity_onnx, tmp_path):
    short = make_clip(tmp_path / "short.mp4", frames=4)
    r = run_cli("bench", short, "--task", identity_onnx)
    assert r.returncode == errors.EXIT_INPUT and "too short to measure" in r.stderr
    r = run_cli("bench", short, "--task", identity_onnx, "--frames", "5")  # the option is at fault
    assert r.returncode == errors.EXIT_USAGE and "--frames 5: at least 10 frames" in r.stderr, r.stderr


@pytest.mark.parametrize("task,exposure", [("derain", None), ("day2night", None), ("day2night", "bright")])
def test_baseline_holds_the_shipped_model_as_the_trainers_module(task, exposure):
    """`bench --baseline` times the naive loop with the trainer's nn.Module (docs/PERFORMANCE.md), wrapped
    as the export wraps it: it must compute what the plugin computes."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    import numpy as np

    from streamgan.bench import _baseline_module
    from streamgan.plugins import load
    from trainer.evaluate import OnnxRunner

    onnx = load(task, exposure).onnx  # each night exposure's graph, with its own renderer setting
    module, how = _baseline_module().load_eager_model(onnx)
    assert how == "trainer nn.Module, eager fp32", how[:300]
    img = np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    img[:120] = (150, 190, 235)  # a sky over the noise, for the day2night renderer
    x = torch.from_numpy(img).permute(2, 0, 1).float().div(255).sub(0.5).div(0.5)[None]
    with torch.no_grad():
        y = ((module(x)[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.abs(y.astype(int) - OnnxRunner(onnx)(img).astype(int)).max() <= 2
