"""Throughput measurements: decode, decode+encode, model alone, end to end.

Each stage runs after a warm-up, several times, and reports the median fps and the spread
(min..max). All stages of one report are measured in the same process run, so their ratios are
meaningful even on a shared machine whose absolute speed drifts.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np

from . import engines, errors
from .errors import InputError, UsageError
from .io import EncodeOptions, Sink, Source, max_pixels
from .pipeline import Pipeline

MIN_FRAMES = 10


@dataclass
class Measure:
    stage: str
    fps: list[float] = field(default_factory=list)
    detail: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.fps) if self.fps else 0.0

    def row(self) -> str:
        lo, hi = (min(self.fps), max(self.fps)) if self.fps else (0, 0)
        return f"{self.stage:34s} {self.median:8.1f} {lo:8.1f} {hi:8.1f}  {self.detail}"


def machine() -> dict:
    """CPU model, cores, the ISA flags that matter here, GPU, library versions."""
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cores": os.cpu_count(), "cpu": platform.processor() or "?", "flags": [], "gpu": None}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and info["cpu"] in ("?", "x86_64", ""):
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["flags"] = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2"))
                                       or f in ("avx", "fma", "f16c"))
                break
    except OSError:
        pass
    if engines.nvidia_driver_present():
        try:
            info["gpu"] = Path("/proc/driver/nvidia/version").read_text().splitlines()[0]
        except OSError:
            info["gpu"] = "NVIDIA (driver present)"
    versions = {"av": av.__version__, "ffmpeg": str(getattr(av, "ffmpeg_version_info", "?")),
                "numpy": np.__version__}
    for mod in ("openvino", "onnxruntime", "torch", "tensorrt"):
        try:
            versions[mod] = __import__(mod).__version__ if mod != "torch" or _torch_loaded() \
                else _dist_version("torch")
        except Exception:
            pass
    info["versions"] = versions
    return info


def _torch_loaded() -> bool:
    import sys

    return "torch" in sys.modules


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _timed(fn, reps: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        n = fn()
        out.append(n / (time.perf_counter() - t0))
    return out


def _frames_in(src, size, frames) -> int:
    n = 0
    for _ in Source(src, size=size, max_frames=frames):
        n += 1
    return n


def decode_only(src, size=None, frames=None, reps=3) -> Measure:
    """Demux + decode + conversion to RGB (scaled by FFmpeg when ``size`` is given)."""
    return Measure("decode -> rgb", _timed(lambda: _frames_in(src, size, frames), reps))


def transcode(src, size=None, frames=None, reps=3, encode=None, process=None,
              label="decode+encode (no model)") -> Measure:
    """The whole pipeline with ``process`` (default: none) in place of the model."""
    encode = encode or EncodeOptions()
    process = process or (lambda batch: [f.image for f in batch])

    def once():
        source = Source(src, size=size, max_frames=frames)
        with tempfile.TemporaryDirectory() as d:
            w, h = size or (source.width, source.height)
            sink = Sink(Path(d) / "o.mp4", width=w, height=h, time_base=source.time_base,
                        frame_rate=source.frame_rate, options=encode)
            for frame, out in Pipeline(source, process):
                sink.write(out, frame.pts)
            sink.close()
            source.close()
            return sink.frames_written

    return Measure(label, _timed(once, reps), encode.choice().describe())


def model_only(backend, width, height, batch=1, iters=30, reps=3, model=None) -> Measure:
    """The backend alone on uint8 frames already in memory; a temporal model (``model``: its
    ``plugins.Model``) with its state fed back as a stream does."""
    frames = np.random.default_rng(0).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    backend.prepare([(batch, height, width)])  # a TensorRT build happens here, not in the timing
    state = None
    if model is not None and model.temporal is not None:
        from .temporal import state_size

        state = [np.zeros((batch, st.channels, *state_size(width, height, model.processing, st.scale)[::-1]),
                          np.float32) for st in model.temporal.state]

    def once():
        nonlocal state
        for _ in range(iters):
            if state is None:
                backend.run(frames)
            else:
                _, state = backend.run(frames, state)
        return iters * batch

    return Measure(f"model only {width}x{height} b{batch}", _timed(once, reps, warmup=1),
                   backend.describe())


def end_to_end(translator, src, frames=None, reps=3, encode=None, label=None) -> Measure:
    def once():
        with tempfile.TemporaryDirectory() as d:
            return translator.translate_video(src, Path(d) / "o.mp4", frames=frames,
                                              encode=encode).frames

    return Measure(label or f"end to end ({translator.task})", _timed(once, reps),
                   translator.backend.describe())


def check_clip(src, frames=None) -> int:
    if frames is not None and frames < MIN_FRAMES:  # the option, not the clip
        raise UsageError(f"{errors.flag('--frames', 'frames')} {frames}: at least {MIN_FRAMES} frames "
                         "are needed to measure")
    n = _frames_in(src, None, frames)
    if n < MIN_FRAMES:
        raise InputError(f"{src}: {n} frames is too short to measure (at least {MIN_FRAMES})")
    return n


def make_clip(src, path, width: int, height: int, frames: int | None = None) -> Path:
    """Re-encode ``src`` at width x height (near-lossless) so all stages see the same input."""
    if width % 2 or height % 2:
        raise UsageError(f"benchmark resolution {width}x{height} must be even")
    source = Source(src, size=(width, height), max_frames=frames)
    sink = Sink(path, width=width, height=height, time_base=source.time_base,
                frame_rate=source.frame_rate, options=EncodeOptions(crf=12), overwrite=True)
    for frame in source:
        sink.write(frame.image, frame.pts)
    sink.close()
    source.close()
    return Path(path)


def report(measures: list[Measure], info: dict, derived: dict) -> str:
    lines = [f"machine: {info['cpu']}, {info['cores']} cores, flags {' '.join(info['flags'])}"
             + (f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"),
             "versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
             "", f"{'stage':34s} {'median':>8s} {'min':>8s} {'max':>8s}  (fps)"]
    lines += [m.row() for m in measures]
    if derived:
        lines.append("")
        lines += [f"{k}: {v}" for k, v in derived.items()]
    return "\n".join(lines)


def to_json(measures, info, derived) -> str:
    return json.dumps({"machine": info, "derived": derived,
                       "stages": [dict(asdict(m), median=m.median) for m in measures]}, indent=2)


PLOT_TYPES = (".png", ".svg", ".pdf", ".jpg")


def _resolutions(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        try:
            w, h = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise UsageError(f"bad resolution '{part}' (use WxH, e.g. 640x360)") from None
        if w < 16 or h < 16 or w % 2 or h % 2:
            raise UsageError(f"resolution {w}x{h}: sides must be even and at least 16")
        if w * h > max_pixels():
            raise UsageError(f"resolution {w}x{h}: above the limit of {max_pixels() / 1e6:g} "
                             "million pixels a frame (STREAMGAN_MAX_PIXELS)")
        out.append((w, h))
    return out


def _baseline_module():
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "baseline_naive.py"
    if not path.exists():
        raise UsageError("--baseline needs the repository checkout (benchmarks/baseline_naive.py)")
    spec = importlib.util.spec_from_file_location("baseline_naive", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(args) -> dict:
    """`streamgan bench`: every stage for each resolution, in one process run."""
    from .translator import Translator

    backends = args.backend.split(",")
    precisions = args.precision.split(",")
    batches = [int(b) for b in str(args.batch).split(",")]
    if any(b < 1 for b in batches):
        raise UsageError("--batch sizes must be positive")
    for b in backends:
        if b != "auto" and b not in engines.NAMES:
            raise UsageError(f"unknown backend '{b}'; choose auto or {', '.join(engines.NAMES)}")
    for p in precisions:
        if p not in engines.PRECISIONS:
            raise UsageError(f"unknown precision '{p}'; choose from {', '.join(engines.PRECISIONS)}")
    resolutions = _resolutions(args.resolution)
    if args.plot and Path(args.plot).suffix.lower() not in PLOT_TYPES:
        raise UsageError(f"--plot {args.plot}: the picture is a {', '.join(PLOT_TYPES)} file")
    check_clip(args.input, args.frames)
    measures: list[Measure] = []
    derived: dict = {}
    plot: dict[str, list[tuple[int, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in resolutions:
            clip = make_clip(args.input, Path(tmp) / f"clip_{w}x{h}.mp4", w, h, args.frames)
            tag = f"{w}x{h}"
            io = transcode(clip, reps=args.reps)
            io.stage = f"{tag} decode+encode (no model)"
            dec = decode_only(clip, reps=args.reps)
            dec.stage = f"{tag} decode -> rgb"
            measures += [dec, io]
            first = None
            for name in backends:
                for prec in precisions:
                    tr = Translator(args.task, name, prec, size=args.size,
                                    night_exposure=getattr(args, "night_exposure", None))
                    first = first or tr
                    pw, ph = tr.processing_size(w, h)
                    for b in batches:
                        m = model_only(tr.backend, pw, ph, batch=b, reps=args.reps,
                                       iters=max(4, args.iters // b), model=tr.model)
                        m.stage = f"{tag} model only at {pw}x{ph} b{b}"
                        measures.append(m)
                        plot.setdefault(tr.backend.describe(), []).append((w * h, m.median))
            model_fps = next(m.median for m in measures if m.stage.startswith(f"{tag} model only")
                             and m.detail == first.backend.describe())
            e2e = end_to_end(first, clip, reps=args.reps)
            e2e.stage = f"{tag} end to end ({first.task})"
            measures.append(e2e)
            t_io, t_model = 1 / io.median, 1 / model_fps
            derived[f"{tag} pipeline efficiency"] = (
                f"{e2e.median * (t_io + t_model):.0%} of 1/(t_io + t_model) = "
                f"{1 / (t_io + t_model):.1f} fps; end to end is {e2e.median / model_fps:.0%} of "
                f"the model alone, {e2e.median / io.median:.0%} of decode+encode")
            if args.baseline:
                base = _baseline_module()
                eager, how = base.load_eager_model(first.model.onnx)
                naive = Measure(f"{tag} naive baseline (cv2 + eager torch)")
                ours_again = Measure(f"{tag} end to end, alternating with baseline")
                nb = min(args.baseline_frames, args.frames or args.baseline_frames)
                for _ in range(args.reps):  # alternate so drift hits both equally
                    n, s = base.run_naive(first.model.onnx, clip, Path(tmp) / "naive.mp4",
                                          max_frames=nb, model=eager)
                    naive.fps.append(n / s)
                    ours_again.fps += end_to_end(first, clip, reps=1).fps
                naive.detail = f"{how}, per frame, {nb} frames"
                ours_again.detail = first.backend.describe()
                measures += [naive, ours_again]
                derived[f"{tag} speed-up over naive baseline"] = \
                    f"{ours_again.median / naive.median:.1f}x"
    info = machine()
    print(report(measures, info, derived))
    if args.json:
        Path(args.json).write_text(to_json(measures, info, derived))
        print(f"wrote {args.json}")
    if args.plot:
        _plot(plot, args.plot)
        print(f"wrote {args.plot}")
    return {"measures": measures, "derived": derived}


def _plot(series: dict, path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install matplotlib") from None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in series.items():
        pts = sorted(pts)
        ax.plot([p / 1e6 for p, _ in pts], [f for _, f in pts], "o-", label=name)
    ax.set_xlabel("input megapixels per frame")
    ax.set_ylabel("model-only fps (median)")
    ax.set_title("streamgan model throughput by backend")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
