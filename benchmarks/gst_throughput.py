"""The GStreamer element's throughput against the command line's on the same clip.

    python benchmarks/gst_throughput.py [--clip samples/rainy_dashcam.mp4] [--runs 3]

Both decode the clip, run the same model on the same backend and encode H.264 (x264 veryfast),
end to end as a user runs them: ``streamgan <task> CLIP -o OUT`` and ``gst-launch-1.0 filesrc !
decodebin ! videoconvert ! streamgan ! videoconvert ! x264enc ! mp4mux ! filesink``, alternated
run by run (timings here drift between days: only the ratio of one run is compared). Model
loading is inside both timings, as a user waits for it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(REPO / "samples" / "rainy_dashcam.mp4"))
    ap.add_argument("--task", default="derain")
    ap.add_argument("--backend", default="openvino")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    import av

    with av.open(args.clip) as c:
        frames = sum(1 for _ in c.decode(video=0))
    env = f'eval "$("{sys.executable}" -m streamgan gst-env)"'
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4"
        cli = [sys.executable, "-m", "streamgan", args.task, args.clip, "-o", str(out), "-y",
               "-q", "--backend", args.backend, "--preset", "veryfast"]
        gst = ["bash", "-c", f"{env} && exec gst-launch-1.0 -q filesrc location={args.clip} ! "
               f"decodebin ! videoconvert ! streamgan task={args.task} backend={args.backend} "
               f"! videoconvert ! x264enc speed-preset=veryfast ! mp4mux ! "
               f"filesink location={out}"]
        timed(gst)  # the element's first load builds GStreamer's registry: not counted
        cli_s, gst_s = [], []
        for _ in range(args.runs):
            cli_s.append(timed(cli))
            gst_s.append(timed(gst))
    c, g = statistics.median(cli_s), statistics.median(gst_s)
    print(f"{frames} frames of {Path(args.clip).name}, {args.task} on {args.backend}, "
          f"median of {args.runs} alternated runs")
    print(f"command line      {c:6.2f} s  {frames / c:6.1f} fps")
    print(f"GStreamer element {g:6.2f} s  {frames / g:6.1f} fps")
    print(f"element / command line: {c / g:.2f}x the command line's fps")


if __name__ == "__main__":
    main()
