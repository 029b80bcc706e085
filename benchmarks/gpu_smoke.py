"""GPU smoke test: TensorRT vs PyTorch CUDA on one generator, one table.

    python benchmarks/gpu_smoke.py [--model derain] [--batches 1,4,8]
                                   [--resolutions 640x360,480x360,360x640,1280x720,1920x1080]
                                   [--seconds 2]

The engine is built the way the pipeline builds it: the default profile from the card's policy
(landscape, 4:3 and portrait at short side 360), then ``prepare`` for the sizes asked for, before
anything is timed. TensorRT's warnings are printed (``STREAMGAN_TRT_LOG=info`` for more).

For each resolution and batch size it prints model-only throughput (frames/s of the network on
data already on the GPU, CUDA-event timed) for TensorRT fp16 and PyTorch CUDA fp16, end-to-end
throughput of ``run`` (uint8 host frames in and out, two batches in flight for TensorRT), and the
largest difference between TensorRT fp16 and a PyTorch fp32 reference: in model space (float,
on [-1, 1]) and on the uint8 output. Without TensorRT it prints the PyTorch columns alone (the errors
are then PyTorch fp16 against fp32) after one line saying why. Without a GPU or PyTorch it prints one
line "skipped: <reason>" and exits 0.

The model is the named plugin when its weights are present, otherwise a small ResNet-style
generator exported here (the table says which).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _skip_reason() -> str | None:
    from streamgan.engines import _installed, nvidia_driver_present

    if not nvidia_driver_present():
        return "no NVIDIA driver on this machine"
    if not _installed("torch"):
        return "PyTorch is not installed"
    import torch

    if not torch.cuda.is_available():
        return "PyTorch cannot use CUDA here (driver too old or CPU-only build)"
    return None


def _no_tensorrt_reason() -> str | None:
    from streamgan.engines import _installed

    return None if _installed("tensorrt") else "TensorRT is not installed (pip install 'streamgan[tensorrt]')"


def _fallback_model(folder: Path) -> Path:
    import torch
    from torch import nn

    def res(ch):
        return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch), nn.ReLU(True),
                             nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch))

    class Res(nn.Module):
        def __init__(self, ch):
            super().__init__()
            self.body = res(ch)

        def forward(self, x):
            return x + self.body(x)

    net = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, 16, 7), nn.InstanceNorm2d(16), nn.ReLU(True),
                        nn.Conv2d(16, 32, 3, 2, 1), nn.InstanceNorm2d(32), nn.ReLU(True),
                        *[Res(32) for _ in range(4)],
                        nn.ConvTranspose2d(32, 16, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(16), nn.ReLU(True),
                        nn.ReflectionPad2d(3), nn.Conv2d(16, 3, 7), nn.Tanh()).eval()
    path = folder / "smoke_generator.onnx"
    dyn = {0: "n", 2: "h", 3: "w"}
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(1, 3, 64, 64), str(path), opset_version=17, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": dyn, "output": dyn}, dynamo=False)
    return path


def _model(name: str, folder: Path):
    """(onnx path, label, mean, std, size multiple)."""
    try:
        from streamgan import plugins

        m = plugins.load(name)
        n, label = m.normalisation, f"plugin {m.task}"
        if m.temporal is not None:  # its state aside: the network alone, frame by frame, in batches
            from trainer.temporal import export_frame_model

            m = plugins.load(str(export_frame_model(Path(m.onnx).parent, folder / "frame")))
            label += " (temporal: its derain network alone, frame by frame)"
        return m.onnx, label, n.mean, n.std, m.processing.size_multiple
    except Exception as e:
        return _fallback_model(folder), f"small test generator ({name}: {e})", (0.5,) * 3, (0.5,) * 3, 4


def _rate(fn, frames: int, seconds: float, sync) -> float:
    fn(), sync()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    sync()
    return n * frames / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="derain")
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--resolutions", default="640x360,480x360,360x640,1280x720,1920x1080")
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per cell")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)

    reason = _skip_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0

    import torch

    from streamgan.engines import trt_build
    from streamgan.engines.tensorrt import TensorRTBackend
    from streamgan.engines.torch import TorchBackend

    batches = [int(b) for b in args.batches.split(",")]
    sizes = [trt_build.parse_resolution(r) for r in args.resolutions.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="streamgan-smoke-"))
    onnx_path, label, mean, std, mult = _model(args.model, tmp)
    sizes = [(w + (-w % mult), h + (-h % mult)) for w, h in sizes]  # as frames.pad_to_multiple does

    no_trt = _no_tensorrt_reason()
    if no_trt:
        print(f"TensorRT columns skipped: {no_trt}")
        trt_b = None
    else:
        trt_b = TensorRTBackend(onnx_path, "fp16", mean, std, batch_range=(min(batches), max(batches)),
                                size_multiple=mult, cache_dir=args.cache_dir or tmp / "engines")
        profile_before = trt_b.profile.describe()
        trt_b.prepare([(max(batches), h, w) for w, h in sizes])  # builds before timing, as a stream does
    ref32 = TorchBackend(onnx_path, "fp32", mean, std, device="cuda")
    ref16 = TorchBackend(onnx_path, "fp16", mean, std, device="cuda")
    checked = trt_b or ref16  # the side whose error against PyTorch fp32 is printed
    sync = torch.cuda.synchronize
    rng = np.random.default_rng(0)

    per_frame = sum(not s for s in ref16.module.static)  # the torch backend's operators a call, after the first
    print(f"model: {label}; {(trt_b or ref16).describe()}; torch {torch.__version__}; "
          f"{torch.cuda.get_device_name()}; torch backend: {per_frame} of {len(ref16.module.nodes)} ONNX "
          "operators a call (shape arithmetic kept per input shape)")
    if trt_b:
        print(f"card-policy profile: {profile_before}; after prepare: {trt_b.profile.describe()}")
    head = ("resolution", "batch", "trt16 model", "torch16 model", "trt16 e2e", "torch16 e2e",
            "max|d| float", "max|d| uint8")
    print("  ".join(f"{h:>13}" for h in head))
    for w, h in sizes:
        for n in batches:
            frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
            x = ((frames.transpose(0, 3, 1, 2) / 255.0 - 0.5) / 0.5).astype(np.float32)
            err_f = float(np.abs(checked.infer(x) - ref32.infer(x)).max())
            err_u8 = int(np.abs(checked.run(frames).astype(int) - ref32.run(frames).astype(int)).max())
            x16 = torch.from_numpy(x).cuda().half()
            with torch.inference_mode():
                torch_model = _rate(lambda: ref16.module(x16), n, args.seconds, sync)
            torch_end = _rate(lambda: ref16.run(frames), n, args.seconds, sync)
            trt_model = trt_end = "-"
            if trt_b:
                trt_model, trt_end = (f"{r:.0f}" for r in _trt_rates(trt_b, frames, x, args.seconds, sync))
            row = (f"{w}x{h}", n, trt_model, f"{torch_model:.0f}", trt_end, f"{torch_end:.0f}",
                   f"{err_f:.4f}", err_u8)
            print("  ".join(f"{str(c):>13}" for c in row), flush=True)
    print("fps = frames per second; model = network only on GPU-resident data; e2e = uint8 host frames "
          "in and out (TensorRT with two batches in flight); errors vs PyTorch fp32 "
          f"({'TensorRT fp16' if trt_b else 'PyTorch fp16'})")
    if trt_b:
        trt_b.close()
    return 0


def _trt_rates(trt_b, frames, x, seconds, sync):
    """TensorRT fp16 model-only and end-to-end (two batches in flight) frames per second."""
    import torch

    n, h, w = frames.shape[:3]
    xd = torch.from_numpy(x).cuda().to(trt_b._in_dtype)
    yd = torch.empty(trt_b._out_shape(n, h, w), dtype=trt_b._out_dtype, device="cuda")
    stream = trt_b.compute_stream  # the engine's own stream, as in submit()
    model = _rate(lambda: trt_b._enqueue(xd, yd, stream), n, seconds, sync)
    inflight = []

    def e2e():
        inflight.append(trt_b.submit(frames))
        if len(inflight) > 1:
            trt_b.collect(inflight.pop(0))

    def drain():
        while inflight:
            trt_b.collect(inflight.pop(0))

    return model, _rate(e2e, n, seconds, drain)


if __name__ == "__main__":
    sys.exit(main())
