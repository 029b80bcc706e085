"""Live benchmark: a 30 fps 640x360 RTSP camera, translated and published back, in real time.

    python benchmarks/bench_live.py [--model derain] [--seconds 10] [--json out.json]

Needs Debian's GStreamer RTSP server (see docs/LIVE.md); everything stays on 127.0.0.1.

1. model alone: median engine time for one frame (batch 1) and for two (batch 2);
2. one stream: ``streamgan.live.run`` pulls rtsp://127.0.0.1/cam1, translates, publishes to
   rtsp://127.0.0.1/pub1; frames, drops, latency capture->publish p50/p95/max, and the latency
   added beyond the model's own time (target: p95 within two frame intervals);
3. two streams in one ``serve`` (frames batched across streams into one engine call): each
   stream's drops and latency, and the combined throughput against the single stream's.

The model is the shipped ``derain`` plugin when installed, else a small random generator with
the layers real ones use (said in the output).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
CLIP = REPO.parent / "shared" / "data" / "clips" / "udacity_lanelines_solidWhiteRight.mp4"


def make_camera_clip(dst: Path, seconds: float, fps: int, size: tuple[int, int]) -> int:
    """A real clip re-timed to ``fps`` and scaled to ``size`` (looped to ``seconds``)."""
    n_total = int(seconds * fps)
    w, h = size
    with av.open(str(dst), "w") as out:
        s = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "bf": "0",
                                                        "g": str(fps)})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        n = 0
        while n < n_total:
            with av.open(str(CLIP)) as src:
                for f in src.decode(video=0):
                    g = f.reformat(w, h, "yuv420p")
                    g.pts, g.time_base = n, Fraction(1, fps)
                    out.mux(s.encode(g))
                    n += 1
                    if n >= n_total:
                        break
        out.mux(s.encode(None))
    return n_total


def tiny_model(path: Path) -> Path:
    import torch
    from torch import nn

    from trainer.export import export_onnx

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.ReflectionPad2d(3), nn.Conv2d(3, 8, 7), nn.InstanceNorm2d(8, affine=True),
        nn.ReLU(True), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(True),
        nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.Conv2d(16, 16, 1), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(16, 8, 3, 2, 1, output_padding=1), nn.ReLU(True),
        nn.Conv2d(8, 3, 3, 1, 1), nn.Tanh())
    return export_onnx(net, path, sample_hw=(32, 32))


def model_time(tr, size, batch: int, reps: int = 30) -> float:
    """One engine call of ``batch`` frames, each of its own camera (a temporal model: one call, as serve
    makes it, not ``batch`` calls in a row on one stream)."""
    w, h = size
    x = np.random.default_rng(0).integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    cams = [f"cam{i}" for i in range(batch)]
    for _ in range(3):
        tr.run_batch(x, streams=cams)
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        tr.run_batch(x, streams=cams)
        t.append(time.perf_counter() - t0)
    return float(np.median(t))


def lat(latency) -> dict:
    return {"p50_ms": 1000 * latency.p50, "p95_ms": 1000 * latency.p95,
            "max_ms": 1000 * latency.max}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="derain", help="task, plugin folder or .onnx")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the camera clip")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--resolution", default="640x360")
    ap.add_argument("--batch", type=int, default=None,
                    help="serve: frames per engine call (default: the backend's preference)")
    ap.add_argument("--max-wait", type=float, default=None,
                    help="serve: batch wait (default: one frame interval)")
    ap.add_argument("--reps", type=int, default=1, help="alternate one/two streams this often")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--auto-size", action="store_true",
                    help="also run the one stream with --size auto (streamgan/autosize.py), alternating")
    ap.add_argument("--only-one", action="store_true", help="leave out the two-stream serve runs")
    ap.add_argument("--fresh-wait", default=None,
                    help="one-stream runs with these shares of a frame interval as the engine's "
                         "wait for a frame about to arrive, alternated (e.g. 0,0.3; default: the "
                         "runtime's own)")
    args = ap.parse_args()

    from rtsp_server import Server, unavailable

    from streamgan import live, outputs, plugins
    from streamgan.errors import ModelError
    from streamgan.serve import Server as Serve
    from streamgan.serve import ServeConfig
    from streamgan.translator import Translator

    why = unavailable()
    if why:
        print(f"bench_live: {why}", file=sys.stderr)
        return 2
    size = tuple(int(v) for v in args.resolution.lower().split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="streamgan-bench-live-"))
    model, model_name = args.model, args.model
    try:
        plugins.load(model)
    except ModelError as e:
        model = str(tiny_model(tmp / "tiny.onnx"))
        model_name = f"tiny random generator (shipped '{args.model}' unavailable: {e})"
    print(f"model: {model_name}", flush=True)
    clip = tmp / "camera.mp4"
    n = make_camera_clip(clip, args.seconds, args.fps, size)
    srv = Server(play={"/cam1": clip, "/cam2": clip},
                 record={"/pub1": tmp / "pub1.ts", "/pub2": tmp / "pub2.ts",
                         "/pub3": tmp / "pub3.ts"})
    import os

    report: dict = {"model": model_name, "fps": args.fps, "resolution": args.resolution,
                    "frames_per_stream": n, "cpus": os.cpu_count(),
                    "load_average_before": os.getloadavg()}
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
          "(other work on the machine slows every figure below)", flush=True)
    interval = 1.0 / args.fps
    try:
        tr = Translator(model, args.backend, args.precision, batch_size=1)
        psize = tr.processing_size(*size)
        t1 = model_time(tr, psize, 1)
        t2 = model_time(tr, psize, 2)
        report["engine"] = tr.describe()
        report["model_ms"] = {"batch1": 1000 * t1, "batch2": 1000 * t2,
                              "processing_size": f"{psize[0]}x{psize[1]}"}
        print(f"engine: {tr.describe()}; model alone at {psize[0]}x{psize[1]}: "
              f"{1000 * t1:.1f} ms (batch 1), {1000 * t2:.1f} ms (batch 2)", flush=True)

        def one_stream(auto: bool = False, fresh: float | None = None) -> dict:
            outs = outputs.FanOut([outputs.StreamOutput(srv.url("/pub1"),
                                                        encode=outputs.EncodeOptions())])
            res = live.run(tr, srv.url("/cam1"), outs, live.LiveOptions(
                reconnect=0, auto_size=auto, fresh_wait=None if fresh is None else fresh * interval))
            if auto and res.autosize is not None:
                print("size auto: " + "; ".join(res.autosize.lines()), flush=True)
            in_run = res.engine_seconds / max(1, res.batches)  # the model's own time
            one = {"published": res.frames, "dropped": res.dropped, "fps": res.fps, "fresh_wait": fresh,
                   "latency": lat(res.latency), "model_ms_in_run": 1000 * in_run,
                   "added_p95_ms": 1000 * (res.latency.p95 - in_run),
                   "load_average": os.getloadavg()[0]}
            want = 0.95 * min(args.fps, 1.0 / in_run)
            one["stages_p95_ms"] = {k: 1000 * v["p95_s"] for k, v in
                                    res.stages.as_dict().items()} if res.stages.model.count else {}
            one["target_fps"] = want
            # per frame: capture to publish less that frame's own engine call (waiting + output)
            one["beyond_own_call_p95_ms"] = 1000 * res.stages.beyond.p95 if res.stages.model.count else None
            print(f"one stream: {res.frames}/{n} frames published, {res.dropped} dropped, "
                  f"{res.fps:.1f} fps (target >= {want:.1f}); latency p50 "
                  f"{one['latency']['p50_ms']:.1f} ms, p95 {one['latency']['p95_ms']:.1f} ms, "
                  f"max {one['latency']['max_ms']:.1f} ms; model {1000 * in_run:.1f} ms per "
                  f"frame in this run, p95 beyond it {one['added_p95_ms']:.1f} ms (target <= "
                  f"{1000 * interval:.1f} ms); {res.stages.summary()}"
                  + (f" [fresh wait {fresh} of an interval]" if fresh is not None else ""), flush=True)
            return one

        def two_streams(auto: bool = False) -> dict:
            cfg = ServeConfig(model=model, backend=args.backend, precision=args.precision,
                              size="auto" if auto else None,
                              batch=args.batch, max_wait=args.max_wait
                              if args.max_wait is not None else interval, metrics=None,
                              streams=[{"name": "cam1", "input": srv.url("/cam1"),
                                        "outputs": [srv.url("/pub2")], "reconnect": 0},
                                       {"name": "cam2", "input": srv.url("/cam2"),
                                        "outputs": [srv.url("/pub3")], "reconnect": 0}])
            serve = Serve(cfg)
            serve.run(duration=args.seconds + 30)
            if auto:
                print("serve size auto: " + "; ".join(line.strip() for s in serve.streams
                                                      if s.auto is not None
                                                      for line in s.auto.lines()), flush=True)
            streams = {s.name: {"published": s.published, "dropped": s.dropped,
                                "state": s.state, "error": s.error, "latency": lat(s.latency)}
                       for s in serve.streams}
            total = sum(s.published for s in serve.streams)
            # throughput while the streams ran: first to last frame published, all streams
            firsts = [s.first_at for s in serve.streams if s.first_at is not None]
            lasts = [s.last_at for s in serve.streams if s.last_at is not None]
            combined = total / (max(lasts) - min(firsts)) if firsts and total > 1 else 0.0
            print("serve engine call times: " + ", ".join(
                f"{n} frames {1000 * t:.1f} ms" for (_, n), t in sorted(serve._cost.items())),
                flush=True)
            two = {"streams": streams, "combined_fps": combined, "batch": serve.batch,
                   "engine_calls": serve.calls,
                   "frames_per_call": serve.frames / max(1, serve.calls),
                   "engine_ms_per_call": 1000 * serve.engine_seconds / max(1, serve.calls),
                   "load_average": os.getloadavg()[0]}
            per_call = serve.engine_seconds / max(1, serve.calls)
            for name, st in streams.items():
                st["added_p95_ms"] = st["latency"]["p95_ms"] - 1000 * per_call
                print(f"serve {name}: {st['published']}/{n} published, {st['dropped']} "
                      f"dropped, latency p50 {st['latency']['p50_ms']:.1f} ms, p95 "
                      f"{st['latency']['p95_ms']:.1f} ms, max {st['latency']['max_ms']:.1f} ms, "
                      f"p95 beyond the model {st['added_p95_ms']:.1f} ms (target <= "
                      f"{2000 * interval:.1f} ms)"
                      + (f" ({st['state']}: {st['error']})" if st["error"] else ""),
                      flush=True)
            print(f"two streams in one serve: combined {combined:.1f} fps; "
                  f"{two['frames_per_call']:.2f} frames per engine call (batch {serve.batch}), "
                  f"{two['engine_ms_per_call']:.1f} ms per call", flush=True)
            return two

        ones, twos, autos, twos_auto = [], [], [], []
        fresh = [float(v) for v in args.fresh_wait.split(",")] if args.fresh_wait else [None]
        for _ in range(args.reps):  # alternate, so both see the same machine
            for f in fresh:
                ones.append(one_stream(fresh=f))
            if args.auto_size:
                autos.append(one_stream(auto=True))
            if not args.only_one:
                twos.append(two_streams())
                if args.auto_size:
                    twos_auto.append(two_streams(auto=True))
        report["one_stream"], report["two_streams"], report["one_stream_size_auto"] = ones, twos, autos
        report["two_streams_size_auto"] = twos_auto
        med_one = float(np.median([o["fps"] for o in ones]))
        med_two = float(np.median([t["combined_fps"] for t in twos])) if twos else float("nan")
        report["median"] = {"one_stream_fps": med_one, "two_streams_combined_fps": med_two}
        print(f"median over {args.reps}: two streams combined {med_two:.1f} fps vs one stream "
              f"alone {med_one:.1f} fps", flush=True)
        if autos and twos_auto:
            a1 = float(np.median([o["fps"] for o in autos]))
            a2 = float(np.median([t["combined_fps"] for t in twos_auto]))
            print(f"size auto, median over {args.reps}: two streams combined {a2:.1f} fps vs one "
                  f"stream alone {a1:.1f} fps", flush=True)
    finally:
        srv.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
