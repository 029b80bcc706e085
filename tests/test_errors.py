"""Bad input never hangs, never clobbers, and ends with one clear line and a documented code."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import pytest

from conftest import error_line, make_clip, read_video, run_cli
from streamgan import errors
from streamgan.pipeline import Pipeline


def _one_line(stderr: str) -> str:
    lines = [l for l in stderr.strip().splitlines() if l.startswith("streamgan: error")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_missing_file(identity_onnx, tmp_path):
    r = run_cli("run", "--task", identity_onnx, tmp_path / "nope.mp4", "-o", tmp_path / "o.mp4")
    assert r.returncode == errors.EXIT_INPUT
    assert "no such file" in _one_line(r.stderr)


def test_not_a_video(identity_onnx, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 100)
    r = run_cli("run", "--task", identity_onnx, bad, "-o", tmp_path / "o.mp4")
    assert r.returncode == errors.EXIT_INPUT
    assert "not a video" in _one_line(r.stderr)


def test_zero_frame_video(identity_onnx, tmp_path):
    import av

    empty = tmp_path / "empty.mkv"
    with av.open(str(empty), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height = 64, 64
        c.start_encoding()  # header with a video stream, then no frame
    assert empty.stat().st_size > 0
    r = run_cli("run", "--task", identity_onnx, empty, "-o", tmp_path / "o.mp4")
    assert r.returncode == errors.EXIT_INPUT
    assert "no frames" in _one_line(r.stderr) or "no frame" in r.stderr
    assert not (tmp_path / "o.mp4").exists()
    assert not list(tmp_path.glob("*.streamgan-tmp*"))


def test_truncated_file_keeps_what_decodes(identity_onnx, udacity_clip, tmp_path):
    data = udacity_clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    assert data.find(b"moov") < data.find(b"mdat")  # index first: a cut keeps it
    cut.write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "o.mp4"
    r = run_cli("run", "--task", identity_onnx, cut, "-o", out)
    assert r.returncode == 0, r.stderr
    n = len(read_video(out)["frames"])
    assert 0 < n < 221
    assert f"{221 - n} of 221 frames missing" in r.stderr


def test_corrupt_packets_counted_and_output_finished(identity_onnx, tmp_path):
    src = make_clip(tmp_path / "src.ts", frames=50, size=(128, 96), codec="mpeg2video",
                    time_base=Fraction(1, 25))
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(1)
    for pos in rng.integers(len(data) // 4, len(data) * 3 // 4, 40):
        data[pos: pos + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.ts"
    bad.write_bytes(bytes(data))
    out = tmp_path / "o.mp4"
    r = run_cli("run", "--task", identity_onnx, bad, "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.exists() and 20 <= len(read_video(out)["frames"]) <= 50
    assert re.search(r"\d+ (damaged packets skipped|frames decoded with errors)", r.stderr)


def test_existing_output_needs_y_and_is_never_half_overwritten(identity_onnx, tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=6)
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"precious")
    r = run_cli("run", "--task", identity_onnx, src, "-o", out)
    assert r.returncode == errors.EXIT_OUTPUT
    assert "-y" in _one_line(r.stderr)
    assert out.read_bytes() == b"precious"
    r = run_cli("run", "--task", identity_onnx, src, "-o", out, "-y")
    assert r.returncode == 0 and len(read_video(out)["frames"]) == 6


def test_default_output_name_beside_input(identity_onnx, tmp_path):
    src = make_clip(tmp_path / "drive.mp4", frames=4)
    r = run_cli("run", "--task", identity_onnx, src, "-q")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "drive.identity.mp4").exists()
    r = run_cli("run", "--task", identity_onnx, src, "-q")
    assert r.returncode == errors.EXIT_OUTPUT  # second run refuses to overwrite


def test_one_image_in_gives_one_image_out_beside_it(identity_onnx, tmp_path):
    from PIL import Image

    src = tmp_path / "dash.jpg"
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(src)
    r = run_cli("run", "--task", identity_onnx, src, "-q")
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "dash.identity.jpg") as out:
        assert out.size == (64, 48)


def test_input_mistakes_fail_before_the_model_is_loaded(identity_onnx, tmp_path):
    """A file FFmpeg cannot read, --start past the end, a folder of videos without --out-dir: the
    error comes first, with no "<task> on <backend>" line (the model was never loaded)."""
    clips = tmp_path / "clips"
    clips.mkdir()
    src = make_clip(clips / "a.mp4", frames=5)
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video")
    cases = [
        ([fake], errors.EXIT_INPUT, "not a video or image file FFmpeg can read"),
        ([src, "--start", "10"], errors.EXIT_USAGE, "--start 10 s is past the end"),
        ([clips], errors.EXIT_USAGE, "folder holds videos, not images; translate each of them "
                                     "into a folder with --out-dir DIR"),
    ]
    for args, code, text in cases:
        r = run_cli("run", "--task", identity_onnx, *args, "-o", tmp_path / "o.mp4")
        assert r.returncode == code and text in error_line(r.stderr), (args, r.stderr)
        assert " on " not in r.stderr.split("streamgan: error")[0], r.stderr  # no model line first
        assert not (tmp_path / "o.mp4").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_output_folder(identity_onnx, tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=4)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    r = run_cli("run", "--task", identity_onnx, src, "-o", ro / "o.mp4")
    assert r.returncode == errors.EXIT_OUTPUT and "not writable" in _one_line(r.stderr)


def test_missing_output_folder(identity_onnx, tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=4)
    r = run_cli("run", "--task", identity_onnx, src, "-o", tmp_path / "no" / "such" / "o.mp4")
    assert r.returncode == errors.EXIT_OUTPUT and "does not exist" in _one_line(r.stderr)


def test_full_disk(identity_onnx, udacity_clip, tmp_path):
    """A write that fails midway (file-size limit standing in for a full disk)."""
    out = tmp_path / "o.mp4"
    out.write_bytes(b"old")
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000));"
        "from streamgan.cli import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "run", "--task", str(identity_onnx),
                        str(udacity_clip), "-o", str(out), "-y", "-q"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == errors.EXIT_OUTPUT, r.stderr
    assert "write failed" in _one_line(r.stderr) or "disk full" in r.stderr
    assert out.read_bytes() == b"old"
    assert not list(tmp_path.glob("*.streamgan-tmp*"))


def test_unknown_backend_and_precision(identity_onnx, tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=2)
    r = run_cli("run", "--task", identity_onnx, src, "--backend", "cuda-magic")
    assert r.returncode == errors.EXIT_USAGE and "unknown backend" in _one_line(r.stderr)
    r = run_cli("run", "--task", identity_onnx, src, "--precision", "int3")
    assert r.returncode == errors.EXIT_USAGE and "unknown precision" in _one_line(r.stderr)


def test_unknown_task(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=2)
    r = run_cli("run", "--task", "defog", src)
    assert r.returncode == errors.EXIT_MODEL and "unknown task 'defog'" in _one_line(r.stderr)


def test_bad_option_is_usage_error():
    r = run_cli("derain", "x.mp4", "--frames", "-3")
    assert r.returncode == errors.EXIT_USAGE


def test_debug_shows_traceback(tmp_path):
    r = run_cli("info", tmp_path / "nope.mp4", "--debug")
    assert r.returncode == errors.EXIT_INPUT and "Traceback" in r.stderr


def test_ctrl_c_leaves_a_playable_file(tiny_generator, udacity_clip, tmp_path):
    _, onnx = tiny_generator
    out = tmp_path / "o.mp4"
    p = subprocess.Popen([sys.executable, "-m", "streamgan", "run", "--task", str(onnx),
                          str(udacity_clip), "-o", str(out), "--precision", "fp32"],
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    # wait until frames are being written, then interrupt
    while time.monotonic() < deadline and not list(tmp_path.glob("*.streamgan-tmp*")):
        time.sleep(0.05)
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == errors.EXIT_INTERRUPTED, err
    n = len(read_video(out)["frames"])
    assert 0 < n < 221
    assert not list(tmp_path.glob("*.streamgan-tmp*"))


class _Boom(Exception):
    pass


def _frames(n, fail_at=None):
    from streamgan.io import Frame
    from fractions import Fraction

    for i in range(n):
        if i == fail_at:
            raise _Boom("decoder broke")
        yield Frame(np.zeros((8, 8, 3), np.uint8), i, Fraction(1, 25), i)


@pytest.mark.parametrize("where", ["source", "engine"])
def test_stage_failure_stops_everything(where):
    def process(batch):
        if where == "engine" and any(f.index == 5 for f in batch):
            raise _Boom("engine broke")
        return [f.image for f in batch]

    pipe = Pipeline(_frames(1000, fail_at=5 if where == "source" else None), process,
                    batch_size=2, queue_size=4)
    t0 = time.monotonic()
    got = []
    with pytest.raises(_Boom):
        for frame, _ in pipe:
            got.append(frame.index)
    assert time.monotonic() - t0 < 10
    assert got == list(range(len(got))) and len(got) <= 6
    assert not any(t.is_alive() for t in pipe._threads)


def test_consumer_stopping_early_stops_the_stages():
    pipe = Pipeline(_frames(10_000), lambda b: [f.image for f in b], queue_size=4)
    for frame, _ in pipe:
        if frame.index == 3:
            break
    pipe.close()
    assert not any(t.is_alive() for t in pipe._threads)


def test_batches_keep_order_and_memory_bounded():
    sizes = []

    def process(batch):
        sizes.append(len(batch))
        return [f.image + 1 for f in batch]

    pipe = Pipeline(_frames(103), process, batch_size=4, queue_size=8)
    out = [(f.index, o[0, 0, 0]) for f, o in pipe]
    assert [i for i, _ in out] == list(range(103))
    assert all(v == 1 for _, v in out)
    assert max(sizes) == 4 and sum(sizes) == 103


def test_frames_above_the_pixel_limit_are_refused_before_decoding(identity_onnx, tmp_path):
    """A small file declaring a huge frame (a PNG of 9000x5000 compresses to kilobytes) is refused
    from its header, before FFmpeg decodes it whole; --max-pixels raises the limit."""
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("RGB", (9000, 5000)).save(big)
    assert big.stat().st_size < 1_000_000
    r = run_cli("run", "--task", identity_onnx, big, "-o", tmp_path / "o.png")
    assert r.returncode == errors.EXIT_INPUT
    line = _one_line(r.stderr)
    assert "9000x5000 (45.0 million pixels) are above the limit of 40 million" in line
    assert "--max-pixels" in line
    r = run_cli("run", "--task", identity_onnx, big, "-o", tmp_path / "o.png", "--max-pixels",
                "50000000", "--backend", "openvino")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "o.png").size == (9000, 5000)
    # a video's frame size comes from its header
    y4m = tmp_path / "big.y4m"
    y4m.write_bytes(b"YUV4MPEG2 W8000 H6000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
    r = run_cli("run", "--task", identity_onnx, y4m, "-o", tmp_path / "o.mp4")
    assert r.returncode == errors.EXIT_INPUT and "8000x6000" in _one_line(r.stderr)
    # a header FFmpeg refuses outright is said to be one (it read "Device or resource busy")
    y4m.write_bytes(b"YUV4MPEG2 W100000 H100000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
    r = run_cli("info", y4m)
    assert r.returncode == errors.EXIT_INPUT and "header" in _one_line(r.stderr)
    assert not list(tmp_path.glob("o.*")) or (tmp_path / "o.png").exists()


def test_a_pipe_with_a_one_shot_writer_is_read_once(identity_onnx, tmp_path):
    """A FIFO gives its data once: it is opened once (it hung, opened again after the check)."""
    clip = make_clip(tmp_path / "in.mkv", frames=10, size=(64, 48))
    fifo = tmp_path / "pipe.mkv"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat '{clip}' > '{fifo}'"])
    try:
        r = run_cli("run", "--task", identity_onnx, fifo, "-o", tmp_path / "o.mp4",
                    "--backend", "openvino", timeout=60)
    finally:
        writer.kill()
    assert r.returncode == 0, r.stderr
    assert len(read_video(tmp_path / "o.mp4")["frames"]) == 10


@pytest.mark.parametrize("args,text", [
    (["--codec", "png"], "the png encoder does not take yuv420p video"),
    (["--codec", "mjpeg"], "the mjpeg encoder cannot encode yuv420p video"),
    (["--start", "nan"], "not a time: nan"),
    (["--duration", "inf"], "not a time: inf"),
    (["--segment", "0"], "--segment: must be more than 0 s"),
    (["--segment", "nan"], "not a time: nan"),
])
def test_values_that_cannot_work_are_usage_errors(identity_onnx, tmp_path, args, text):
    clip = make_clip(tmp_path / "in.mp4", frames=4, size=(64, 48))
    r = run_cli("run", "--task", identity_onnx, clip, "-o", tmp_path / "o.mp4", *args)
    assert r.returncode == errors.EXIT_USAGE, r.stderr
    assert text in r.stderr and "internal error" not in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("args,text", [
    (["--resolution", "100000x100000"], "above the limit of 40 million pixels"),
    (["--plot", "x.json"], "--plot x.json: the picture is a .png"),
])
def test_bench_refuses_what_cannot_work_before_measuring(tmp_path, args, text):
    r = run_cli("bench", "--frames", "10", *args, cwd=tmp_path)
    assert r.returncode == errors.EXIT_USAGE and text in _one_line(r.stderr), r.stderr


def test_what_the_output_does_not_carry_is_said(identity_onnx, tmp_path):
    """A second audio track and a change of frame size mid-file are said, not silently lost."""
    import av

    src = tmp_path / "two.mkv"
    with av.open(str(src), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        tracks = [c.add_stream("aac", rate=48000) for _ in range(2)]
        for i in range(10):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            f.pts = i
            for p in v.encode(f):
                c.mux(p)
        for a in tracks:
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 48000, 0
            for p in a.encode(frame):
                c.mux(p)
            for p in a.encode(None):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
    r = run_cli("run", "--task", identity_onnx, src, "-o", tmp_path / "o.mp4", "--backend",
                "openvino")
    assert r.returncode == 0, r.stderr
    assert "2 audio tracks, only the first is kept" in r.stderr

    def part(path, w, h, start):
        with av.open(str(path), "w", format="mpegts") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for i in range(8):
                f = av.VideoFrame.from_ndarray(np.full((h, w, 3), 30 * i, np.uint8),
                                               format="rgb24")
                f.pts = start + i
                for p in s.encode(f):
                    c.mux(p)
            for p in s.encode(None):
                c.mux(p)
        return path.read_bytes()

    sizes = tmp_path / "sizes.ts"
    sizes.write_bytes(part(tmp_path / "a.ts", 96, 64, 0) + part(tmp_path / "b.ts", 128, 96, 8))
    r = run_cli("run", "--task", identity_onnx, sizes, "-o", tmp_path / "s.mp4", "--backend",
                "openvino")
    assert r.returncode == 0, r.stderr
    assert "frame size changes to 128x96 at frame 8; the output stays 96x64" in r.stderr
    d = read_video(tmp_path / "s.mp4")
    assert len(d["frames"]) == 16 and (d["width"], d["height"]) == (96, 64)
