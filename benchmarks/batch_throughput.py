"""Batch throughput: local worker processes against one process, and Ray against local.

    python benchmarks/batch_throughput.py [--clips 8] [--frames 40] [--size 640x360] [--no-ray]

Makes a batch of short clips from the real Udacity dashcam clip (../shared/data), then measures
total frames / wall time for:

  single, 1 thread   one process, one Translator, the files one after another, backend on 1 thread
  single, all cores  the same with the backend on every core (the best one process does)
  local --jobs N     translate_many with N = cores worker processes, 1 backend thread each
                     (the default on a CPU machine)
  ray                translate_many(cluster="ray") on this machine, same threads per file;
                     Ray start-up (ray.init) reported apart, not in the throughput

Local and Ray alternate ``--reps`` times; medians. Ratios printed:

  local_vs_best_single          local / the best one-process figure
  local_vs_per_core_ideal       local / (the best one-process fps per busy core x cores): a
                                one-process run also keeps its decode and encode threads busy, so
                                fps per core is fps / (CPU seconds / wall seconds)
  local_vs_2x_1_thread_process  local / (single, 1 thread) x cores (that process uses > 1 core)
  ray_vs_local

The targets (issue 13): local >= 90% of the best single-process figure times the cores it can use,
Ray within 10% of local. Every figure includes model loading in each worker and the FFmpeg
decode/encode.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("STREAMGAN_DATA", REPO.parent / "shared" / "data"))

import streamgan  # noqa: E402
from streamgan.batch import cpu_cores  # noqa: E402


def make_batch(folder: Path, clips: int, frames: int, size: tuple[int, int]) -> list[Path]:
    """``clips`` files of ``frames`` frames each, consecutive pieces of the real clip."""
    src = DATA / "clips" / "udacity_lanelines_solidWhiteRight.mp4"
    if not src.exists():
        sys.exit(f"shared data not found: {src} (set STREAMGAN_DATA)")
    with av.open(str(src)) as c:
        images = [f.to_ndarray(width=size[0], height=size[1], format="rgb24")
                  for f in c.decode(video=0)]
    out = []
    for i in range(clips):
        path = folder / f"clip{i:02d}.mp4"
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
            for j in range(frames):
                img = images[(i * frames + j) % len(images)]
                c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            c.mux(s.encode(None))
        out.append(path)
    return out


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def single(clips, out: Path, task: str, threads: int) -> dict:
    """One process, the files one after another. ``cores_busy``: CPU time over wall time (the
    backend's threads plus the decode and encode threads, which a 1-thread backend does not
    count); ``fps_per_core`` = fps / cores_busy."""
    out.mkdir()
    t0, c0 = time.perf_counter(), _cpu_seconds()
    tr = streamgan.Translator(task, "openvino", threads=threads)
    frames = sum(tr.translate_video(c, out / f"{c.stem}.mp4").frames for c in clips)
    dt, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    return {"frames": frames, "seconds": round(dt, 2), "fps": round(frames / dt, 2),
            "cores_busy": round(cpu / dt, 2), "fps_per_core": round(frames / cpu, 2)}


def batch(folder: Path, out: Path, task: str, **kw) -> dict:
    rep = streamgan.translate_many([folder], task, out, backend="openvino", **kw)
    assert rep.ok, rep.summary()
    return {"frames": rep.frames, "seconds": round(rep.seconds, 2), "fps": round(rep.fps, 2),
            "startup_seconds": round(rep.startup_seconds, 2), "workers": rep.workers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=40, help="frames per clip")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--task", default="derain")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--reps", type=int, default=2, help="local and Ray runs, alternating")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    cores = cpu_cores()
    res = {"cores": cores, "clips": args.clips, "frames_per_clip": args.frames,
           "size": args.size, "task": args.task, "load_1min": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="sg-batch-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        clips = make_batch(tmp / "in", args.clips, args.frames, size)
        res["single_1_thread"] = single(clips, tmp / "s1", args.task, 1)
        res["single_all_cores"] = single(clips, tmp / "sn", args.task, cores)
        runs: dict = {"local_jobs": [], "ray": []}
        for rep in range(args.reps):  # local and Ray alternate: the ratio is from one run
            runs["local_jobs"].append(batch(tmp / "in", tmp / f"local{rep}", args.task, jobs=cores,
                                            threads=1))
            if not args.no_ray:
                runs["ray"].append(batch(tmp / "in", tmp / f"ray{rep}", args.task, cluster="ray",
                                         threads=1))
        shutil.rmtree(tmp / "in")
    for name, reps in runs.items():
        if reps:
            res[name] = {"fps": [r["fps"] for r in reps], "median_fps": statistics.median(r["fps"] for r in reps),
                         "startup_seconds": [r["startup_seconds"] for r in reps], "workers": reps[0]["workers"]}
    local = res["local_jobs"]["median_fps"]
    best = max(res["single_1_thread"], res["single_all_cores"], key=lambda r: r["fps"])
    res["local_vs_best_single"] = round(local / best["fps"], 3)
    res["local_vs_per_core_ideal"] = round(local / (best["fps_per_core"] * cores), 3)
    res["local_vs_2x_1_thread_process"] = round(local / (res["single_1_thread"]["fps"] * cores), 3)
    if "ray" in res:
        res["ray_vs_local"] = round(res["ray"]["median_fps"] / local, 3)
    res["load_1min_after"] = os.getloadavg()[0]
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
