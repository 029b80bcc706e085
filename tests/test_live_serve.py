"""`streamgan serve`: several cameras from a real RTSP server in one process, with metrics."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import make_clip, read_video, wait_for
from rtsp_server import free_port
from test_live_rtsp import (clip_long, file_settled, gray_frames, server_factory,  # noqa: F401
                            small_clip)

from streamgan.errors import UsageError
from streamgan.serve import load_config


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


def value(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(got.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.rtsp
@pytest.mark.timeout(150)
def test_two_streams_one_engine_metrics_and_isolation(server_factory, clip_long,  # noqa: F811
                                                      identity_onnx, tmp_path):
    received = tmp_path / "received.ts"
    srv = server_factory(play={"/cam1": clip_long, "/cam2": clip_long},
                         record={"/pub": received})
    port = free_port()
    cfg = {
        "model": str(identity_onnx), "backend": "openvino", "precision": "fp32",
        "batch": 2, "max_wait": 0.045, "metrics": {"port": port},
        "streams": [
            {"name": "front", "input": srv.url("/cam1", auth="cam:pass-one"),
             "outputs": [srv.url("/pub"), "front.mp4"], "frames": 125, "drop": "block"},
            {"name": "rear", "input": srv.url("/cam2"), "outputs": ["rear"],
             "segment": 2, "frames": 125, "drop": "block"},
            {"name": "gone", "input": f"rtsp://x:pass-two@127.0.0.1:{free_port()}/cam",
             "outputs": ["gone.mp4"], "reconnect": 0},
        ],
    }
    (tmp_path / "rear").mkdir()
    cfg["streams"][1]["outputs"] = ["rear/rear.mp4"]
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "streamgan", "serve", str(path),
                             "--duration", "60"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = None
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:
            text = scrape(port)
            if text and (value(text, "streamgan_frames_total", stream="front") or 0) >= 40 and \
                    (value(text, "streamgan_frames_total", stream="rear") or 0) >= 40:
                seen = text
                break
            time.sleep(0.2)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert seen is not None, f"metrics never showed both streams running: {err}"
    # metrics while running: both streams up and publishing, the broken one failed alone
    for name in ("front", "rear"):
        assert value(seen, "streamgan_stream_up", stream=name, state="running") == 1
        assert value(seen, "streamgan_fps", stream=name) > 10
        assert 0 < value(seen, "streamgan_latency_quantile_seconds", stream=name,
                         stage="total", quantile="0.95") < 1
        # the histograms, by stage: every frame published is counted in each
        total = value(seen, "streamgan_latency_seconds_count", stream=name, stage="total")
        assert total >= 40
        for stage in ("wait", "model", "output", "beyond"):
            assert value(seen, "streamgan_latency_seconds_count", stream=name,
                         stage=stage) == total
        assert value(seen, "streamgan_latency_seconds_bucket", stream=name, stage="total",
                     le="+Inf") == total
        assert value(seen, "streamgan_dropped_frames_total", stream=name) == 0
    assert value(seen, "streamgan_stream_up", stream="gone", state="failed") == 0
    calls = value(seen, "streamgan_engine_calls_total")
    frames = value(seen, "streamgan_engine_frames_total")
    assert frames / calls > 1.3, (frames, calls)  # frames of both streams share engine calls
    assert "# TYPE streamgan_latency_seconds histogram" in seen
    assert value(seen, "streamgan_output_frames_total", stream="front",
                 output=srv.url("/pub")) >= 40
    assert value(seen, "streamgan_output_reconnects_total", stream="front") == 0
    # the end: each stream's outputs are its own and complete
    assert "gone: failed" in err and "connection refused" in err
    assert "pass-one" not in err + out and "pass-two" not in err + out
    front = read_video(tmp_path / "front.mp4")
    assert len(front["frames"]) == 125
    segs = sorted((tmp_path / "rear").glob("rear_*.mp4"))
    assert [len(read_video(s)["frames"]) for s in segs] == [50, 50, 25]
    assert file_settled(received)
    assert len(gray_frames(received)) == 125
    # outputs are not mixed up: the streams are the same clip, so compare with it
    ref = gray_frames(clip_long)[:125]
    import numpy as np

    got = gray_frames(tmp_path / "front.mp4")
    assert max(np.abs(g - r).mean() for g, r in zip(got, ref)) < 6


def test_config_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": "x.onnx", "batch": 0, "streams": [
        {"name": "a b", "input": "rtsp://u:secretpw@h/x", "outputs": []},
        {"name": "c", "input": "rtsp://h/y", "outputs": ["c.mp4"], "colour": "red"}]}))
    with pytest.raises(UsageError) as e:
        load_config(bad)
    msg = str(e.value)
    assert "batch" in msg and "streams.0.name" in msg and "streams.0.outputs" in msg
    assert "streams.1.colour" in msg and "secretpw" not in msg
    dup = tmp_path / "dup.yaml"
    dup.write_text(yaml.safe_dump({"model": "x.onnx", "streams": [
        {"name": "a", "input": "rtsp://h/x", "outputs": ["a.mp4"]},
        {"name": "a", "input": "rtsp://h/y", "outputs": ["b.mp4"]}]}))
    with pytest.raises(UsageError, match="unique"):
        load_config(dup)
    with pytest.raises(UsageError, match="no such config"):
        load_config(tmp_path / "missing.yaml")
    public = tmp_path / "public.yaml"
    public.write_text(yaml.safe_dump({"model": "x.onnx", "metrics": {"host": "0.0.0.0"},
                                      "streams": [{"name": "a", "input": "rtsp://h/x",
                                                   "outputs": ["a.mp4"]}]}))
    with pytest.raises(UsageError, match="metrics.host"):
        load_config(public)  # the endpoint stays on localhost


def test_example_config_validates():
    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "serve_example.yaml")
    assert len(cfg.streams) >= 2 and cfg.metrics.host == "127.0.0.1"


@pytest.fixture(scope="module")
def fixed_shape_onnx(tmp_path_factory):
    """An identity model that only takes 320x180 frames (others make the engine fail)."""
    import onnx
    from onnx import TensorProto, helper

    import numpy as np
    from onnx import numpy_helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])
    zeros = numpy_helper.from_array(np.zeros((1, 3, 180, 320), np.float32), "zeros")
    graph = helper.make_graph([helper.make_node("Add", ["input", "zeros"], ["output"])],
                              "fixed", [x], [y], initializer=[zeros])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("onnx") / "fixed.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.rtsp
@pytest.mark.timeout(90)
def test_a_stream_the_model_cannot_take_fails_alone(server_factory, udacity_clip,  # noqa: F811
                                                     fixed_shape_onnx, tmp_path):
    ok = small_clip(udacity_clip, tmp_path / "ok.mp4", 40)
    odd = small_clip(udacity_clip, tmp_path / "odd.mp4", 40, size=(160, 96))
    srv = server_factory(play={"/ok": ok, "/odd": odd})
    cfg = {"model": str(fixed_shape_onnx), "backend": "openvino", "precision": "fp32",
           "metrics": None, "streams": [
               {"name": "good", "input": srv.url("/ok"), "outputs": ["good.mp4"],
                "frames": 40, "drop": "block"},
               {"name": "bad", "input": srv.url("/odd"), "outputs": ["bad.mp4"],
                "frames": 40}]}
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "streamgan", "serve", str(path), "--duration",
                        "40"], capture_output=True, text=True, timeout=80)
    assert r.returncode == 0, r.stderr
    assert re.search(r"bad: failed; 0 frames.*the model cannot run on 160x96 frames",
                     r.stderr), r.stderr
    assert "good: ended; 40 frames" in r.stderr, r.stderr[-1500:]
    assert len(read_video(tmp_path / "good.mp4")["frames"]) == 40
    assert not (tmp_path / "bad.mp4").exists() or \
        (tmp_path / "bad.mp4").stat().st_size < 1000


def test_serve_check_validates_without_running(tmp_path):
    from conftest import run_cli

    import shutil

    example = tmp_path / "cams.yaml"  # the shipped example, where its recordings folder exists
    shutil.copy(Path(__file__).resolve().parent.parent / "configs" / "serve_example.yaml", example)
    (tmp_path / "recordings").mkdir()
    r = run_cli("serve", example, "--check", timeout=60)
    assert r.returncode == 0 and "ok (3 streams)" in r.stdout, r.stderr
    (tmp_path / "recordings").rmdir()  # the run would fail those streams: so does the check
    r = run_cli("serve", example, "--check", timeout=60)
    assert r.returncode == 4 and f"front: {tmp_path / 'recordings'}" in r.stderr, r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x.onnx\nstreams: []\n")
    r = run_cli("serve", bad, "--check", timeout=60)
    assert r.returncode == 2 and "streams" in r.stderr


def _serve(cfg: dict, path: Path, *args, nofile: int | None = None) -> subprocess.Popen:
    """``streamgan serve`` on this config in a subprocess (with at most ``nofile`` descriptors)."""
    import resource

    path.write_text(yaml.safe_dump(cfg))

    def limit():
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return subprocess.Popen([sys.executable, "-m", "streamgan", "serve", str(path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit)


@pytest.mark.timeout(120)
def test_idle_metrics_connections_never_stop_the_recordings(identity_onnx, tmp_path):
    """200 connections to the metrics port that never send a request, in a process allowed 64
    descriptors: the recording goes on to its end, the metrics answer, the idle ones are closed."""
    import socket

    from streamgan.metrics import METRICS_MAX_CONNECTIONS, METRICS_TIMEOUT

    # 20 s paced like a camera (10 fps), recorded in 2 s segments: new files all along
    clip = make_clip(tmp_path / "cam.mp4", frames=200, size=(320, 180), rate=10)
    port = free_port()
    (tmp_path / "rec").mkdir()
    cfg = {"model": str(identity_onnx), "backend": "openvino", "precision": "fp32",
           "metrics": {"port": port},
           "streams": [{"name": "cam", "input": str(clip), "outputs": ["rec/cam.mp4"],
                        "segment": 2, "drop": "block"}]}
    proc = _serve(cfg, tmp_path / "serve.yaml", nofile=64)
    idle: list[socket.socket] = []
    answered = None
    most_fds = closed = 0
    alive = False
    try:
        assert wait_for(lambda: (value(scrape(port) or "", "streamgan_frames_total",
                                       stream="cam") or 0) > 0 or proc.poll() is not None, 40)
        for _ in range(200):
            if proc.poll() is not None:
                break
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            idle.append(s)
        t0 = time.monotonic()
        while time.monotonic() - t0 < METRICS_TIMEOUT + 3 and proc.poll() is None:
            try:  # descriptors of the serve process while the idle connections are held
                most_fds = max(most_fds, len(list(Path(f"/proc/{proc.pid}/fd").iterdir())))
            except OSError:
                pass
            answered = answered or scrape(port)
            time.sleep(0.2)
        # by now the server has closed every idle connection (beyond the cap at once, the
        # others after the timeout), while it still runs
        alive = proc.poll() is None
        for s in idle:
            s.settimeout(0.5)
            try:
                closed += s.recv(1) == b""
            except OSError as e:
                closed += not isinstance(e, socket.timeout)
        out, err = proc.communicate(timeout=60)
    finally:
        for s in idle:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "cam: ended; 200 frames" in err, err[-2000:]
    segs = sorted((tmp_path / "rec").glob("cam_*.mp4"))
    assert sum(len(read_video(s)["frames"]) for s in segs) == 200
    assert answered is not None and value(answered, "streamgan_frames_total", stream="cam") > 0
    assert len(idle) >= 150, len(idle)
    assert alive and closed == len(idle), (alive, closed, len(idle))
    assert most_fds <= 20 + METRICS_MAX_CONNECTIONS, most_fds  # its own budget of descriptors
    assert "Traceback" not in err, err


def test_a_stream_that_never_got_a_frame_leaves_no_empty_recording(identity_onnx, tmp_path):
    """A camera whose every frame is undecodable: its recording is not left as an empty file,
    and the log says so; the other stream records as usual."""
    from test_live_units import undecodable_clip

    good = make_clip(tmp_path / "good.mp4", frames=20, size=(320, 180))
    bad = undecodable_clip(tmp_path / "bad.mp4")
    cfg = {"model": str(identity_onnx), "backend": "openvino", "precision": "fp32",
           "metrics": None, "streams": [
               {"name": "good", "input": str(good), "outputs": ["good_rec.mp4"],
                "drop": "block"},
               {"name": "empty", "input": str(bad), "outputs": ["empty_rec.mp4"]}]}
    proc = _serve(cfg, tmp_path / "serve.yaml")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(read_video(tmp_path / "good_rec.mp4")["frames"]) == 20
    assert not (tmp_path / "empty_rec.mp4").exists(), err
    assert re.search(r"stream empty: no frame recorded; removed the empty .*empty_rec\.mp4",
                     err), err


def test_metrics_port_in_use_is_a_clear_error_before_any_camera(identity_onnx, tmp_path):
    import socket

    from conftest import error_line

    with socket.socket() as taken, socket.socket() as camera:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)  # another exporter holds the port
        camera.bind(("127.0.0.1", 0))
        camera.listen(1)
        camera.settimeout(0.5)
        port = taken.getsockname()[1]
        cfg = {"model": str(identity_onnx), "backend": "openvino", "precision": "fp32",
               "metrics": {"port": port},
               "streams": [{"name": "cam", "outputs": ["cam.mp4"], "reconnect": 0,
                            "input": f"rtsp://127.0.0.1:{camera.getsockname()[1]}/x"}]}
        proc = _serve(cfg, tmp_path / "serve.yaml")
        out, err = proc.communicate(timeout=60)
        with pytest.raises(socket.timeout):
            camera.accept()  # the camera was never contacted
    assert proc.returncode == 2, err
    assert error_line(err) == (f"streamgan: error: metrics: cannot listen on 127.0.0.1:{port} "
                               "(Address already in use)")
    assert not (tmp_path / "cam.mp4").exists()
