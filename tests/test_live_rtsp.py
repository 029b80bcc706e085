"""Live RTSP tests against a real RTSP server (GStreamer's, run with Debian's python3).

The server (tests/rtsp_server.py) binds 127.0.0.1 only and serves a real clip from
../shared/data/clips, transcoded here to 320x180 so the tests stay light. Every wait is bounded.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import playable_times, read_video, run_cli, wait_for
from rtsp_server import Server, free_port, unavailable

from streamgan import live, outputs
from streamgan.errors import InputError, OutputError
from streamgan.translator import Translator

_why: list[str] = []


def _need_server():
    if not _why:
        _why.append(unavailable())
    if _why[0]:
        pytest.skip(_why[0])


def small_clip(src: Path, dst: Path, frames: int, size=(320, 180), codec="libx264") -> Path:
    """The first ``frames`` frames of a real clip at ``size``, 25 fps, without B-frames."""
    with av.open(str(src)) as c_in, av.open(str(dst), "w") as c_out:
        opts = {"preset": "ultrafast", "bf": "0", "g": "25"}
        if codec == "libx265":
            opts = {"preset": "ultrafast", "x265-params": "bframes=0:keyint=25:log-level=error"}
        s = c_out.add_stream(codec, rate=25, options=opts)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        n = 0
        for f in c_in.decode(video=0):
            g = f.reformat(size[0], size[1], "yuv420p")
            g.pts, g.time_base = n, Fraction(1, 25)
            c_out.mux(s.encode(g))
            n += 1
            if n >= frames:
                break
        c_out.mux(s.encode(None))
    return dst


@pytest.fixture(scope="module")
def clip50(udacity_clip, tmp_path_factory):
    return small_clip(udacity_clip, tmp_path_factory.mktemp("live") / "clip50.mp4", 50)


@pytest.fixture(scope="module")
def clip_long(udacity_clip, tmp_path_factory):
    return small_clip(udacity_clip, tmp_path_factory.mktemp("live") / "clip221.mp4", 221)


@pytest.fixture
def server_factory():
    started: list[Server] = []

    def make(**kw) -> Server:
        _need_server()
        s = Server(**kw)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def identity_tr(identity_onnx):
    return Translator(identity_onnx, backend="openvino", precision="fp32")


def gray_frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray").astype(np.int16) for f in c.decode(video=0)]


def best_match(images, reference) -> list[int]:
    """For each image, the index of the reference frame it is closest to."""
    ref = np.stack(reference)
    return [int(np.argmin(np.abs(ref - im[None]).mean(axis=(1, 2)))) for im in images]


def file_settled(path: Path, quiet: float = 0.6, timeout: float = 10.0) -> bool:
    """The server's recording exists and has stopped growing."""
    last = [-1, time.monotonic()]

    def settled():
        size = path.stat().st_size if path.exists() else -1
        if size != last[0]:
            last[:] = [size, time.monotonic()]
            return False
        return size > 0 and time.monotonic() - last[1] >= quiet

    return wait_for(settled, timeout, poll=0.1)


