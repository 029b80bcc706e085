"""The streamgan GStreamer element in real pipelines (gst-launch-1.0 from Debian's GStreamer,
loading the element through `eval "$(streamgan gst-env)"` as the README says)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import make_clip, read_video

pytestmark = pytest.mark.gstreamer


def _why_not() -> str:
    if not shutil.which("gst-launch-1.0"):
        return "gst-launch-1.0 not installed (apt-get install gstreamer1.0-tools)"
    if not list(Path("/usr/lib").glob("*/gstreamer-1.0/libgstpython.so")):
        return ("GStreamer's Python plugin loader not installed (apt-get install "
                "gstreamer1.0-python3-plugin-loader)")
    from streamgan.gstreamer import loader_python_mismatch

    return loader_python_mismatch()


@pytest.fixture(scope="module", autouse=True)
def _need_gstreamer():
    why = _why_not()
    if why:
        pytest.skip(why)


def gst(pipeline: str, timeout: float = 120, cwd=None) -> subprocess.CompletedProcess:
    """gst-launch-1.0 in a shell that ran the README's setup line."""
    env = f'eval "$("{sys.executable}" -m streamgan gst-env)"'
    return subprocess.run(["bash", "-c", f"{env} && exec gst-launch-1.0 -e {pipeline}"],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def _raw_frames(path: Path, w: int, h: int, fmt: str = "RGB") -> np.ndarray:
    data = np.frombuffer(path.read_bytes(), np.uint8)
    if fmt == "RGB":
        return data.reshape(-1, h, w, 3)
    return data.reshape(-1, h * 3 // 2, w)  # I420


def test_gst_inspect_documents_the_element(tmp_path):
    # (from a folder without a ./streamgan in it, which gst-inspect would take for a plugin file)
    env = f'eval "$("{sys.executable}" -m streamgan gst-env)"'
    r = subprocess.run(["bash", "-c", f"{env} && gst-inspect-1.0 streamgan"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for word in ("task", "backend", "precision", "size", "batch", "night-exposure", "I420", "NV12", "BGRx"):
        assert word in r.stdout


def test_a_file_through_the_element_keeps_every_frame_and_timestamp(tmp_path):
    clip = Path(__file__).resolve().parent.parent / "samples" / "rainy_dashcam.mp4"
    out = tmp_path / "out.mp4"
    r = gst(f"filesrc location={clip} ! decodebin ! videoconvert ! streamgan task=derain "
            f"backend=openvino ! videoconvert ! x264enc ! mp4mux ! filesink location={out}")
    assert r.returncode == 0, r.stdout + r.stderr
    src, got = read_video(clip), read_video(out)
    assert len(got["frames"]) == len(src["frames"]) == 100
    assert got["times"] == pytest.approx(src["times"], abs=1e-3)
    # the model really ran: the output differs from the input where it rains
    assert np.abs(got["frames"][50].astype(int) - src["frames"][50].astype(int)).mean() > 0.5


@pytest.mark.parametrize("fmt", ["RGB", "I420"])
def test_frames_match_the_library_within_two_levels(tmp_path, fmt):
    """The element computes what streamgan's own translation computes on the same frames."""
    from streamgan.translator import Translator

    clip = Path(__file__).resolve().parent.parent / "samples" / "rainy_dashcam.mp4"
    raw_in, raw_out = tmp_path / "in.raw", tmp_path / "out.raw"
    head = (f"filesrc location={clip} ! decodebin ! videoconvert ! "
            f"video/x-raw,format={fmt} ! tee name=t ! queue ! filesink location={raw_in} t. ! "
            f"queue ! streamgan task=derain backend=openvino precision=fp32 ! "
            f"filesink location={raw_out}")
    r = gst(head)
    assert r.returncode == 0, r.stdout + r.stderr
    frames_in, frames_out = _raw_frames(raw_in, 640, 360, fmt), _raw_frames(raw_out, 640, 360, fmt)
    assert len(frames_in) == len(frames_out) == 100
    tr = Translator("derain", "openvino", "fp32")
    # every frame in order, one stream (a temporal model carries its state from frame to frame)
    step = tr.translate if fmt == "RGB" else tr.translate_i420  # I420: the library's I420 path, `streamgan derain`'s
    want = [step(f) for f in frames_in]
    for i in (0, 57, 99):
        got = frames_out[i]
        diff = np.abs(got.astype(int) - want[i].astype(int))
        assert diff.max() <= 2, (i, diff.max())


@pytest.mark.parametrize("fmt", ["RGB", "BGR", "RGBx", "BGRx", "I420", "NV12"])
def test_every_format_and_an_odd_size_pass_through_an_identity_model(identity_onnx, tmp_path,
                                                                     fmt):
    """Strides and plane offsets are GStreamer's (rows padded to 4 bytes at 99 pixels wide)."""
    raw_in, raw_out = tmp_path / "in.raw", tmp_path / "out.raw"
    r = gst(f"videotestsrc num-buffers=7 pattern=smpte ! video/x-raw,format={fmt},width=98,"
            f"height=50 ! tee name=t ! queue ! filesink location={raw_in} t. ! queue ! "
            f"streamgan task={identity_onnx} backend=openvino precision=fp32 batch=3 ! "
            f"filesink location={raw_out}")
    assert r.returncode == 0, r.stdout + r.stderr
    a, b = raw_in.read_bytes(), raw_out.read_bytes()
    assert len(a) == len(b) and len(a) > 0  # 7 frames in, 7 out: end of stream flushed the batch
    if fmt in ("RGB", "BGR", "RGBx", "BGRx"):
        x, y = np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)
        step = len(a) // 7
        for i in range(7):  # padding bytes aside, the pixels are unchanged
            row = {"RGB": 98 * 3, "BGR": 98 * 3}.get(fmt, 98 * 4)
            stride = (row + 3) // 4 * 4
            fa = x[i * step:(i + 1) * step].reshape(50, stride)[:, :row]
            fb = y[i * step:(i + 1) * step].reshape(50, stride)[:, :row]
            if fmt.endswith("x"):
                fa, fb = fa.reshape(50, 98, 4)[..., :3], fb.reshape(50, 98, 4)[..., :3]
            assert np.array_equal(fa, fb), (fmt, i)
    else:  # YUV -> RGB -> YUV: compared as pictures (GStreamer's plane layout read back)
        from streamgan.gstreamer import to_rgb

        w, h, cw, ch = 98, 50, 49, 25
        ys = (w + 3) // 4 * 4
        cs = (cw + 3) // 4 * 4 if fmt == "I420" else ys
        offsets = [0, ys * h, ys * h + cs * ch][:3 if fmt == "I420" else 2]
        strides = [ys, cs, cs][:len(offsets)]
        step = len(a) // 7
        for i in range(7):
            fa = to_rgb(a[i * step:(i + 1) * step], fmt, w, h, offsets, strides).astype(int)
            fb = to_rgb(b[i * step:(i + 1) * step], fmt, w, h, offsets, strides).astype(int)
            # the colour bars' sharp edges lose a little to 4:2:0 twice over; the rest is exact
            assert np.abs(fa - fb).mean() < 1.5 and np.median(np.abs(fa - fb)) <= 1, (fmt, i)


def test_end_of_stream_pushes_out_every_frame_held_in_a_batch(identity_onnx, tmp_path):
    out = tmp_path / "out.raw"
    r = gst(f"videotestsrc num-buffers=10 ! video/x-raw,format=RGB,width=64,height=48 ! "
            f"streamgan task={identity_onnx} batch=4 ! filesink location={out}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.stat().st_size == 10 * 64 * 48 * 3


def test_a_bad_task_is_a_bus_error_with_the_command_lines_words(tmp_path):
    r = gst("videotestsrc num-buffers=3 ! video/x-raw,format=RGB,width=64,height=48 ! "
            "streamgan task=nosuchtask ! fakesink")
    assert r.returncode != 0
    text = r.stdout + r.stderr
    clip = make_clip(tmp_path / "in.mp4", frames=3, size=(64, 48))
    cli = subprocess.run([sys.executable, "-m", "streamgan", "run", "--task", "nosuchtask",
                          str(clip)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    words = cli.stderr.split("error: ", 1)[1].strip()
    assert "nosuchtask" in words and words.split(";")[0] in text, (words, text)
    assert "Traceback" not in text


def test_day2night_night_exposure_is_a_property_and_an_unknown_one_a_bus_error(tmp_path):
    def mean_luma(exposure: str) -> float:
        raw = tmp_path / f"{exposure or 'default'}.rgb"
        prop = f"night-exposure={exposure}" if exposure else ""  # none: the card's default
        r = gst(f"videotestsrc num-buffers=2 pattern=smpte ! video/x-raw,format=RGB,width=128,height=96 ! "
                f"streamgan task=day2night backend=openvino {prop} ! filesink location={raw}")
        assert r.returncode == 0, r.stdout + r.stderr
        return float(_raw_frames(raw, 128, 96).mean())

    assert mean_luma("bright") > 1.3 * mean_luma("dashcam")
    assert mean_luma("") == pytest.approx(mean_luma("dashcam"))
    r = gst("videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=64,height=48 ! "
            "streamgan task=day2night night-exposure=dim ! fakesink")
    assert r.returncode != 0
    assert "is not one of day2night's: dashcam, bright" in r.stdout + r.stderr


@pytest.mark.parametrize("caps", ["format=GRAY8,width=64,height=48", "format=RGB,width=8,height=8"])
def test_caps_the_element_cannot_take_fail_the_pipeline(identity_onnx, caps):
    r = gst(f"videotestsrc num-buffers=3 ! video/x-raw,{caps} ! streamgan task={identity_onnx} "
            "! fakesink")
    assert r.returncode != 0
    assert "can't handle caps" in r.stdout + r.stderr or "not-negotiated" in r.stdout + r.stderr


@pytest.mark.rtsp
def test_a_camera_through_the_element_to_an_rtsp_server(identity_onnx, tmp_path):
    """The test RTSP camera -> rtspsrc -> streamgan -> x264 -> rtspclientsink -> the server,
    which records what it receives."""
    from rtsp_server import Server, unavailable

    why = unavailable()
    if why:
        pytest.skip(why)
    clip = make_clip(tmp_path / "cam.mp4", frames=50, size=(160, 96))
    got = tmp_path / "received.ts"
    srv = Server(play={"/cam": str(clip)}, record={"/pub": str(got)})
    env = f'eval "$("{sys.executable}" -m streamgan gst-env)"'
    p = subprocess.Popen(
        ["bash", "-c", f"{env} && exec gst-launch-1.0 -e rtspsrc "
         f"location=rtsp://127.0.0.1:{srv.port}/cam protocols=tcp latency=0 ! rtph264depay ! "
         f"h264parse ! avdec_h264 ! videoconvert ! streamgan task={identity_onnx} ! "
         "videoconvert ! x264enc tune=zerolatency key-int-max=10 ! h264parse ! rtspclientsink "
         f"protocols=tcp location=rtsp://127.0.0.1:{srv.port}/pub"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # a camera never ends: once the 2 s clip has gone through (the recording stops
        # growing), Ctrl-C, which gst-launch -e turns into end of stream
        last, still = -1, time.monotonic()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:
            size = got.stat().st_size if got.exists() else 0
            if size != last:
                last, still = size, time.monotonic()
            elif size > 0 and time.monotonic() - still > 2.0:
                break
            time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        try:
            out, _ = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:  # an RTSP session can hold the end of stream back:
            p.kill()  # what reached the server is what this test judges
            out, _ = p.communicate()
        assert "ERROR" not in out or "streamgan" not in out.split("ERROR", 1)[1][:200], out
    finally:
        p.kill()
        srv.stop()
    with av.open(str(got)) as c:
        frames = [f for f in c.decode(video=0)]
    assert len(frames) >= 40 and (frames[0].width, frames[0].height) == (160, 96)


_LATENCY = r"""
import sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
p = Gst.parse_launch("videotestsrc is-live=true ! video/x-raw,format=RGB,width=64,height=48,"
                     "framerate=25/1 ! streamgan name=s task=" + sys.argv[1] + " batch=" +
                     sys.argv[2] + " ! fakesink sync=true")
p.set_state(Gst.State.PLAYING)
p.get_state(10 * Gst.SECOND)
q = Gst.Query.new_latency()
ok = p.get_by_name("s").get_static_pad("src").query(q)
live, lo, hi = q.parse_latency()
print(int(ok), int(live), lo)
p.set_state(Gst.State.NULL)
"""


@pytest.mark.parametrize("batch", [1, 4])
def test_the_latency_query_counts_the_frames_a_batch_waits_for(identity_onnx, tmp_path, batch):
    script = tmp_path / "latency.py"
    script.write_text(_LATENCY)
    env = f'eval "$("{sys.executable}" -m streamgan gst-env)"'
    r = subprocess.run(["bash", "-c", f"{env} && exec /usr/bin/python3 {script} "
                        f"{identity_onnx} {batch}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ok, live, lo = (int(v) for v in r.stdout.split()[-3:])
    assert ok and live
    waits = (batch - 1) * 40_000_000  # (batch - 1) frame intervals at 25 fps, in ns
    assert waits <= lo < waits + 500_000_000, lo  # plus the model's time, which is small here
