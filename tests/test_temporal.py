"""Temporal plugins: the state kept per stream by the runtime (streamgan.temporal), on every backend.

The test model counts: its state is the number of frames its stream has run (one channel at the
frame's size), and its output image shows that count (pixel value about 10 per frame), so what
a user relies on, that each stream continues its own history and starts over at a reset, is
read from the frames it returns."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml

from conftest import make_clip
from streamgan import Translator
from streamgan.card import Processing, sha256_file
from streamgan.errors import ModelError, UsageError
from streamgan.temporal import state_size

STEP = 10  # output pixel value per frame the stream has run


class Counter(torch.nn.Module):
    """(frame, state) -> (grey image showing the count, count + 1); ``bad``: a broken state."""

    def __init__(self, bad: str = ""):
        super().__init__()
        self.bad = bad

    def forward(self, x, state):
        new = state + 1
        if self.bad == "shape":
            new = new[:, :, :-1]
        elif self.bad == "channels":
            new = torch.cat([new, new], 1)
        n = new.mean(dim=(1, 2, 3), keepdim=True)
        y = torch.clamp(x * 0 - 1 + 2 * STEP / 255 * n, -1, 1)
        return y, new


class HalfCounter(Counter):
    """A Counter whose state has half the frame's size (it fails on a state of any other size)."""

    def forward(self, x, state):
        y, new = super().forward(x, state)
        return y, new + 0 * torch.nn.functional.avg_pool2d(x, 2)[:, :1]