# -- pull, translate, publish, read back ------------------------------------------------------
@pytest.mark.rtsp
@pytest.mark.timeout(120)
def test_pull_translate_publish_read_back(server_factory, clip50, identity_onnx, tmp_path):
    received = tmp_path / "received.ts"
    srv = server_factory(play={"/cam": clip50}, record={"/pub": received})
    rec = tmp_path / "rec.mp4"
    cam = srv.url("/cam", auth="viewer:s3cret")  # this server ignores credentials
    r = run_cli("run", "--task", identity_onnx, "--backend", "openvino", "--precision", "fp32",
                cam, "-o", f"{srv.url('/pub')},{rec}", "--frames", "50", "--drop", "block",
                "--stall-timeout", "5", timeout=90)
    assert r.returncode == 0, r.stderr
    assert "s3cret" not in r.stderr + r.stdout and "viewer" not in r.stderr + r.stdout
    assert "rtsp://***@127.0.0.1" in r.stderr
    assert "50 frames" in r.stderr and "latency capture->publish p50" in r.stderr

    reference = gray_frames(clip50)
    # what the second endpoint received, read back from the server's side
    assert file_settled(received)
    got = gray_frames(received)
    assert len(got) == 50
    assert best_match(got, reference) == list(range(50))
    with av.open(str(received)) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0) if f.pts is not None]
    steps = np.diff(times)
    assert len(times) >= 48 and (steps > 0).all()
    assert abs(float(np.median(steps)) - 0.04) < 0.005
    assert abs((times[-1] - times[0]) - 0.04 * (len(times) - 1)) < 0.5
    # the local recording of the same run: every frame, in order, on the source's timeline
    info = read_video(rec)
    assert (info["width"], info["height"]) == (320, 180)
    assert best_match(gray_frames(rec), reference) == list(range(50))
    assert np.allclose(info["times"], np.arange(50) * 0.04, atol=1e-3)


# -- the camera dies and comes back -----------------------------------------------------------
@pytest.mark.rtsp
@pytest.mark.timeout(120)
def test_reconnects_after_server_killed(server_factory, clip_long, identity_tr, tmp_path):
    srv = server_factory(play={"/cam": clip_long})
    rec = tmp_path / "rec.mp4"
    outs = outputs.make_outputs([rec])
    killed_at = []

    class KillAfter:
        """Progress hook: kill the server after 15 frames, start it again a moment later."""
        n = 0

        def update(self, k=1):
            self.n += k
            if self.n == 15:
                killed_at.append(time.monotonic())
                srv.kill()
                threading.Timer(0.5, srv.start).start()

    opts = live.LiveOptions(stall_timeout=3, open_timeout=3, reconnect=8, drop="block")
    res = live.run(identity_tr, srv.url("/cam"), outs, opts, frames=45, progress=KillAfter())
    assert killed_at, "the server was never killed"
    assert res.reconnects >= 1
    assert res.frames == 45
    info = read_video(rec)
    assert len(info["frames"]) == 45
    t = np.array(info["times"])
    assert (np.diff(t) > 0).all()  # timestamps keep increasing across the reconnection
    assert np.diff(t).max() > 0.2  # and show the gap while the camera was away
    # after the gap the camera starts its clip again from its first frame
    reference = gray_frames(clip_long)[:45]
    match = best_match(gray_frames(rec), reference)
    k = int(np.argmax(np.diff(t))) + 1  # first frame after the gap
    assert k >= 15 and match[:k] == list(range(k))
    assert match[k] <= 5 and match[k:] == sorted(match[k:]), match


# -- the camera stops sending ------------------------------------------------------------------
@pytest.mark.rtsp
@pytest.mark.timeout(60)
def test_stall_is_detected_and_reported(server_factory, clip_long):
    srv = server_factory(play={"/cam": clip_long})
    src = live.LiveSource(srv.url("/cam", auth="ops:hunter2"), stall_timeout=1.0,
                          open_timeout=1.0, reconnect=1, backoff=(0.1, 0.1))
    n = 0
    t_pause = None
    with pytest.raises(InputError) as err:
        for _ in src:
            n += 1
            if n == 10:
                srv.pause()  # SIGSTOP: the connection stays open, nothing more is sent
                t_pause = time.monotonic()
    waited = time.monotonic() - t_pause
    msg = str(err.value)
    assert "stalled" in msg and "no " in msg and "1 s" in msg, msg
    assert "gave up after 1 reconnect" in msg
    assert "hunter2" not in msg and "rtsp://***@" in msg
    assert 1.0 <= waited < 10, waited
    assert src.stats.stalls == 1 and 10 <= n <= 20  # a few were on their way already


