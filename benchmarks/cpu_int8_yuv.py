"""Issue 12 figures in one run: the whole process against the naive loop, int8 against fp32 model
alone, end-to-end efficiency, 1280x720 at the card's policy, and the thread sweep (engine x encoder).

    python benchmarks/cpu_int8_yuv.py [--task derain] [--frames 300] [--reps 2] [--part all|process|
                                      model|e2e|hd|threads] [--precision auto|fp32|int8]

``process`` times what a user times: ``streamgan derain clip.mp4`` as a whole process (start-up,
model load, decode, model, encode) against ``benchmarks/baseline_naive.py`` on the same 300-frame
640x360 clip, alternating. The other parts run inside this process with the Python API; every
ratio is from one run, the two sides alternating.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streamgan import Translator, bench, plugins
from streamgan.io import EncodeOptions

REPO = Path(__file__).resolve().parents[1]
SOURCE = Path(os.environ.get("STREAMGAN_DATA", REPO.parent / "shared" / "data")) / \
    "clips/udacity_lanelines_solidWhiteRight.mp4"


def _wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def whole_process(task, clip, frames, reps, d, precision="auto") -> dict:
    tr = Translator(task, "openvino", precision)
    onnx = str(tr.model.onnx)
    ours = [sys.executable, "-m", "streamgan", "run", "--task", task, str(clip), "-o", str(d / "ours.mp4"), "-y", "-q",
            "--backend", "openvino", "--precision", precision]
    naive = [sys.executable, str(REPO / "benchmarks" / "baseline_naive.py"), onnx, str(clip),
             str(d / "naive.mp4")]
    t_ours, t_naive = [], []
    for _ in range(reps):
        t_ours.append(_wall(ours))
        t_naive.append(_wall(naive))
    a, b = statistics.median(t_ours), statistics.median(t_naive)
    return {"streamgan_s": [round(t, 2) for t in t_ours], "naive_s": [round(t, 2) for t in t_naive],
            "streamgan_fps": round(frames / a, 1), "naive_fps": round(frames / b, 1),
            "speed_up": round(b / a, 2), "streamgan": tr.describe()}


def model_alone(task, w, h, reps) -> dict:
    sides = {p: Translator(task, "openvino", p) for p in ("fp32", "int8")}
    fps = {p: [] for p in sides}
    for _ in range(reps):
        for p, tr in sides.items():  # alternating
            fps[p] += bench.model_only(tr.backend, *tr.processing_size(w, h), iters=30, reps=1, model=tr.model).fps
    med = {p: statistics.median(v) for p, v in fps.items()}
    return {"fps": {p: round(v, 1) for p, v in med.items()}, "int8_over_fp32": round(med["int8"] / med["fp32"], 2),
            "describe": {p: tr.describe() for p, tr in sides.items()}}


def efficiency(task, clip, reps, precision="auto") -> dict:
    tr = Translator(task, "openvino", precision)
    w, h = bench.Source(clip).width, bench.Source(clip).height
    io = bench.transcode(clip, reps=reps)
    model = bench.model_only(tr.backend, *tr.processing_size(w, h), iters=30, reps=reps, model=tr.model)
    e2e = bench.end_to_end(tr, clip, reps=reps)
    possible = 1 / (1 / io.median + 1 / model.median)
    return {"size": f"{w}x{h}", "engine": tr.describe(), "io_fps": round(io.median, 1),
            "model_fps": round(model.median, 1), "e2e_fps": round(e2e.median, 1),
            "possible_fps": round(possible, 1), "efficiency": f"{e2e.median / possible:.0%}",
            "e2e_over_model": f"{e2e.median / model.median:.0%}"}


def threads(task, clip, reps) -> list[dict]:
    rows = []
    for engine in (None, 1, 2):
        tr = Translator(task, "openvino", threads=engine)
        for enc in (None, 1, 2):
            m = bench.end_to_end(tr, clip, reps=reps, encode=EncodeOptions(threads=enc))
            rows.append({"engine_threads": engine or "default", "encoder_threads": enc or "default",
                         "e2e_fps": round(m.median, 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="derain")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--precision", default="auto", help="the streamgan side of 'process' (auto, fp32, int8)")
    ap.add_argument("--part", default="all", choices=("all", "process", "model", "e2e", "hd", "threads"))
    args = ap.parse_args()
    info = bench.machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, flags {' '.join(info['flags'])}")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        clip = bench.make_clip(SOURCE, d / "c640.mp4", 640, 360, None)
        if args.frames:  # the source clip has 221 frames: loop it to the frame count asked for
            clip = _loop(clip, d / "c640x.mp4", args.frames)
        part = args.part
        if plugins.load(args.task).int8 is None and part in ("all", "model", "e2e"):
            sys.exit(f"benchmarks/cpu_int8_yuv.py: the {args.task} plugin has no int8 model (see its card); "
                     "pass --task with a plugin folder that has one, or --part process|hd|threads")
        if part in ("all", "model"):
            print("model alone 640x360:", model_alone(args.task, 640, 360, args.reps * 2))
        if part in ("all", "e2e"):
            print("end to end 640x360:", efficiency(args.task, clip, args.reps))
            print("end to end 640x360 int8:", efficiency(args.task, clip, args.reps, "int8"))
        if part in ("all", "hd"):
            hd = bench.make_clip(SOURCE, d / "c720.mp4", 1280, 720, 150)
            print("end to end 1280x720:", efficiency(args.task, hd, args.reps))
        if part in ("all", "threads"):
            for row in threads(args.task, clip, args.reps):
                print("threads:", row)
        if part in ("all", "process"):
            print(f"whole process {args.frames} frames 640x360:",
                  whole_process(args.task, clip, args.frames, args.reps, d, args.precision))


def _loop(clip: Path, out: Path, frames: int) -> Path:
    """``frames`` frames: the clip played forwards and backwards as often as needed (no jump)."""
    src = bench.Source(clip)
    imgs = [f.image for f in src]
    src.close()
    seq = (imgs + imgs[::-1]) * (frames // (2 * len(imgs)) + 1)
    from fractions import Fraction

    sink = bench.Sink(out, width=640, height=360, time_base=Fraction(1, 25), frame_rate=Fraction(25),
                      options=EncodeOptions(crf=12), overwrite=True)
    for i, img in enumerate(seq[:frames]):
        sink.write(img, i)
    sink.close()
    return out


if __name__ == "__main__":
    main()
