"""Issue 11, "no data lost, no secret printed": one regression test per item.

Each test checks what a user relies on: the exit code, the message, and the state of every file
involved (byte for byte where a file must stay untouched).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from conftest import error_line, make_clip, read_video, run_cli, wait_for
from streamgan import Translator, errors, io
from streamgan.errors import Interrupted, OutputError, UsageError
from streamgan.pipeline import Progress


def _temps(folder: Path) -> set[str]:
    return {p.name for p in folder.glob(".*.streamgan-tmp*")}


class _AtFrame(Progress):
    """A progress display that does ``action`` once ``at`` frames were written."""

    def __init__(self, at: int, action):
        super().__init__(None, enabled=False)
        self.at, self.action = at, action

    def update(self, n: int = 1) -> None:
        super().update(n)
        if self.n == self.at:
            self.action()


@pytest.fixture(scope="module")
def identity(identity_onnx):
    return Translator(identity_onnx, backend="openvino", precision="fp32")


# 1 ------------------------------------------------------------------------------------------
def test_no_clobber_holds_at_the_final_rename(identity, identity_onnx, udacity_clip, tmp_path):
    """A file created at the output path during the run is kept; the result goes beside it and
    the error says where. Two runs to one new path: one wins, the other says where its result is."""
    src = make_clip(tmp_path / "src.mp4", frames=12)
    out = tmp_path / "out.mp4"

    def intruder():
        out.write_bytes(b"written by someone else meanwhile")

    with pytest.raises(OutputError) as e:
        identity.translate_video(src, out, progress=_AtFrame(3, intruder))
    assert e.value.exit_code == errors.EXIT_OUTPUT
    assert out.read_bytes() == b"written by someone else meanwhile"
    alt = e.value.path
    assert alt == tmp_path / "out.new.mp4" and str(alt) in str(e.value)
    assert len(read_video(alt)["frames"]) == 12
    assert not _temps(tmp_path)

    # two CLI runs racing to the same new file
    race = tmp_path / "race.mp4"
    cmd = [sys.executable, "-m", "streamgan", "run", "--task", str(identity_onnx),
           "--backend", "openvino", str(udacity_clip), "-o", str(race), "--frames", "60", "-q"]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, errors.EXIT_OUTPUT], results
    loser = next(err for code, err in results if code)
    line = error_line(loser)
    if "exists" not in line:  # both passed the start check: the loser's result was kept
        kept = tmp_path / "race.new.mp4"
        assert str(kept) in line and len(read_video(kept)["frames"]) == 60
    assert len(read_video(race)["frames"]) == 60
    assert not _temps(tmp_path)


# 2 ------------------------------------------------------------------------------------------
def test_sigterm_and_sighup_stop_like_ctrl_c(tiny_generator, identity_onnx, udacity_clip,
                                             tmp_path):
    """Files: SIGTERM leaves a playable partial output, no temp file, exit 143; stale temp files
    of killed runs are removed (live writers' are not). Live runs (SIGHUP) and serve (SIGTERM)
    close their recordings and segments."""
    _, onnx = tiny_generator
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid nobody has any more
    stale = tmp_path / f".o.{dead.pid}.abc123_x.streamgan-tmp.mp4"
    stale.write_bytes(b"left by a killed run")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    busy = tmp_path / f".o.{os.getpid()}.zz9_y.streamgan-tmp.mp4"
    busy.write_bytes(b"a run still writing")
    out = tmp_path / "o.mp4"
    p = subprocess.Popen([sys.executable, "-m", "streamgan", "run", "--task", str(onnx),
                          str(udacity_clip), "-o", str(out), "--precision", "fp32"],
                         stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: len(_temps(tmp_path)) == 2 and not stale.exists(), 120)
    time.sleep(1.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "stopped by SIGTERM" in error_line(err) and str(out) in err
    assert f"removed {stale}" in err
    assert 0 < len(read_video(out)["frames"]) < 221
    assert _temps(tmp_path) == {busy.name} and busy.read_bytes() == b"a run still writing"

    # a live run (a file played in real time) stopped by SIGHUP: every segment closed
    clip = make_clip(tmp_path / "cam.mp4", frames=250, size=(64, 48))
    live = tmp_path / "live"
    live.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "streamgan", "run", "--task", str(identity_onnx),
                          "--backend", "openvino", str(clip), "-o", str(live / "seg.mp4"),
                          "--segment", "1", "--realtime"], stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: (live / "seg_00001.mp4").exists(), 60)
    p.send_signal(signal.SIGHUP)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "latency capture->publish" in err
    segs = sorted(live.glob("seg_*.mp4"))
    assert len(segs) >= 2 and all(len(read_video(s)["frames"]) > 0 for s in segs)
    assert not _temps(live)

    # serve stopped by SIGTERM: the recording and the segments are finalised
    srv = tmp_path / "serve"
    srv.mkdir()
    cfg = srv / "serve.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": str(identity_onnx), "backend": "openvino", "metrics": None,
        "streams": [{"name": "a", "input": str(clip), "outputs": [str(srv / "rec.mp4")]},
                    {"name": "b", "input": str(clip), "outputs": [str(srv / "seg.mp4")],
                     "segment": 1}]}))
    p = subprocess.Popen([sys.executable, "-m", "streamgan", "serve", str(cfg)],
                         stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: (srv / "seg_00001.mp4").exists(), 60)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert len(read_video(srv / "rec.mp4")["frames"]) >= 25
    segs = sorted(srv.glob("seg_*.mp4"))
    assert len(segs) >= 2 and all(len(read_video(s)["frames"]) > 0 for s in segs)
    assert not _temps(srv)


# 3 ------------------------------------------------------------------------------------------
def test_input_is_never_destroyed(identity, identity_onnx, tmp_path):
    """-o naming the input (same path, symlink, hard link) is refused even with -y; with -y an
    interrupted run keeps an existing complete output unless keep_partial is asked for."""
    src = make_clip(tmp_path / "src.mp4", frames=12)
    original = src.read_bytes()
    (tmp_path / "link.mp4").symlink_to(src)
    os.link(src, tmp_path / "hard.mp4")
    for target in (src, tmp_path / "link.mp4", tmp_path / "hard.mp4",
                   tmp_path / "sub" / ".." / "src.mp4"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        r = run_cli("run", "--task", identity_onnx, src, "-o", target, "-y")
        assert r.returncode == errors.EXIT_OUTPUT, r.stderr
        assert "is the input file" in error_line(r.stderr)
        assert src.read_bytes() == original
    assert not _temps(tmp_path)

    out = tmp_path / "out.mp4"
    identity.translate_video(src, out)
    complete = out.read_bytes()

    def ctrl_c():
        raise KeyboardInterrupt

    with pytest.raises(Interrupted) as e:
        identity.translate_video(src, out, overwrite=True, progress=_AtFrame(5, ctrl_c))
    partial = tmp_path / "out.partial.mp4"
    assert e.value.exit_code == errors.EXIT_INTERRUPTED
    assert str(partial) in str(e.value) and "keep_partial=True" in str(e.value)
    assert out.read_bytes() == complete
    assert len(read_video(partial)["frames"]) == 5

    with pytest.raises(Interrupted):
        identity.translate_video(src, out, overwrite=True, keep_partial=True,
                                 progress=_AtFrame(4, ctrl_c))
    assert len(read_video(out)["frames"]) == 4
    assert len(read_video(partial)["frames"]) == 5  # the earlier partial is untouched
    assert not _temps(tmp_path)


# 4 ------------------------------------------------------------------------------------------
SECRETS = {"token": "S1tok", "PASSWORD": "S2pw", "passphrase": "S3pp", "Key": "S4key",
           "sig": "S5sig", "auth": "S6auth", "access_token": "S7at", "api_key": "S8ak",
           "X-Amz-Signature": "S9amz", "client_secret": "S10cs"}


def test_every_secret_in_a_url_is_redacted(identity_onnx, tmp_path, caplog):
    query = "&".join(f"{k}={v}" for k, v in SECRETS.items())
    url = f"http://user:S0userpw@127.0.0.1:9/clip.mp4?channel=2&{query}"
    clean = io.redact(f"error opening '{url}' (see {url})")
    assert not any(v in clean for v in [*SECRETS.values(), "S0userpw"]), clean
    assert "channel=2" in clean and "token=***" in clean and "Key=***" in clean
    # the ": " after a URL in a message stays (the value ends before it), and a value with a colon goes whole
    said = io.redact("rtsp://127.0.0.1:9/x.m3u8?token=S1a:b2: cannot open (Connection refused)")
    assert said == "rtsp://127.0.0.1:9/x.m3u8?token=***: cannot open (Connection refused)", said

    # by the URL's structure, not only by names
    for url, secret, kept in [
        ("rtsp://admin:Pa@ss@cam.local/stream1", "ss@cam", "rtsp://***@cam.local/stream1"),
        ("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl", "abcd", "rtmp://a.rtmp.youtube.com/live2/***"),
        ("srt://cam:9000?streamid=#!::r=live,m=publish,s=S12sid&latency=200", "S12sid",
         "srt://cam:9000?streamid=***&latency=200"),
        ("https://cdn/x.m3u8?hdnts=exp=1~acl=/*~hmac=S13h&ch=2", "S13h", "https://cdn/x.m3u8?hdnts=***&ch=2"),
        ("https://cdn/x.mp4?hmac=S14h", "S14h", "https://cdn/x.mp4?hmac=***"),
        ("https://player/x.mp4#access=S15f", "S15f", "https://player/x.mp4#***"),
        ("http://cam/video.cgi?loginuse=admin&loginpas=S16lp", "S16lp",
         "http://cam/video.cgi?loginuse=admin&loginpas=***")]:
        said = io.redact(f"{url}: cannot open")
        assert secret not in said and said == f"{kept}: cannot open", said
    r = run_cli("info", "rtmp://127.0.0.1:9/live2/S17key", timeout=60)
    assert r.returncode == errors.EXIT_INPUT and "S17key" not in r.stderr, r.stderr
    r = run_cli("info", "rtsp://admin:S18a@S18b@127.0.0.1:9/x", timeout=60)
    assert r.returncode == errors.EXIT_INPUT and "S18" not in r.stderr, r.stderr

    # info with --debug: the error line and the traceback
    r = run_cli("info", url, "--debug", timeout=60)
    assert r.returncode == errors.EXIT_INPUT and "Traceback" in r.stderr
    assert not any(v in r.stderr for v in SECRETS.values()) and "S0userpw" not in r.stderr

    # a live run: the banner and the error
    cam = f"rtsp://127.0.0.1:9/cam?{query}"
    pub = "rtsp://127.0.0.1:9/out?token=S11pub"
    r = run_cli("run", "--task", identity_onnx, "--backend", "openvino", cam, "-o",
                f"{pub},{tmp_path / 'rec.mp4'}", timeout=120)
    assert r.returncode in (errors.EXIT_INPUT, errors.EXIT_OUTPUT), r.stderr
    assert "streamgan: id" in r.stderr  # the banner with input and outputs was printed
    assert not any(v in r.stderr for v in [*SECRETS.values(), "S11pub"]), r.stderr

    # logs, and the metrics labels of serve (output names)
    with caplog.at_level(logging.WARNING, logger="streamgan"):
        logging.getLogger("streamgan").warning("%s: stalled", cam)
    assert "S1tok" not in caplog.text and "token=***" in caplog.text
    from streamgan import serve
    from streamgan.outputs import make_outputs

    cfg = serve.ServeConfig.model_validate({
        "model": str(identity_onnx), "backend": "openvino", "metrics": None,
        "streams": [{"name": "a", "input": cam, "outputs": [pub]}]})
    server = serve.Server(cfg)
    for s in server.streams:
        s.outputs = make_outputs(s.cfg.outputs)
    text = server.metrics_text() + "\n".join(server.summary()) + repr(cfg)
    assert 'output="rtsp://127.0.0.1:9/out?token=***"' in text
    assert not any(v in text for v in [*SECRETS.values(), "S11pub"])


# 5 ------------------------------------------------------------------------------------------
def test_output_files_get_the_umask_permissions(identity_onnx, tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=4)
    out = tmp_path / "o.mp4"
    r = subprocess.run([sys.executable, "-m", "streamgan", "run", "--task", str(identity_onnx),
                        str(src), "-o", str(out), "-q"], capture_output=True, text=True,
                       timeout=120, preexec_fn=lambda: os.umask(0o027))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_mode & 0o777 == 0o640
    out.chmod(0o600)  # replaced with -y: the new file gets the umask's mode too
    r = subprocess.run([sys.executable, "-m", "streamgan", "run", "--task", str(identity_onnx),
                        str(src), "-o", str(out), "-q", "-y"], capture_output=True, text=True,
                       timeout=120, preexec_fn=lambda: os.umask(0o022))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_mode & 0o777 == 0o644
    assert len(read_video(out)["frames"]) == 4


# 6 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", sorted(io.VIDEO_FORMATS))
def test_every_documented_container_works_with_defaults(identity_onnx, tmp_path, ext):
    src = make_clip(tmp_path / "src.mkv", frames=10, audio="aac")
    out = tmp_path / f"out{ext}"
    r = run_cli("run", "--task", identity_onnx, src, "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    d = read_video(out)
    assert len(d["frames"]) == 10 and len(d["audio"]) == 1
    # in order, at the source's pace (AVI counts frames at one rate: B-frames there played out of order)
    gaps = np.diff(d["times"])
    assert np.allclose(gaps, 0.04, atol=2e-3), d["times"]
    if ext == ".webm":
        assert d["codec"] in ("vp9", "av1", "libdav1d")
    # the message lists exactly the types that work (videos here, images in the image test)
    r = run_cli("run", "--task", identity_onnx, src, "-o", tmp_path / "out.flv")
    assert r.returncode == errors.EXIT_OUTPUT
    listed = error_line(r.stderr).split("(")[-1].rstrip(")").split(", ")
    assert sorted(listed) == sorted(e[1:] for e in (*io.VIDEO_FORMATS, *io.IMAGE_FORMATS))


# 7 ------------------------------------------------------------------------------------------
def _onnx(path: Path, nodes, in_shape, out_shape, inits=()) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(nodes, "bad", [x], [y], initializer=list(inits))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_user_errors_get_user_exit_codes(identity, identity_onnx, tmp_path):
    from onnx import helper

    src = make_clip(tmp_path / "src.mp4", frames=6)
    out = tmp_path / "o.mp4"
    cases = [
        (["--codec", "h264x"], 2, "unknown codec 'h264x'"),
        (["--preset", "fastest"], 2, "unknown --preset 'fastest'"),
        (["--crf", "99"], 2, "outside libx264's range 0-51"),
        (["--codec", "vp9", "--crf", "64"], 2, "outside libvpx-vp9's range 0-63"),
        (["--start", "30"], 2, "--start 30 s is past the end"),
        (["--duration", "0"], 2, "--duration must be more than 0 s"),
        (["-o", "/proc/o.mp4"], 4, "/proc: cannot create a file here"),
        (["-o", "/sys/o.mp4"], 4, "/sys: cannot create a file here"),
    ]
    for args, code, text in cases:
        r = run_cli("run", "--task", identity_onnx, src, "-o", out, *args)
        assert r.returncode == code and text in error_line(r.stderr), (args, r.stderr)
        assert not out.exists()
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir(mode=0o500)
        r = run_cli("run", "--task", identity_onnx, src, "-o", tmp_path / "ro" / "o.mp4")
        assert r.returncode == 4

    not_a_model = tmp_path / "notes.onnx"
    not_a_model.write_text("not a model\n" * 40)
    grey = _onnx(tmp_path / "grey.onnx",
                 [helper.make_node("ReduceMean", ["input"], ["output"], axes=[1], keepdims=1)],
                 ["n", 3, "h", "w"], ["n", 1, "h", "w"])
    half = _onnx(tmp_path / "half.onnx",
                 [helper.make_node("MaxPool", ["input"], ["output"], kernel_shape=[2, 2],
                                   strides=[2, 2])],
                 ["n", 3, "h", "w"], ["n", 3, "h2", "w2"])
    mono = _onnx(tmp_path / "mono.onnx", [helper.make_node("Identity", ["input"], ["output"])],
                 ["n", 1, "h", "w"], ["n", 1, "h", "w"])
    for model, text in ((not_a_model, "not a valid ONNX model"),
                        (grey, "into 1x1x64x64"), (half, "into 1x3x32x32"),
                        (mono, "input has 1 channels")):
        r = run_cli("run", "--task", model, src, "-o", out)
        assert r.returncode == errors.EXIT_MODEL, r.stderr
        assert text in error_line(r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # no third-party noise
        assert not out.exists()

    for bad in (np.zeros((0, 64, 64, 3), np.uint8), np.zeros((8, 8, 3), np.uint8),
                np.zeros((2, 15, 64, 3), np.uint8)):
        with pytest.raises(UsageError, match=r"empty|at least 16x16"):
            identity.translate(bad)
    assert identity.translate(np.full((16, 16, 3), 7, np.uint8)).shape == (16, 16, 3)


# 8 ------------------------------------------------------------------------------------------
def test_odd_sizes_are_padded_to_420_unless_exact_size(identity_onnx, tmp_path):
    src = make_clip(tmp_path / "odd.mkv", frames=5, size=(97, 65), codec="ffv1",
                    pix_fmt="yuv444p")
    out = tmp_path / "o.mp4"
    r = run_cli("run", "--task", identity_onnx, src, "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    notice = [l for l in r.stderr.splitlines() if "odd frame size" in l]
    assert len(notice) == 1 and "97x65 padded to 98x66" in notice[0] and "--exact-size" in notice[0]
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    d, s = read_video(out), read_video(src)
    assert (d["width"], d["height"]) == (98, 66) and len(d["frames"]) == 5
    f = d["frames"][2].astype(int)
    here = np.abs(f[:65, :97] - s["frames"][2]).mean()  # the picture, where it was (4:2:0
    shifted = np.abs(f[1:66, 1:98] - s["frames"][2]).mean()  # blurs this pattern's colours)
    assert here < 8 and here < shifted
    assert np.abs(f[:, 97] - f[:, 96]).mean() < 4 and np.abs(f[65] - f[64]).mean() < 4

    exact = tmp_path / "exact.mp4"
    r = run_cli("run", "--task", identity_onnx, src, "-o", exact, "-q", "--exact-size")
    assert r.returncode == 0 and "odd frame size" not in r.stderr, r.stderr
    with av.open(str(exact)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.width, cc.height, cc.pix_fmt) == (97, 65, "yuv444p")


# 9 ------------------------------------------------------------------------------------------
def test_small_things_a_user_notices(identity, identity_onnx, tmp_path):
    from streamgan.engines import nvidia_driver_present

    # the input is checked before the model is loaded (a broken model is never reached)
    r = run_cli("run", "--task", tmp_path / "missing-model.onnx", tmp_path / "nope.mp4")
    assert r.returncode == errors.EXIT_INPUT and "no such file" in error_line(r.stderr)

    # banner without GPU talk on a CPU; x265 chatter only with --debug; 10-bit said
    src10 = make_clip(tmp_path / "ten.mkv", frames=6, codec="libx265", pix_fmt="yuv420p10le")
    r = run_cli("run", "--task", identity_onnx, src10, "-o", tmp_path / "o.mp4", "--codec",
                "h265")
    assert r.returncode == 0, r.stderr
    banner = r.stderr.splitlines()[0]
    assert banner.startswith("streamgan: identity on openvino") and "libx265" in banner
    if not nvidia_driver_present():
        assert "NVIDIA" not in r.stderr
    assert "x265 [info]" not in r.stderr
    assert "10-bit video (yuv420p10le); the output is 8-bit" in r.stderr
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    r = run_cli("run", "--task", identity_onnx, src10, "-o", tmp_path / "o.mp4", "-y",
                "--codec", "h265", "--debug")
    assert r.returncode == 0 and "x265 [info]" in r.stderr

    # fp16 asked on a CPU: runs fp16, or says what it runs
    tr = Translator(identity_onnx, backend="openvino", precision="fp16")
    tr.translate(np.zeros((32, 32, 3), np.uint8))
    (compiled,) = tr.backend._uint8.values()
    runs = {"f16": "fp16", "bf16": "bf16", "f32": "fp32"}[
        compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()]
    assert tr.describe().startswith(f"identity on openvino CPU {runs}")
    if runs != "fp16":
        assert "fp16 not supported" in tr.describe()

    # library wording: the API has no -y (also after the CLI ran in this process)
    from streamgan.cli import main

    assert main(["backends"]) == 0
    src = make_clip(tmp_path / "src.mp4", frames=3)
    (tmp_path / "taken.mp4").write_bytes(b"mine")
    with pytest.raises(OutputError, match="overwrite=True") as e:
        identity.translate_video(src, tmp_path / "taken.mp4")
    assert "-y" not in str(e.value) and (tmp_path / "taken.mp4").read_bytes() == b"mine"

    # an image in, an image out (every image type; png is lossless: exact pixels)
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (45, 61, 3), np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    for ext in io.IMAGE_FORMATS:
        r = run_cli("run", "--task", identity_onnx, tmp_path / "in.png", "-o",
                    tmp_path / f"out{ext}", "-q")
        assert r.returncode == 0, (ext, r.stderr)
        got = np.asarray(Image.open(tmp_path / f"out{ext}").convert("RGB"))
        assert got.shape == img.shape
        if ext == ".png":
            assert np.array_equal(got, img)
    r = run_cli("run", "--task", identity_onnx, src, "-o", tmp_path / "frame.png")
    assert r.returncode == errors.EXIT_USAGE and "--frames 1" in error_line(r.stderr)
    assert not (tmp_path / "frame.png").exists()