# -- bad inputs ---------------------------------------------------------------------------------
def test_refused_url_clear_message_no_credentials(identity_onnx, tmp_path):
    port = free_port()  # nothing listens there
    r = run_cli("run", "--task", identity_onnx, "--backend", "openvino",
                f"rtsp://admin:topsecret@127.0.0.1:{port}/stream", "-o", tmp_path / "o.mp4",
                timeout=60)
    assert r.returncode == 3, r.stderr
    assert "connection refused" in r.stderr
    assert f"rtsp://***@127.0.0.1:{port}/stream" in r.stderr
    assert "topsecret" not in r.stderr + r.stdout and "admin" not in r.stderr + r.stdout
    assert not (tmp_path / "o.mp4").exists()


def test_silent_server_times_out(tmp_path):
    """Something accepts the connection but never answers: a bounded, clear failure."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        url = f"rtsp://u:pw@127.0.0.1:{s.getsockname()[1]}/x"
        t0 = time.monotonic()
        with pytest.raises(InputError, match=r"no answer within 1 s") as err:
            live.LiveSource(url, open_timeout=1.0, stall_timeout=1.0)
        assert time.monotonic() - t0 < 8
        assert "pw" not in str(err.value)


@pytest.mark.rtsp
@pytest.mark.timeout(60)
def test_wrong_path_and_wrong_credentials(server_factory, clip50):
    srv = server_factory(play={"/cam": clip50}, auth="bob:right-pass")
    with pytest.raises(InputError, match="404 Not Found"):
        live.LiveSource(srv.url("/nope", auth="bob:right-pass"), open_timeout=5)
    with pytest.raises(InputError, match="refused the credentials") as err:
        live.LiveSource(srv.url("/cam", auth="bob:wrong-pass"), open_timeout=5)
    assert "wrong-pass" not in str(err.value)
    ok = live.LiveSource(srv.url("/cam", auth="bob:right-pass"), open_timeout=5, reconnect=0)
    assert (ok.width, ok.height) == (320, 180)
    assert sum(1 for _ in ok) == 50


# -- a publish target that goes away ------------------------------------------------------------
@pytest.mark.rtsp
@pytest.mark.timeout(120)
def test_publish_target_going_away_keeps_recording(server_factory, clip_long, identity_tr,
                                                   tmp_path):
    cams = server_factory(play={"/cam": clip_long})
    target = server_factory(record={"/pub": tmp_path / "received.ts"})
    rec = tmp_path / "rec.mp4"
    segs = tmp_path / "seg.mp4"
    enc = outputs.EncodeOptions()
    outs = outputs.FanOut([outputs.StreamOutput(target.url("/pub"), encode=enc),
                           outputs.FileOutput(rec, encode=enc),
                           outputs.SegmentOutput(segs, 1.0, encode=enc)])

    class KillTarget:
        n = 0

        def update(self, k=1):
            self.n += k
            if self.n == 12:
                target.kill()

    opts = live.LiveOptions(stall_timeout=3, reconnect=0, drop="block")
    res = live.run(identity_tr, cams.url("/cam"), outs, opts, frames=60, progress=KillTarget())
    assert res.frames == 60
    report = {name: (n, err) for name, n, err in res.outputs}
    n_pub, err_pub = report[target.url("/pub")]
    assert err_pub and "publishing stopped" in err_pub and n_pub < 60
    assert report[str(rec)] == (60, "")
    info = read_video(rec)  # the recording is whole and playable
    assert len(info["frames"]) == 60
    assert np.allclose(info["times"], np.arange(60) * 0.04, atol=1e-3)
    files = sorted(tmp_path.glob("seg_*.mp4"))
    assert [f.name for f in files] == [f"seg_{i:05d}.mp4" for i in range(3)]
    for f, n in zip(files, [25, 25, 10]):  # each plays on its own, from time 0, 1 s long
        seg = read_video(f)
        assert len(seg["frames"]) == n
        assert seg["times"][0] == 0.0 and np.allclose(np.diff(seg["times"]), 0.04, atol=1e-3)
    assert not list(tmp_path.glob(".*part"))


def test_every_output_failing_stops_the_run(identity_tr, tmp_path):
    """Publishing to a port nobody listens on, with no other output: a clear OutputError."""
    outs = outputs.make_outputs([f"rtsp://127.0.0.1:{free_port()}/pub"])
    clip = tmp_path / "c.mp4"
    from conftest import make_clip

    make_clip(clip, frames=5, size=(64, 48))
    with pytest.raises(OutputError, match="cannot publish: connection refused"):
        live.run(identity_tr, clip, outs, live.LiveOptions())


# -- library use ----------------------------------------------------------------------------------
@pytest.mark.rtsp
@pytest.mark.timeout(60)
def test_stream_api_yields_frames_with_timestamps_and_callback(server_factory, clip50,
                                                               identity_onnx):
    import streamgan

    srv = server_factory(play={"/cam": clip50})
    called = []
    frames = list(streamgan.stream(srv.url("/cam"), str(identity_onnx), backend="openvino",
                                   precision="fp32", frames=20, on_frame=called.append))
    assert len(frames) == 20 and called == frames
    assert [f.index for f in frames] == list(range(20))
    assert [f.time for f in frames] == pytest.approx([i * 0.04 for i in range(20)], abs=1e-3)
    assert all(f.image.shape == (180, 320, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(0 <= f.latency < 2 for f in frames)
    reference = gray_frames(clip50)[:20]
    got = [f.image.astype(np.int16).mean(-1) for f in frames]
    match = best_match([g.astype(np.int16) for g in got], reference)
    assert match == list(range(20))


# -- other transports and inputs ------------------------------------------------------------------
@pytest.mark.rtsp
@pytest.mark.timeout(60)
def test_rtsp_over_udp(server_factory, clip50):
    srv = server_factory(play={"/cam": clip50})
    src = live.LiveSource(srv.url("/cam"), rtsp_transport="udp", reconnect=0, max_frames=30,
                          stall_timeout=5)
    frames = list(src)
    assert len(frames) == 30
    assert best_match([f.image.astype(np.int16).mean(-1).astype(np.int16) for f in frames],
                      gray_frames(clip50)[:30]) == list(range(30))


@pytest.mark.timeout(60)
def test_hls_over_http(clip50, tmp_path):
    """An HLS playlist served over HTTP on 127.0.0.1 (no RTSP server needed)."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    hls = tmp_path / "hls"
    hls.mkdir()
    with av.open(str(clip50)) as i, av.open(str(hls / "index.m3u8"), "w", format="hls",
                                            options={"hls_time": "1", "hls_list_size": "0"}) as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.dts is not None:
                p.stream = s
                o.mux(p)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(hls)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/index.m3u8"
        assert live.is_live(url)
        src = live.LiveSource(url, reconnect=0, stall_timeout=5)
        frames = list(src)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(frames) == 50
    t = [f.time for f in frames]
    assert all(b > a for a, b in zip(t, t[1:]))
    assert best_match([f.image.astype(np.int16).mean(-1).astype(np.int16) for f in frames],
                      gray_frames(clip50)) == list(range(50))


