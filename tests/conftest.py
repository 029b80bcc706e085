"""Shared fixtures: real clips from ../shared/data, clips made here with PyAV, tiny ONNX models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent

# A shell without job control (a script) starts a background job (`cmd &`) with Ctrl-C ignored, and the
# processes the tests start would inherit that and never see the SIGINT the Ctrl-C tests send them. A
# handler here (not an ignore) is reset to the default in every child at exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
DATA = Path(os.environ.get("STREAMGAN_DATA", REPO.parent / "shared" / "data"))
CLIPS = DATA / "clips"


_FRAME_DERAIN: list[Path] = []


def frame_derain() -> Path:
    """A frame-by-frame derain plugin, for tests of what runs frames one by one or in pieces (int8, tiles,
    TensorRT batches): the shipped derain plugin where it is frame by frame, else its derain network alone
    (``streamgan-train temporal frame``), written once per session."""
    import tempfile

    if not _FRAME_DERAIN:
        from trainer.temporal import frame_by_frame

        _FRAME_DERAIN.append(frame_by_frame(REPO / "plugins" / "derain",
                                            Path(tempfile.mkdtemp(prefix="sg-frame-")) / "derain"))
    return _FRAME_DERAIN[0]


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (set STREAMGAN_DATA)")
    return path


@pytest.fixture(scope="session")
def udacity_clip() -> Path:
    """960x540, 25 fps, 221 frames, H.264 + AAC (MIT, Udacity)."""
    return need(CLIPS / "udacity_lanelines_solidWhiteRight.mp4")


@pytest.fixture(scope="session")
def gif_clip() -> Path:
    """320x240 GIF, 72 frames at 130 ms (BDD100K terms: read from shared/, never copied)."""
    return need(CLIPS / "yolop_bdd_input1.gif")


def make_clip(path: Path, *, frames: int = 12, size=(96, 64), codec: str = "libx264",
              pix_fmt: str = "yuv420p", pts: list[int] | None = None,
              time_base: Fraction = Fraction(1, 1000), rate: int = 25,
              audio: str | None = None, rotation: int = 0, seed: int = 0) -> Path:
    """Write a small real video: moving gradients (+ a sine tone) with the given timestamps."""
    phase = float(np.random.default_rng(seed).uniform(0, 6.28))
    w, h = size
    pts = pts if pts is not None else [int(Fraction(i, rate) / time_base) for i in range(frames)]
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=rate)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        v.codec_context.time_base = time_base
        if rotation:
            v.set_display_rotation(rotation)
        a = None
        if audio:
            a = c.add_stream(audio, rate=44100)
            a.layout = "stereo"
        yy, xx = np.mgrid[0:h, 0:w]
        for i, p in enumerate(pts):
            img = np.stack([(xx * 3 + i * 7) % 256, (yy * 3 + i * 5) % 256,
                            (128 + 100 * np.sin((xx + yy + i * 3) / 9.0 + phase))], -1).astype(np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = p, time_base
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        if a is not None:
            dur = (pts[-1] * time_base) + Fraction(1, rate)
            n = int(44100 * dur)
            t = np.arange(n) / 44100
            tone = (0.2 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
            fmt = a.codec_context.codec.audio_formats[0].name
            res = av.AudioResampler(format=fmt, layout="stereo", rate=44100)
            for start in range(0, n, 1024):
                chunk = np.repeat(tone[start:start + 1024][None], 2, 0).T.reshape(1, -1)
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="s16",
                                                layout="stereo")
                af.sample_rate, af.pts = 44100, start
                for rf in res.resample(af):
                    c.mux(a.encode(rf))
            c.mux(a.encode(None))
    return path


def read_video(path) -> dict:
    """Decoded frames and their timestamps (seconds), rotation and audio packets of a file."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames, times, rotation = [], [], None
        for f in c.decode(s):
            if rotation is None:
                rotation = f.rotation
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.pts * f.time_base))
        info = {"frames": frames, "times": times, "rotation": rotation or 0,
                "width": s.codec_context.width, "height": s.codec_context.height,
                "codec": s.codec_context.name}
    with av.open(str(path)) as c:
        info["audio"] = [(a.codec_context.name, a.codec_context.sample_rate)
                         for a in c.streams.audio]
        info["audio_packets"] = [bytes(p) for p in c.demux(audio=0) if p.size] \
            if c.streams.audio else []
    return info


@pytest.fixture(scope="session")
def identity_onnx(tmp_path_factory) -> Path:
    """An ONNX model whose output is its input (for exact pipeline checks)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])],
                              "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("onnx") / "identity.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory):
    """(torch module, onnx path): a small random generator with the layers real ones use."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(
                nn.ReflectionPad2d(3), nn.Conv2d(3, 8, 7), nn.InstanceNorm2d(8, affine=True),
                nn.ReLU(True), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(True),
                nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.Conv2d(16, 16, 1), nn.LeakyReLU(0.2),
                nn.ConvTranspose2d(16, 8, 3, 2, 1, output_padding=1), nn.ReLU(True),
                nn.Conv2d(8, 3, 3, 1, 1), nn.Tanh())

        def forward(self, x):
            return self.net(x)

    torch.manual_seed(0)
    model = Tiny().eval()
    for p in model.parameters():  # random but non-trivial affine norm parameters
        if p.dim() == 1:
            p.data.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.randn(1, 3, 32, 32), str(path), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "n", 2: "h", 3: "w"},
                                        "output": {0: "n", 2: "h", 3: "w"}})
    return model, path


def playable_times(path) -> list[float]:
    """Timestamps (seconds) of the frames of a recording that a killed process left: what decodes
    before the part cut short by the kill."""
    times = []
    with av.open(str(path)) as c:
        try:
            for p in c.demux(video=0):
                times += [float(f.pts * f.time_base) for f in p.decode()]
        except av.error.InvalidDataError:
            pass
    return times


def run_cli(*args, timeout=300, env=None, **kw) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "streamgan", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=e, **kw)


def error_line(stderr: str) -> str:
    """The one 'streamgan: error' line of a run that failed cleanly (no traceback)."""
    lines = [l for l in stderr.strip().splitlines() if l.startswith("streamgan: error")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def wait_for(cond, seconds: float, poll: float = 0.05) -> bool:
    """Poll ``cond`` until it holds or ``seconds`` pass (every wait in the tests is bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(poll)
    return bool(cond())  # once more at the deadline: a condition met during the last sleep counts
