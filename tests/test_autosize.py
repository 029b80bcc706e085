"""--size auto: the model's size follows the engine in live runs (streamgan/autosize.py)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import error_line, make_clip, read_video, run_cli

from streamgan import autosize, live, outputs
from streamgan.io import EncodeOptions
from streamgan.translator import Translator


class Clock:
    """perf_counter for the controller, moved by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(autosize.time, "perf_counter", c)
    return c


def _camera(w=640, h=360):
    return SimpleNamespace(width=w, height=h, size=None)


def _feed(auto, clock, full, seconds, fps=30):
    """Engine calls of one frame at the camera's rate for ``seconds``, each taking ``full`` seconds at
    640x360 and in proportion to the pixels at the size it runs at."""
    for _ in range(int(seconds * fps)):
        clock.now += 1 / fps
        auto.observe(full * auto.size[0] * auto.size[1] / (640 * 360), 1)


def test_the_ladder_and_the_first_size_come_from_timing_each_rung(clock):
    cam = _camera()
    auto = autosize.AutoSize(cam, rate=30)
    assert auto.ladder == [360, 320, 288, 256, 224, 216] and auto.floor == 216
    timed = []

    def timer(size):  # 45 ms a frame at 640x360, in proportion to the pixels
        timed.append(size)
        return 0.045 * size[0] * size[1] / (640 * 360)
    auto.calibrate(timer)
    assert timed == [auto.size_of(s) for s in auto.ladder]  # every rung built before frames flow
    # the largest within 0.6 of the 33 ms interval (20 ms): 224 (17.4 ms); 256 would take 22.8
    assert auto.short == 224 and cam.size == (398, 224) == auto.size
    assert auto.changes[0][1:3] == (360, 224)


def test_too_slow_goes_down_room_goes_up_one_rung_never_back_to_a_slow_size(clock, caplog):
    cam = _camera()
    auto = autosize.AutoSize(cam, rate=30, floor=224)
    auto.calibrate(lambda size: 0.018 * size[0] * size[1] / (640 * 360))  # 18 ms at 360: it fits
    assert auto.short == 360 and cam.size is None and not auto.changes
    _feed(auto, clock, 0.040, 2)  # the machine got busy: 40 ms a frame
    assert auto.short == 256 and cam.size == (456, 256)  # 40 * (256/360)^2 = 20 ms <= 0.7 * 33
    assert "it runs at short side 256 now (was 360" in caplog.text
    _feed(auto, clock, 0.012, 10)  # room again: up a rung at a time, every 3 s
    assert auto.short == 320  # 288 and 320, never 360 within 30 s of it being too slow
    _feed(auto, clock, 0.012, 40)
    assert auto.short == 360 and cam.size is None
    _feed(auto, clock, 0.100, 5)  # far too slow: down to the floor (within a second or two), not below
    assert auto.short == 224 == auto.floor
    steps = [c[1:3] for c in auto.changes]
    assert steps[:4] == [(360, 256), (256, 288), (288, 320), (320, 360)] and steps[-1][1] == 224
    assert "360 -> 256 at" in auto.lines()[0] and "ended at short side 224" in auto.lines()[0]


def test_frames_decoded_before_a_change_are_scaled_to_the_new_size(clock):
    cam = _camera()
    auto = autosize.AutoSize(cam, rate=30)
    auto.calibrate(lambda size: 0.045 * size[0] * size[1] / (640 * 360))
    got = []
    run = auto.wrap(lambda batch: got.extend(f.image.shape for f in batch) or [f.image for f in batch])
    old = SimpleNamespace(image=np.zeros((360, 640, 3), np.uint8))
    new = SimpleNamespace(image=np.zeros((224, 398, 3), np.uint8))
    run([old, new])
    assert got == [(224, 398, 3), (224, 398, 3)]


@pytest.fixture
def tr(identity_onnx):
    return Translator(identity_onnx, backend="openvino", precision="fp32")


def test_a_live_run_with_a_model_too_slow_for_the_camera_lowers_its_size(tr, tmp_path, monkeypatch):
    """A model that takes 60 ms a frame at the camera's size, in proportion to the pixels, against a
    25 fps camera (40 ms): it runs smaller from the first frame, nearly every frame is published, and
    the recording keeps the camera's size, frame count and timestamps."""
    clip = make_clip(tmp_path / "cam.mp4", frames=50, size=(160, 96))  # 2 s at 25 fps
    run = tr.backend.run

    def slow(batch, *a, **k):
        time.sleep(0.06 * batch.shape[1] * batch.shape[2] / (160 * 96) * len(batch))
        return run(batch, *a, **k)

    monkeypatch.setattr(tr.backend, "run", slow)
    out = tmp_path / "out.mp4"
    outs = outputs.make_outputs([str(out)], encode=EncodeOptions(), src=clip)
    res = live.run(tr, clip, outs, live.LiveOptions(realtime=True, drop="oldest", auto_size=True))
    assert res.autosize.changes and res.autosize.changes[0][1] == 96
    assert res.autosize.short < 96 and res.autosize.short >= res.autosize.floor
    assert res.frames >= 45, res.lines()  # without it about two frames in three are dropped
    info = read_video(out)
    assert (info["width"], info["height"]) == (160, 96) and len(info["frames"]) == res.frames
    assert any(line.startswith("size auto:") for line in res.lines())