@pytest.mark.rtsp
@pytest.mark.timeout(120)
def test_publish_target_coming_back_is_reconnected(server_factory, clip_long, identity_tr,
                                                   tmp_path):
    cams = server_factory(play={"/cam": clip_long})
    received = tmp_path / "received.ts"
    target = server_factory(record={"/pub": received})
    rec = tmp_path / "rec.mp4"
    enc = outputs.EncodeOptions()
    pub = outputs.StreamOutput(target.url("/pub"), encode=enc, reconnect=5, timeout=3)
    outs = outputs.FanOut([pub, outputs.FileOutput(rec, encode=enc)])

    class Restart:
        n = 0

        def update(self, k=1):
            self.n += k
            if self.n == 12:
                target.kill()
                threading.Timer(0.3, target.start).start()  # the server comes back

    opts = live.LiveOptions(stall_timeout=3, reconnect=0, drop="block")
    res = live.run(identity_tr, cams.url("/cam"), outs, opts, frames=150, progress=Restart())
    assert res.frames == 150
    assert pub.reconnects == 1 and pub.error == "" and pub.skipped > 0
    assert pub.frames + pub.skipped == 150
    assert len(read_video(rec)["frames"]) == 150  # the recording never noticed
    assert file_settled(received)
    again = gray_frames(received)  # written by the restarted server: after the reconnection
    assert len(again) >= 60
    reference = gray_frames(clip_long)[:150]
    match = best_match(again, reference)
    assert match == sorted(match) and match[0] > 12  # later frames, in order, from a key frame


