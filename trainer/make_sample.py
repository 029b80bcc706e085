"""Make ``samples/rainy_dashcam.mp4``: the MIT-licensed Udacity lane-lines clip with synthetic rain.

Reproducible: the rain's parameters (and the drops on the glass) come from one seed, the streak positions
from a per-frame seed, so the same command gives the same frames (the H.264 bytes may differ between
libx264 builds).

    python -m trainer.make_sample            # or: streamgan-train sample
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .synth import add_rain


def make_sample(src: str, out: str, seconds: float = 4.0, seed: int = 3, size: tuple[int, int] = (640, 360),
                crf: int = 26) -> dict:
    import av
    from PIL import Image

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
                         noise_gen=torch.Generator().manual_seed(seed * 100_000 + i))
            arr = (y[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            for pkt in vs.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                dst.mux(pkt)
            n += 1
        for pkt in vs.encode():
            dst.mux(pkt)
    os.replace(tmp, out_p)
    return {"out": str(out_p), "frames": n, "bytes": out_p.stat().st_size, "seed": seed}


if __name__ == "__main__":
    import sys

    from .cli import main

    sys.exit(main(["sample", *sys.argv[1:]]))