def test_size_auto_is_refused_for_a_file_translated_as_fast_as_it_goes(tmp_path, identity_onnx):
    clip = make_clip(tmp_path / "in.mp4", frames=4)
    for extra in (["--size", "auto"], ["--min-size", "200"]):
        r = run_cli("run", "--task", identity_onnx, clip, "-o", tmp_path / "out.mp4", *extra)
        assert r.returncode == 2, r.stderr
        assert "are for live runs" in error_line(r.stderr)
        assert not (tmp_path / "out.mp4").exists()
    r = run_cli("run", "--task", identity_onnx, clip, "-o", tmp_path / "out.mp4", "--realtime",
                "--min-size", "200")
    assert r.returncode == 2 and "--min-size goes with --size auto" in error_line(r.stderr)


def test_serve_with_size_auto_lowers_each_cameras_size_for_the_shared_engine(identity_onnx, tmp_path):
    """Two 25 fps cameras (paced files) share an engine that takes 30 ms a frame at their size (in
    proportion to the pixels): together they need a frame every 20 ms, so both run smaller, nearly
    every frame is published, and the metrics say the size of each."""
    from streamgan.serve import Server, ServeConfig

    clips = [make_clip(tmp_path / f"cam{i}.mp4", frames=50, size=(160, 96)) for i in (1, 2)]
    cfg = ServeConfig(model=str(identity_onnx), backend="openvino", precision="fp32", size="auto",
                      metrics=None, streams=[{"name": f"cam{i}", "input": str(c), "realtime": True,
                                              "outputs": [str(tmp_path / f"out{i}.mp4")]}
                                             for i, c in ((1, clips[0]), (2, clips[1]))])
    srv = Server(cfg)
    run = srv.translator.backend.run

    def slow(batch, *a, **k):
        time.sleep(0.03 * batch.shape[1] * batch.shape[2] / (160 * 96) * len(batch))
        return run(batch, *a, **k)

    srv.translator.backend.run = slow
    srv.run(duration=20)
    for i, s in enumerate(srv.streams, 1):
        assert s.auto is not None and s.auto.short < 96, s.auto.lines()
        assert s.published >= 42, (s.published, s.dropped)  # at 96 about half would be dropped
        info = read_video(tmp_path / f"out{i}.mp4")
        assert (info["width"], info["height"]) == (160, 96) and len(info["frames"]) == s.published
    text = srv.metrics_text()
    for s in srv.streams:
        assert f'streamgan_model_short_side{{stream="{s.name}"}} {float(s.auto.short)}' in text
    assert any("size auto:" in line for line in srv.summary())


def test_serve_config_min_size_needs_size_auto():
    from pydantic import ValidationError

    from streamgan.serve import ServeConfig

    with pytest.raises(ValidationError, match="min_size is the floor of size: auto"):
        ServeConfig(model="derain", size=300, min_size=200,
                    streams=[{"name": "a", "input": "rtsp://h/a", "outputs": ["a.mp4"]}])


def test_a_camera_faster_than_it_says_is_judged_by_its_own_rate(clock):
    """A camera that says 10 fps and delivers 30: after two seconds its own rate counts, so a model
    at 40 ms a frame (fine for 10 fps, too slow for 30) is made smaller."""
    cam = _camera()
    auto = autosize.AutoSize(cam, rate=10)
    auto.calibrate(lambda size: 0.040 * size[0] * size[1] / (640 * 360))
    assert auto.short == 360  # 40 ms is within 0.6 of the 100 ms it says
    for i in range(120):  # 4 s at 30 fps, every second frame taken (the engine's pace)
        clock.now += 1 / 30
        if i % 2 == 0:
            auto.arrived([(clock.now, i)])
            auto.observe(0.040 * auto.size[0] * auto.size[1] / (640 * 360), 1)
    assert auto.interval == pytest.approx(1 / 30, rel=0.02)
    assert auto.short < 360


def test_the_stream_api_with_size_auto_yields_frames_at_the_cameras_size(tr, tmp_path, monkeypatch):
    clip = make_clip(tmp_path / "cam.mp4", frames=25, size=(160, 96))
    run = tr.backend.run

    def slow(batch, *a, **k):
        time.sleep(0.06 * batch.shape[1] * batch.shape[2] / (160 * 96) * len(batch))
        return run(batch, *a, **k)

    monkeypatch.setattr(tr.backend, "run", slow)
    got = list(tr.stream(clip, live=live.LiveOptions(realtime=True, auto_size=True)))
    assert len(got) >= 20 and all(f.image.shape == (96, 160, 3) for f in got)
    times = [f.time for f in got]
    assert times == sorted(times)


def test_a_slow_engine_on_a_slow_camera_is_still_judged(clock):
    """A 4 fps camera and an engine at 400 ms a frame: three calls make a judgement."""
    cam = _camera()
    auto = autosize.AutoSize(cam, rate=4)
    auto.calibrate(lambda size: 0.12 * size[0] * size[1] / (640 * 360))  # 120 ms: fits 0.6 of 250
    assert auto.short == 360
    _feed(auto, clock, 0.400, 3, fps=4)
    assert auto.short < 360


def test_a_size_the_engine_cannot_take_is_left_out_of_the_ladder(clock, caplog):
    cam = _camera()
    auto = autosize.AutoSize(cam, rate=30)

    def timer(size):
        if size[1] == 256:
            raise RuntimeError("no engine profile for this shape")
        return 0.045 * size[0] * size[1] / (640 * 360)
    auto.calibrate(timer)
    assert 256 not in auto.ladder and auto.short == 224
    assert "leaves out short side 256 (no engine profile for this shape)" in caplog.text