@pytest.mark.rtsp
@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_stopping_a_live_run_leaves_a_playable_recording(server_factory, clip_long,
                                                         identity_onnx, tmp_path, sig):
    """Ctrl-C finalises the recording; even a killed process leaves a playable one."""
    import signal
    import subprocess
    import sys

    srv = server_factory(play={"/cam": clip_long})
    rec = tmp_path / "rec.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "streamgan", "run", "--task", identity_onnx,
                             "--backend", "openvino", srv.url("/cam"), "-o", rec],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # fragments are written about once a second: wait for a few
        assert wait_for(lambda: rec.exists() and rec.stat().st_size > 60_000, 40, poll=0.1)
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if sig == "SIGINT":
        assert proc.returncode == 0, err
        assert "latency capture->publish" in err
        times = read_video(rec)["times"]
    else:  # killed while writing: the fragments before the last one are whole
        times = playable_times(rec)
    t = np.array(times)
    assert len(t) >= 25 and t[0] == 0 and (np.diff(t) > 0).all()


@pytest.mark.rtsp
@pytest.mark.timeout(90)
def test_camera_changing_codec_and_resolution_on_reconnect(server_factory, clip_long,
                                                           udacity_clip, tmp_path, caplog):
    """The camera comes back as H.265 at another size: frames keep the first geometry."""
    hevc = small_clip(udacity_clip, tmp_path / "cam.h265.mp4", 60, size=(256, 144),
                      codec="libx265")
    srv = server_factory(play={"/cam": clip_long})
    src = live.LiveSource(srv.url("/cam"), stall_timeout=3, open_timeout=3, reconnect=8,
                          backoff=(0.3, 1.0), max_frames=40)
    frames = []
    with caplog.at_level(logging.WARNING, logger="streamgan"):
        for f in src:
            frames.append(f)
            if len(frames) == 15:
                srv.kill()
                srv.play = {"/cam": hevc}
                threading.Timer(0.3, srv.start).start()
    assert len(frames) == 40 and src.stats.reconnects >= 1
    assert all(f.image.shape == (180, 320, 3) for f in frames)
    t = [f.time for f in frames]
    assert all(b > a for a, b in zip(t, t[1:]))
    assert "codec changed from h264 to hevc" in caplog.text
    assert "resolution changed from 320x180 to 256x144" in caplog.text


