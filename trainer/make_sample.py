"""Make ``samples/rainy_dashcam.mp4`` (the MIT-licensed Udacity lane-lines clip with synthetic rain) and
the contact sheet of synthetic rain beside real rain (``docs/rain_synth_vs_real.png``).

Reproducible: the rain's parameters (and the drops on the glass) come from one seed, the streak positions
from a per-frame seed, so the same command gives the same frames (the H.264 bytes may differ between
libx264 builds).

    python -m trainer.make_sample            # or: streamgan-train sample [--sheet docs/rain_synth_vs_real.png]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .options import USER_ERRORS
from .quiet import add_debug_flag, configure


def _data() -> str:
    return os.environ.get("STREAMGAN_DATA", "../shared/data")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``streamgan-train sample`` (also ``python -m trainer.make_sample``)."""
    p.add_argument("--src", default=os.path.join(_data(), "clips/udacity_lanelines_solidWhiteRight.mp4"))
    p.add_argument("--out", default="samples/rainy_dashcam.mp4")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--sheet", default=None, help="also write synthetic-beside-real rain to this PNG")


def run(args: argparse.Namespace) -> int:
    print(make_sample(args.src, args.out, args.seconds, args.seed))
    if args.sheet:
        print(synth_sheet(_data(), args.sheet))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="streamgan-train sample")
    add_arguments(p)
    add_debug_flag(p)
    args = p.parse_args(argv)
    configure(args.debug)
    try:
        return run(args)
    except USER_ERRORS as e:
        print(f"streamgan-train: error: {e}", file=sys.stderr)
        return 2


def make_sample(src: str, out: str, seconds: float = 4.0, seed: int = 3, size: tuple[int, int] = (640, 360),
                crf: int = 26) -> dict:
    import av
    import numpy as np
    import torch
    from PIL import Image

    from .rain import add_rain

    out_p = Path(out)
    out_p.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_p.with_name(out_p.name + ".streamgan-tmp.mp4")
    n = 0
    with av.open(src) as inp, av.open(str(tmp), "w") as dst:
        vin = inp.streams.video[0]
        rate = vin.average_rate or 25
        limit = int(round(float(rate) * seconds))
        vs = dst.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        vs.options = {"crf": str(crf), "preset": "medium"}
        for i, fr in enumerate(inp.decode(video=0)):
            if i >= limit:
                break
            img = np.asarray(Image.fromarray(fr.to_ndarray(format="rgb24")).resize(size, Image.BICUBIC))
            x = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None]
            y = add_rain(x, torch.Generator().manual_seed(seed), p_streaks_only=0.0, p_veil=1.0, p_drops=0.0,
                         p_wiper=0.0, noise_gen=torch.Generator().manual_seed(seed * 100_000 + i))
            arr = (y[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            for pkt in vs.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                dst.mux(pkt)
            n += 1
        for pkt in vs.encode():
            dst.mux(pkt)
    os.replace(tmp, out_p)
    return {"out": str(out_p), "frames": n, "bytes": out_p.stat().st_size, "seed": seed}


def synth_sheet(data: str, out: str, n: int = 6, width: int = 320) -> dict:
    """Real rainy frames (left) beside synthetic rain on real clear frames (right), ``n`` rows: the default
    draw, drops near the lens, and soft drops (:func:`trainer.rain.glass_drops` ``soft``)."""
    import numpy as np
    import torch
    from PIL import Image

    from .data import list_sources, read_image
    from .evaluate import _t, _u8, contact_sheet
    from .rain import rain_pair

    d = Path(data)
    folders = sorted(f for f in (d / "rain").iterdir() if f.is_dir())
    per = [list_sources([str(f)], field="rain") for f in folders]
    real, k = [], 0
    while len(real) < n * 2 and any(per):  # round robin over the folders: every kind of real rain shows
        if per[k % len(per)]:
            real.append(read_image(per[k % len(per)].pop(0 if k < len(per) else -1)))
        k += 1
    clear = [read_image(p) for p in list_sources([str(d / "day" / "udacity"), str(d / "day" / "deeptl_lanechange")],
                                                 field="day")]
    clear = [clear[i] for i in np.linspace(0, len(clear) - 1, n * 2).round().astype(int)]
    rows = []
    for k in range(n):
        synth = []
        for j in (2 * k, 2 * k + 1):
            x = _t(np.asarray(Image.fromarray(clear[j]).resize((640, 360), Image.BICUBIC)))
            near = {"p_drops": 1.0, "p_near_drops": 1.0} if j % 2 else {}  # right column: out-of-focus drops
            y, _ = rain_pair(x, torch.Generator().manual_seed(500 + j), p_streaks_only=0.0, **near)
            synth.append(_u8(y))
        # the second frame again, its drops all soft (glass before a lens focused on the street), with the rest of
        # the default draw (streaks, haze, spray, wiper, camera)
        y, _ = rain_pair(x, torch.Generator().manual_seed(700 + k), p_streaks_only=0.0, p_drops=1.0, p_soft_drops=1.0)
        synth.append(_u8(y))
        rows.append([real[2 * k], real[2 * k + 1], *synth])
    labels = ["real rain", "real rain", "synthetic (trainer/rain.py)", "synthetic, drops near the lens",
              "synthetic, soft drops"]
    return {"sheet": contact_sheet(rows, labels, Path(out), width=width)}


if __name__ == "__main__":
    sys.exit(main())