def _export(net, path: Path, names=("input", "state"), outs=("output", "state_out"), scale: int = 1) -> Path:
    axes = {0: "n", 2: "h", 3: "w"}
    torch.onnx.export(net, (torch.zeros(1, 3, 32, 48), torch.zeros(1, 1, 32 // scale, 48 // scale)), str(path),
                      input_names=list(names), output_names=list(outs),
                      dynamic_axes={k: axes for k in (*names, *outs)}, opset_version=17, dynamo=False)
    return path


def plugin(tmp_path: Path, bad: str = "", state=None, name: str = "counter", scale: int = 1) -> Path:
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    onnx = _export(HalfCounter(bad) if scale == 2 else Counter(bad), d / "model.onnx", scale=scale)
    state = state or [{"input": "state", "output": "state_out", "channels": 1, **({"scale": scale} if scale > 1 else {})}]
    card = {"task": "counter", "title": "t", "direction": "a -> b", "architecture": "counter",
            "licence": "MIT", "weights": {"file": "model.onnx", "sha256": sha256_file(onnx)},
            "temporal": {"state": state}}
    (d / "card.yaml").write_text(yaml.safe_dump(card))
    return d


def counts(frames: np.ndarray) -> list[int]:
    return [int(round(float(f.mean()) / STEP)) for f in frames]


def frame(v: int = 100, size=(48, 32)) -> np.ndarray:
    return np.full((size[1], size[0], 3), v, np.uint8)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime", "torch"])
def test_a_stream_continues_its_state_until_reset(tmp_path, backend):
    tr = Translator(plugin(tmp_path), backend=backend, precision="fp32")
    assert counts(tr.translate(np.stack([frame()] * 3))) == [1, 2, 3]  # frames of one stream, in order
    assert counts([tr.translate(frame())]) == [4]  # the next call continues
    assert counts([tr.translate(frame(), stream="cam2")]) == [1]  # another stream has its own
    tr.reset()
    assert counts([tr.translate(frame())]) == [1]
    assert counts([tr.translate(frame(), stream="cam2")]) == [2]
    tr.reset("cam2")  # a named stream starts over; the default one runs on
    assert counts([tr.translate(frame(), stream="cam2")]) == [1]
    assert counts([tr.translate(frame())]) == [2]


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime", "torch"])
def test_frames_of_several_streams_in_one_call_keep_their_own_state(tmp_path, backend):
    """serve's engine call: frames of several cameras together, each with its camera's state."""
    tr = Translator(plugin(tmp_path), backend=backend, precision="fp32")
    batch = np.stack([frame()] * 5)
    out = tr.run_batch(batch, streams=["a", "b", "a", "c", "a"])
    assert counts(out) == [1, 1, 2, 1, 3]
    assert counts(tr.run_batch(batch[:2], streams=["b", "c"])) == [2, 2]


def _video_counts(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return counts([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_each_video_starts_its_own_stream_and_runs_through_in_order(tmp_path, backend):
    """A file (on OpenVINO the YUV path, frames as I420), then another: each starts at 1."""
    tr = Translator(plugin(tmp_path), backend=backend, precision="fp32")
    clip = make_clip(tmp_path / "in.mp4", frames=12, size=(48, 32))
    for name in ("a.mp4", "b.mp4"):
        tr.translate_video(clip, tmp_path / name)
        assert _video_counts(tmp_path / name) == list(range(1, 13))
    got = [counts([f.image])[0] for f in tr.stream(clip, frames=5)]
    assert got == [1, 2, 3, 4, 5]


def test_a_gap_in_time_resets_the_state_once_and_says_so(tmp_path, caplog):
    """Frames 0-5 at 25 fps, then a jump of two seconds (frames missing, a seek): state again."""
    tr = Translator(plugin(tmp_path), backend="onnxruntime")
    pts = [i * 40 for i in range(6)] + [2000 + i * 40 for i in range(4)] + [3000]
    clip = make_clip(tmp_path / "gap.mkv", frames=len(pts), size=(48, 32), pts=pts,
                     time_base=Fraction(1, 1000))
    with caplog.at_level(logging.DEBUG, logger="streamgan"):
        got = [counts([f.image])[0] for f in tr.stream(clip)]
    assert got == [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 1]
    said = [r.getMessage() for r in caplog.records if "temporal state reset" in r.getMessage()]
    assert len(said) == 1 and "gap" in said[0], said  # said once per stream and reason


def test_time_going_back_and_a_scene_cut_reset_the_state(tmp_path):
    tr = Translator(plugin(tmp_path), backend="onnxruntime")
    batch = np.stack([frame(100)] * 3 + [frame(250)] + [frame(250)])
    assert counts(tr.run_batch(batch, streams=["s"] * 5, times=[0, .04, .08, .12, .16])) == \
        [1, 2, 3, 1, 2]  # a cut: the whole picture changed
    assert counts(tr.run_batch(batch[3:], streams=["s"] * 2, times=[.2, .1])) == [3, 1]


def test_a_size_change_resets_the_state(tmp_path):
    tr = Translator(plugin(tmp_path), backend="openvino", precision="fp32")
    assert counts(tr.translate(np.stack([frame()] * 2))) == [1, 2]
    assert counts([tr.translate(frame(size=(64, 48)))]) == [1]


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_a_state_at_half_the_network_size_is_given_at_that_size(tmp_path, backend):
    """A card's state scale 2: the runtime keeps the state at half the frame's size, for every size."""
    tr = Translator(plugin(tmp_path, scale=2), backend=backend, precision="fp32")
    assert counts(tr.translate(np.stack([frame()] * 3))) == [1, 2, 3]
    assert counts([tr.translate(frame(size=(64, 48)))]) == [1]  # a new size: a new state, half of it
    assert state_size(64, 48, Processing(policy="source", short_side=360), 2) == (32, 24)


def test_a_state_scale_that_does_not_divide_the_size_multiple_is_refused(tmp_path):
    d = plugin(tmp_path)
    card = yaml.safe_load((d / "card.yaml").read_text())
    card["temporal"]["state"][0]["scale"] = 3
    (d / "card.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ModelError, match="scale 3 must divide"):
        Translator(d, backend="openvino")


def test_a_card_naming_a_state_the_graph_lacks_is_refused(tmp_path):
    p = plugin(tmp_path, state=[{"input": "memory", "output": "memory_out", "channels": 1}])
    with pytest.raises(ModelError, match="does not take and return the state its card declares"):
        Translator(p)


def test_a_frame_by_frame_card_on_a_temporal_graph_is_refused(tmp_path):
    p = plugin(tmp_path)
    card = yaml.safe_load((p / "card.yaml").read_text())
    del card["temporal"]
    (p / "card.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ModelError, match="2 inputs and 2 outputs.*temporal section"):
        Translator(p)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime", "torch"])
def test_a_graph_returning_its_state_in_another_shape_is_a_model_error(tmp_path, backend):
    tr = Translator(plugin(tmp_path, bad="shape"), backend=backend, precision="fp32")
    with pytest.raises(ModelError, match="state 'state_out' comes back as float32 .* it was given as"):
        tr.translate(frame())


def test_a_graph_whose_state_has_other_channels_than_its_card_is_refused_on_load(tmp_path):
    with pytest.raises(ModelError, match=r"state 'state_out' has the shape \[\?,2,\?,\?\]; its card says N x 1"):
        Translator(plugin(tmp_path, bad="channels"))


def test_a_temporal_model_refuses_tiles(tmp_path):
    with pytest.raises(UsageError, match="temporal model, which runs whole frames: tile"):
        Translator(plugin(tmp_path), tile=64)


def test_the_state_size_follows_the_network_size_rule():

    src = Processing(policy="source", short_side=360, size_multiple=4)
    assert state_size(1920, 1080, src) == (640, 360)
    assert state_size(1917, 1079, src) == (636, 360)
    assert state_size(133, 97, src) == (132, 96)  # never upscaled; rounded down to the multiple
    assert state_size(133, 97, Processing()) == (133, 97)


def test_serve_keeps_each_cameras_state_apart(tmp_path):
    """Two cameras in one serve share engine calls; each recording counts 1, 2, 3... in order: no
    camera's frame ran with the other's state."""
    from test_live_serve import _serve

    p = plugin(tmp_path)
    a = make_clip(tmp_path / "a.mp4", frames=20, size=(96, 64))
    b = make_clip(tmp_path / "b.mp4", frames=15, size=(96, 64), seed=3)
    cfg = {"model": str(p), "backend": "openvino", "precision": "fp32", "metrics": None,
           "batch": 2, "max_wait": 0.05, "streams": [
               {"name": "a", "input": str(a), "outputs": ["a_rec.mp4"], "drop": "block"},
               {"name": "b", "input": str(b), "outputs": ["b_rec.mp4"], "drop": "block"}]}
    proc = _serve(cfg, tmp_path / "serve.yaml")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert _video_counts(tmp_path / "a_rec.mp4") == list(range(1, 21)), err
    assert _video_counts(tmp_path / "b_rec.mp4") == list(range(1, 16)), err


def test_a_live_engine_skipping_frames_steadily_keeps_the_state(tmp_path):
    """A camera at 30 fps and a model that takes every third frame: the state runs on through the skips;
    a seek later still resets it."""
    tr = Translator(plugin(tmp_path), backend="onnxruntime")
    times = [0.0, 1 / 30] + [1 / 30 + k * 0.1 for k in range(1, 6)] + [5.0, 5.1]
    out = tr.run_batch(np.stack([frame()] * len(times)), streams=["cam"] * len(times), times=times)
    assert counts(out) == [1, 2, 3, 4, 5, 6, 7, 1, 2]


def test_a_live_engine_skipping_frames_unevenly_keeps_the_state():
    """A model slower than its 30 fps camera takes the newest frame each time: steps of 2, 1 and 3 frame
    intervals, and now and then a stall of 4 or 8. Those are the engine's pace, not a seek: the state runs on
    (a drop fill that waits for history must stay on in live); a jump of a second still resets it."""
    import streamgan.temporal as T

    class _Model:
        task = "stand-in"
        temporal = type("t", (), {"state": []})()

    s = T.Streams(_Model())
    image = np.full((36, 64), 100, np.uint8)

    def resets(steps: list[int], fps: float) -> list[bool]:
        """Whether each frame, ``steps`` camera frames after the one before, starts its stream over."""
        stream, t, out = s._stream(s.open()), 0.0, []
        for step in steps:
            stream.state = [np.zeros(1, np.float32)]
            s._observe(stream, image, t)
            out.append(stream.state is None)
            t += step / fps
        return out

    r = resets([2, 1, 3, 2, 2, 1, 3, 1, 4, 2, 2, 3, 1, 2, 1, 1, 8] * 3 + [30, 2], fps=30)
    assert not any(r[:-1]) and r[-1], r
    # a 10 fps surveillance camera and a model taking every frame, every second or every third (steps of
    # 0.1-0.3 s, up to three times the last one); a repeated timestamp is not time going back
    r = resets([1, 3, 1, 2, 1, 3, 2, 1, 0, 3] * 4, fps=10)
    assert not any(r), r


def test_bench_times_a_temporal_model_alone_with_its_state(tmp_path):
    from streamgan import bench

    tr = Translator(plugin(tmp_path), backend="openvino", precision="fp32")
    m = bench.model_only(tr.backend, 48, 32, batch=2, iters=3, reps=1, model=tr.model)
    assert m.median > 0


def test_each_file_of_a_batch_job_has_its_own_state(tmp_path):
    """Three files through one worker (the model loaded once): each output counts from 1."""
    from streamgan import translate_many

    src = tmp_path / "in"
    src.mkdir()
    for i, n in enumerate((6, 9, 4)):
        make_clip(src / f"c{i}.mp4", frames=n, size=(48, 32), seed=i)
    report = translate_many([str(src)], str(plugin(tmp_path)), str(tmp_path / "out"), jobs=1,
                            backend="onnxruntime")
    assert not report.failed, [(f.input, f.error) for f in report.failed]
    for i, n in enumerate((6, 9, 4)):
        outs = list((tmp_path / "out").rglob(f"c{i}*.mp4"))
        assert len(outs) == 1, outs
        assert _video_counts(outs[0]) == list(range(1, n + 1))