_LISTENER = """
import socket, sys, threading, av, numpy as np
url, opts, out = sys.argv[1], dict(a.split('=') for a in sys.argv[2].split(',')), sys.argv[3]
if url.startswith('rtmp'):
    # FFmpeg's RTMP listener takes one connection; a probe of the port (streamgan checks a
    # publish target with a plain TCP connect first) would use it up. A small relay in front
    # hands on only a connection that sends something.
    port = int(url.split(':')[2].split('/')[0])
    inner = socket.socket(); inner.bind(('127.0.0.1', 0)); q = inner.getsockname()[1]
    inner.close()
    front = socket.socket(); front.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    front.bind(('127.0.0.1', port)); front.listen(4)

    def pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for x in (a, b):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def relay():
        while True:
            c, _ = front.accept()
            first = c.recv(65536)
            if not first:
                c.close()
                continue
            u = socket.create_connection(('127.0.0.1', q))
            u.sendall(first)
            threading.Thread(target=pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=pipe, args=(u, c), daemon=True).start()
            return

    threading.Thread(target=relay, daemon=True).start()
    url = url.replace(str(port), str(q))
frames = []
try:
    with av.open(url, options=opts, timeout=(30, 3)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format='gray'))
except (av.error.ExitError, av.error.EOFError, av.error.OSError):
    pass  # UDP has no end (the read timeout ends it); RTMP ends when the publisher leaves
np.save(out, np.array(frames))
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("scheme", ["rtmp", "udp"])
def test_publish_rtmp_and_udp(clip50, identity_tr, scheme, tmp_path):
    """Publishing over RTMP (FLV) and UDP (MPEG-TS) to an FFmpeg listener on 127.0.0.1 (in its
    own process: PyAV holds the GIL while an output connects)."""
    import subprocess
    import sys

    port = free_port()
    url = (f"rtmp://127.0.0.1:{port}/live/cam" if scheme == "rtmp"
           else f"udp://127.0.0.1:{port}?pkt_size=1316")
    opts = "listen=1" if scheme == "rtmp" else "fifo_size=1000000,overrun_nonfatal=1"
    got = tmp_path / "got.npy"
    proc = subprocess.Popen([sys.executable, "-c", _LISTENER, url, opts, str(got)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # the listener is up
        outs = outputs.make_outputs([url])
        res = live.run(identity_tr, clip50, outs, live.LiveOptions(realtime=True, drop="block"))
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert res.frames == 50 and proc.returncode == 0, err
    frames = list(np.load(got).astype(np.int16))
    assert len(frames) >= 45  # UDP may lose a packet on a busy machine; RTMP loses none
    if scheme == "rtmp":
        assert len(frames) == 50
    match = best_match(frames, gray_frames(clip50))
    assert match == sorted(match) and match[-1] >= 45


def test_publish_to_a_server_that_never_answers_does_not_freeze_the_process():
    """A publish target whose TCP connect hangs fails within its timeout, and the wait does not
    hold the other threads (PyAV would connect holding the GIL; a Python socket is tried first).
    All on 127.0.0.1: a listening socket whose accept queue is full drops new connections."""
    from fractions import Fraction

    refused = outputs.StreamOutput(f"rtsp://127.0.0.1:{free_port()}/x",
                                   encode=outputs.EncodeOptions(), timeout=2)
    with pytest.raises(OutputError, match="connection refused"):
        refused.open(64, 48, Fraction(1, 25), Fraction(25))

    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue until a connect hangs
            c = socket.socket()
            c.settimeout(0.3)
            try:
                c.connect(("127.0.0.1", port))
                fillers.append(c)
            except OSError:
                c.close()
                break
        ticks: list[float] = []
        stop = threading.Event()

        def ticker():
            while not stop.is_set():
                ticks.append(time.monotonic())
                time.sleep(0.05)

        t = threading.Thread(target=ticker, daemon=True)
        t.start()
        out = outputs.StreamOutput(f"rtsp://127.0.0.1:{port}/x", encode=outputs.EncodeOptions(),
                                   timeout=1.5)
        t0 = time.monotonic()
        with pytest.raises(OutputError, match="no answer within 1.5 s"):
            out.open(64, 48, Fraction(1, 25), Fraction(25))
        waited = time.monotonic() - t0
        stop.set()
        t.join(2)
    finally:
        for c in fillers:
            c.close()
        full.close()
    assert 1.4 <= waited < 5
    assert len(ticks) >= 10 and np.diff(ticks).max() < 0.5  # the other thread kept running
