"""Real-time pieces that need no RTSP server: drop policy, latency, pacing, segments, files."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import av
import numpy as np
import pytest

from conftest import error_line, make_clip, playable_times, read_video, run_cli

from streamgan import live
from streamgan.errors import UsageError
from streamgan.pipeline import Pipeline
from streamgan.translator import Translator


def _frames(n):
    for i in range(n):
        yield SimpleNamespace(image=np.full((4, 4, 3), i % 256, np.uint8), index=i)


def _camera(n, gap):
    """A camera sending ``n`` frames every ``gap`` seconds on its own clock, each stamped when it came."""
    t0 = time.perf_counter()
    for f in _frames(n):
        time.sleep(max(0.0, t0 + (f.index + 1) * gap - time.perf_counter()))
        f.captured = time.perf_counter()
        yield f


def _slow(batch):
    time.sleep(0.02)
    return [f.index for f in batch]


def test_drop_oldest_keeps_the_newest_and_counts():
    pipe = Pipeline(_frames(60), _slow, batch_size=1, queue_size=2, drop="oldest")
    got = [out for _, out in pipe]
    assert pipe.dropped > 0
    assert len(got) + pipe.dropped == 60
    assert got == sorted(got) and got[-1] == 59  # order kept; the newest frame is never lost


def test_block_never_drops():
    pipe = Pipeline(_frames(30), _slow, batch_size=2, queue_size=2, drop="block")
    assert [out for _, out in pipe] == list(range(30)) and pipe.dropped == 0
    with pytest.raises(ValueError):
        Pipeline(_frames(1), _slow, drop="newest")


def test_latency_percentiles():
    lat = live.Latency()
    for ms in range(1, 101):
        lat.add(ms / 1000)
    assert lat.count == 100 and lat.max == pytest.approx(0.1)
    assert lat.p50 == pytest.approx(0.0505, abs=1e-4)
    assert lat.p95 == pytest.approx(0.09505, abs=1e-4)
    assert "p95 95.0 ms" in lat.summary()
    assert np.isnan(live.Latency().p50)


def test_is_live_and_options():
    assert live.is_live("rtsp://cam/1") and live.is_live("RTSP://cam/1")
    assert live.is_live("srt://h:9000") and live.is_live("/dev/video0")
    assert live.is_live("https://h/live/index.m3u8")
    assert not live.is_live("https://h/clip.mp4") and not live.is_live("clip.mp4")
    fmt, opts = live.open_options("rtsp://h/x", "udp")
    assert fmt is None and opts["rtsp_transport"] == "udp"
    assert live.open_options("/dev/video2")[0] == "v4l2"
    with pytest.raises(UsageError):
        live.open_options("rtsp://h/x", "sctp")
    with pytest.raises(UsageError):
        live.LiveOptions(drop="sometimes").check()


@pytest.fixture(scope="module")
def tr(identity_onnx):
    return Translator(identity_onnx, backend="openvino", precision="fp32")


def test_realtime_file_is_paced_with_latency(tr, tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=25, size=(64, 48))  # one second
    seen = []
    t0 = time.perf_counter()
    out = list(tr.stream(clip, realtime=True, on_frame=seen.append))
    elapsed = time.perf_counter() - t0
    assert elapsed >= 0.9  # played at its own pace, not as fast as possible
    assert len(out) == 25 and seen == out
    assert [f.time for f in out] == pytest.approx([i / 25 for i in range(25)], abs=1e-3)
    assert all(0 <= f.latency < 1 for f in out)
    assert out[3].image.shape == (48, 64, 3)


def test_segments_from_a_file_each_playable(identity_onnx, tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=75, size=(64, 48))  # 3 s at 25 fps
    t0 = time.perf_counter()
    r = run_cli("run", "--task", identity_onnx, "--backend", "openvino", clip,
                "-o", tmp_path / "seg.mp4", "--segment", "1", "--realtime", timeout=120)
    assert r.returncode == 0, r.stderr
    assert time.perf_counter() - t0 >= 2.9  # --realtime paced the file
    assert "0 dropped" in r.stderr and "latency capture->publish p50" in r.stderr
    files = sorted(tmp_path.glob("seg_*.mp4"))
    assert [f.name for f in files] == ["seg_00000.mp4", "seg_00001.mp4", "seg_00002.mp4"]
    for f in files:
        info = read_video(f)
        assert len(info["frames"]) == 25
        assert info["times"] == pytest.approx([i / 25 for i in range(25)], abs=1e-3)
    assert not list(tmp_path.glob(".*"))  # no partial segment left behind


def test_segment_refuses_to_clobber(identity_onnx, tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=5, size=(64, 48))
    (tmp_path / "seg_00000.mp4").write_bytes(b"keep")
    r = run_cli("run", "--task", identity_onnx, clip, "-o", tmp_path / "seg.mp4",
                "--segment", "1", timeout=60)
    assert r.returncode == 4 and "exists" in r.stderr
    assert (tmp_path / "seg_00000.mp4").read_bytes() == b"keep"


def _ts_part(path, size, frames, seed):
    make_clip(path.with_suffix(".mp4"), frames=frames, size=size, seed=seed)
    with av.open(str(path.with_suffix(".mp4"))) as i, av.open(str(path), "w", "mpegts") as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.dts is not None:
                p.stream = s
                o.mux(p)
    return path.read_bytes()


def test_resolution_and_clock_change_midway(tmp_path, caplog):
    """A stream that switches resolution (and restarts its clock) keeps the first geometry."""
    joined = tmp_path / "joined.ts"
    joined.write_bytes(_ts_part(tmp_path / "a.ts", (96, 64), 30, 0) +
                       _ts_part(tmp_path / "b.ts", (128, 96), 30, 1))
    src = live.LiveSource(joined, reconnect=0)
    with caplog.at_level(logging.WARNING, logger="streamgan"):
        frames = list(src)
    assert (src.width, src.height) == (96, 64)
    assert len(frames) >= 55  # both parts (a frame or two may be lost at the splice)
    assert all(f.image.shape == (64, 96, 3) for f in frames)
    t = [f.time for f in frames]
    assert all(b > a for a, b in zip(t, t[1:]))
    assert "resolution changed from 96x64 to 128x96" in caplog.text


def test_batches_close_on_size_or_max_wait():
    sizes = []

    def record(batch):
        sizes.append(len(batch))
        time.sleep(0.01)
        return [f.index for f in batch]

    # behind (all frames ready): max_wait 0 still batches what is already waiting
    pipe = Pipeline(_frames(24), record, batch_size=4, max_wait=0.0, queue_size=8)
    assert [o for _, o in pipe] == list(range(24)) and max(sizes) == 4

    def trickle(n, gap):
        for f in _frames(n):
            time.sleep(gap)
            yield f

    # frames every 20 ms, max_wait 0: never waits, one frame per call
    sizes.clear()
    list(Pipeline(trickle(10, 0.02), record, batch_size=4, max_wait=0.0))
    assert max(sizes) == 1
    # frames every 20 ms, max_wait 50 ms: batches close on the wait, before they are full
    sizes.clear()
    t0 = time.perf_counter()
    list(Pipeline(trickle(12, 0.02), record, batch_size=8, max_wait=0.05))
    assert 2 <= max(sizes) < 8 and time.perf_counter() - t0 < 2


def test_stale_frames_are_skipped_when_a_newer_one_waits():
    """With drop=oldest and max_age, a slow engine translates current frames, not old ones."""
    def camera(n, gap):
        for f in _frames(n):
            time.sleep(gap)
            f.captured = time.perf_counter()
            yield f

    def slow(batch):
        time.sleep(0.05)  # slower than the 10 ms between frames
        return [(f.index, time.perf_counter() - f.captured) for f in batch]

    pipe = Pipeline(camera(40, 0.01), slow, batch_size=1, queue_size=8, drop="oldest",
                    max_age=0.02)
    out = [o for _, o in pipe]
    ages = [age for _, age in out]
    assert pipe.dropped > 0 and len(out) + pipe.dropped == 40
    assert [i for i, _ in out] == sorted(i for i, _ in out) and out[-1][0] == 39
    # queued frames would have waited up to 8 x 50 ms; skipping keeps them near one call
    assert np.percentile(ages, 90) < 0.15, ages


def test_a_free_engine_waits_for_a_frame_about_to_arrive_rather_than_take_an_old_one():
    """A model slower than its camera (130 ms a frame, a frame every 100 ms) comes free at any point
    of an interval. With fresh_wait (40 ms) it waits for a frame due that soon: no frame waits more than
    about 60 ms for the engine, where without it frames wait up to a whole interval; order is kept and
    the rate hardly falls."""
    def slow(batch):
        waited = time.perf_counter() - batch[0].captured
        time.sleep(0.13)
        return [(f.index, waited) for f in batch]

    runs = {}
    for fresh in (None, 0.04):
        pipe = Pipeline(_camera(30, 0.1), slow, batch_size=1, queue_size=4, drop="oldest",
                        max_age=0.1, fresh_wait=fresh)
        out = [o for _, o in pipe]
        assert [i for i, _ in out] == sorted(i for i, _ in out) and len(out) + pipe.dropped == 30
        runs[fresh] = ([w for _, w in out], pipe.fresh_waits)
    (plain, none), (fresh, waited) = runs[None], runs[0.04]
    assert none == 0 and waited > 0
    assert max(fresh) < 0.085, fresh  # 100 - 40 ms, with some slack for the scheduler
    assert np.percentile(plain, 90) > 0.07, plain
    assert len(fresh) >= 0.8 * len(plain)


def test_a_camera_slower_than_it_says_costs_the_fresh_wait_little():
    """A camera that says 20 fps and sends 10: the engine (130 ms a frame) waits for frames that come later
    than said, but never longer than fresh_wait, so nothing sticks, order is kept and the rate hardly falls."""
    def slow(batch):
        time.sleep(0.13)
        return [f.index for f in batch]

    got = {}
    for fresh in (None, 0.015):
        pipe = Pipeline(_camera(25, 0.1), slow, batch_size=1, queue_size=4, drop="oldest", max_age=0.05,
                        fresh_wait=fresh)
        t0 = time.perf_counter()
        out = [o for _, o in pipe]
        got[fresh] = (out, time.perf_counter() - t0)
        assert out == sorted(out) and out[-1] == 24 and len(out) + pipe.dropped == 25
    assert len(got[0.015][0]) >= 0.85 * len(got[None][0]) and got[0.015][1] < got[None][1] + 0.5


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".ts"])
def test_a_killed_recording_keeps_what_was_written_before_its_last_second(tmp_path, ext):
    """docs/LIVE.md: the recording plays at any moment, even if the process is killed. A dashcam-like
    picture compresses well, so without a flush after each packet the fragments sat in FFmpeg's write
    buffer and a process killed seconds in left an empty file."""
    import subprocess
    import sys

    rec = tmp_path / f"rec{ext}"
    code = (
        "import os, sys\n"
        "from fractions import Fraction\n"
        "import numpy as np\n"
        "from streamgan.io import EncodeOptions\n"
        "from streamgan.outputs import FileOutput\n"
        "out = FileOutput(sys.argv[1], encode=EncodeOptions())\n"
        "out.open(320, 180, Fraction(1, 25), Fraction(25))\n"
        "for i in range(60):  # 2.4 s at 25 fps: key frames (fragments) at 0, 1 and 2 s\n"
        "    img = np.zeros((180, 320, 3), np.uint8)\n"
        "    img[..., 0] = (np.arange(320) + 4 * i) % 256\n"
        "    img[..., 1] = 90\n"
        "    out.write(img, i)\n"
        "os._exit(9)  # killed: nothing closed, nothing flushed by hand\n")
    r = subprocess.run([sys.executable, "-c", code, str(rec)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 9, r.stderr
    t = np.array(playable_times(rec))
    assert len(t) >= 50 and (np.diff(t) > 0).all(), (rec.stat().st_size, len(t))


# -- a plain HTTP input whose server stalls ------------------------------------------------------
class _StalledHTTP:
    """A local HTTP server (a thread) that accepts and then never answers (``headers=False``),
    or answers 200 with the start of an MP4 and then sends nothing more (``headers=True``)."""

    def __init__(self, headers: bool, head: bytes = b""):
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://user:hunter2@127.0.0.1:{self.sock.getsockname()[1]}/clip.mp4"
        self.headers, self.head = headers, head
        self.conns: list = []
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.headers:
                c.recv(65536)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: "
                          + str(10_000_000).encode() + b"\r\n\r\n" + self.head)

    def close(self):
        self.done.set()
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture(params=["silent", "headers-then-stall"])
def stalled_http(request, tmp_path):
    head = make_clip(tmp_path / "head.mp4", frames=5, size=(64, 48)).read_bytes()[:40]
    srv = _StalledHTTP(headers=request.param != "silent", head=head)
    yield srv
    srv.close()


def test_info_on_a_stalled_http_server_fails_in_bounded_time(stalled_http):
    t0 = time.monotonic()
    r = run_cli("info", stalled_http.url, timeout=40)
    took = time.monotonic() - t0
    assert r.returncode == 3, r.stderr  # an input error
    assert "no answer within 10 s" in error_line(r.stderr), r.stderr
    assert took < 25, took
    assert "hunter2" not in r.stderr + r.stdout


def test_derain_from_a_stalled_http_server_fails_in_bounded_time(stalled_http, tmp_path):
    t0 = time.monotonic()
    r = run_cli("derain", stalled_http.url, "-o", tmp_path / "out.mp4", timeout=40)
    took = time.monotonic() - t0
    assert r.returncode == 3, r.stderr
    assert "no answer within 10 s" in error_line(r.stderr), r.stderr
    assert took < 30, took
    r = run_cli("derain", stalled_http.url, "-o", tmp_path / "out.mp4", "--stall-timeout", "2",
                timeout=40)  # the option bounds a file URL's reads too
    assert r.returncode == 3 and "no answer within 2 s" in error_line(r.stderr), r.stderr
    assert "hunter2" not in r.stderr + r.stdout
    assert not (tmp_path / "out.mp4").exists()


def test_probe_and_source_take_a_network_timeout(stalled_http):
    from streamgan.errors import InputError
    from streamgan.io import Source, probe

    for open_ in (lambda: probe(stalled_http.url, timeout=1.0),
                  lambda: Source(stalled_http.url, timeout=1.0)):
        t0 = time.monotonic()
        with pytest.raises(InputError, match=r"no answer within 1 s"):
            open_()
        assert time.monotonic() - t0 < 5


def undecodable_clip(path):
    """A clip whose header is fine (320x180, 20 frames) but whose every picture is zeroed: an
    input that opens and never yields a frame."""
    make_clip(path, frames=20, size=(320, 180))
    data = bytearray(path.read_bytes())
    at = data.index(b"mdat")
    size = int.from_bytes(data[at - 4:at], "big")
    data[at + 4:at - 4 + size] = bytes(size - 8)
    path.write_bytes(bytes(data))
    return path


def test_a_live_run_without_a_frame_leaves_no_empty_recording(identity_onnx, tmp_path):
    bad = undecodable_clip(tmp_path / "bad.mp4")
    r = run_cli("run", "--task", identity_onnx, "--backend", "openvino", bad,
                "-o", f"{tmp_path / 'a.mp4'},{tmp_path / 'b.mkv'}", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "0 frames" in r.stderr
    assert not (tmp_path / "a.mp4").exists() and not (tmp_path / "b.mkv").exists(), r.stderr
    assert f"no frame recorded; removed the empty {tmp_path / 'a.mp4'}" in r.stderr, r.stderr


def test_the_engine_takes_the_newest_frame_when_it_is_free(tr, tmp_path, monkeypatch):
    """A model slower than the camera (60 ms a frame, 25 fps): no queue stands between them;
    each frame translated is the newest one the camera had given when its engine call began
    (one frame of slack for the instant between taking it and starting), and the frames between
    are dropped and counted; the latency by stage is measured for every frame published."""
    clip = make_clip(tmp_path / "cam.mp4", frames=75, size=(64, 48))  # 3 s at 25 fps
    make = tr.processor

    def slow_processor(*a, **k):
        process = make(*a, **k)

        def slow(batch):
            time.sleep(0.06)
            return process(batch)
        return slow

    monkeypatch.setattr(tr, "processor", slow_processor)
    seen = []

    class Outs:  # the outputs of a live run, recording what reached them
        outputs = []

        def open(self, *a):
            pass

        def write(self, image, pts):
            pass

        def close(self):
            pass

        def report(self):
            return []

    def tap(frames):
        for frame, out in frames:
            seen.append(frame)
            yield frame, out

    translate = live.translate_frames
    monkeypatch.setattr(live, "translate_frames", lambda *a, **k: tap(translate(*a, **k)))
    res = live.run(tr, clip, Outs(), live.LiveOptions(realtime=True, drop="oldest"))
    assert res.frames == len(seen) and res.frames + res.dropped == 75
    assert res.dropped > 20  # about one frame in three is translated
    first = seen[0]
    t0 = first.captured - first.index / 25  # when frame 0 fell due
    for f in seen[1:]:
        newest = int((f.started - t0) * 25 + 1e-6)  # the newest frame due when its call began
        assert f.index >= min(newest, 74) - 1, (f.index, newest)
    assert [f.index for f in seen] == sorted(f.index for f in seen)
    assert res.stages.model.count == res.stages.wait.count == res.frames
    assert res.stages.model.p50 >= 0.06 and "p95 by stage" in "\n".join(res.lines())
    assert "spread evenly" in res.lines()[0]


def test_serve_batches_cameras_only_where_the_next_frame_costs_at_most_a_frame_interval(
        identity_onnx):
    """Several cameras share an engine call only where each frame more adds at most a frame
    interval to the call (times measured per size): on a GPU they do, on a CPU they take turns."""
    from streamgan.serve import Server, ServeConfig

    cfg = ServeConfig.model_validate({
        "model": str(identity_onnx), "backend": "openvino", "metrics": None, "batch": 4,
        "streams": [{"name": f"c{i}", "input": "rtsp://127.0.0.1:9/x", "outputs": ["x.mp4"]}
                    for i in range(4)]})
    server = Server(cfg)
    size, interval = (640, 360), 1 / 30
    assert server.affordable(size, interval) == 1  # nothing measured yet: one frame a call
    server._cost.update({(size, 1): 0.030, (size, 4): 0.045})  # a GPU: 5 ms a frame more
    assert server.affordable(size, interval) == 4
    server._cost.update({(size, 1): 0.040, (size, 4): 0.160})  # a CPU: 40 ms a frame more
    assert server.affordable(size, interval) == 1
    server._cost.update({(size, 1): 0.030, (size, 4): 0.120})  # 30 ms more: within 33 ms
    assert server.affordable(size, interval) == 4
    assert server.affordable(size, 1 / 60) == 1  # but not within a 60 fps camera's 17 ms
    assert server.affordable((1280, 720), interval) == 1  # another size: its own times


def test_a_segment_stopped_before_its_first_frame_leaves_no_file(tmp_path):
    """Stopped (SIGHUP, Ctrl-C) between opening a segment and writing its first frame: no empty,
    unplayable segment is published, and no temp file is left."""
    from fractions import Fraction

    from streamgan import outputs
    from streamgan.io import EncodeOptions

    seg = outputs.SegmentOutput(tmp_path / "seg.mp4", 1.0, encode=EncodeOptions())
    seg.open(64, 48, Fraction(1, 25), Fraction(25))
    image = np.zeros((48, 64, 3), np.uint8)
    for i in range(30):  # 1.2 s: the first segment done, the second opened
        seg.write(image, i)
    seg._finish()
    seg._start(30)  # the next segment opened; the stop comes before its first frame
    seg.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["seg_00000.mp4", "seg_00001.mp4"], files
    assert all(len(read_video(tmp_path / f)["frames"]) > 0 for f in files)


def _vfr_clip(path, n=60, seed=0):
    """A camera with a variable frame rate: gaps of 15, 30 or 50 ms at random (FFmpeg guesses its
    rate as 200 fps; on average it is about 30)."""
    from fractions import Fraction

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10, options={"bf": "0"})
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.full((64, 96, 3), (i * 4) % 256, np.uint8), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            out.mux(s.encode(f))
            t += int(rng.choice([15, 30, 50]))
        out.mux(s.encode(None))
    return path


@pytest.mark.parametrize("auto", [False, True])
def test_a_camera_with_a_variable_frame_rate_is_published_in_order(tr, tmp_path, auto):
    """Frames at irregular intervals (and a declared rate that is not the real one): every frame the
    model keeps up with is published, in order, with its latency measured, and the recording's
    timestamps keep increasing; with --size auto too (the input's own rate is measured)."""
    clip = _vfr_clip(tmp_path / "vfr.mp4")
    out = tmp_path / "out.mp4"
    from streamgan.outputs import make_outputs

    outs = make_outputs([str(out)], src=clip)
    res = live.run(tr, clip, outs, live.LiveOptions(realtime=True, auto_size=auto))
    assert res.frames + res.dropped == 60 and res.frames >= 55
    assert res.latency.count == res.frames
    info = read_video(out)
    assert len(info["frames"]) == res.frames
    assert all(b > a for a, b in zip(info["times"], info["times"][1:]))
