"""How far could "find the drops, fill them in from around them" go on the real drop sets?

    python benchmarks/derain_fill_ceiling.py [MODEL.onnx] [--out sheet.png]

An upper bound, not a method: the drops are found with the clean frame's help (an oracle no model has).
For each rainy frame of ``bench/RobotCarDrops`` and ``bench/RaindropGlass`` (evaluation sets: read here,
never trained on), the model's output is compared with the clean frame after the best gain and offset on
its luma; where they still differ by more than ``t`` (dilated by 2 pixels) the output is replaced by a
fill from the pixels around (push-pull: a pyramid of masked averages, coarse filling in what fine lacks).
Printed per set and threshold: the model, the model with the oracle fill, the share of the frame filled,
and the filled output colour-aligned to the clean frame (the fill plus a perfect exposure and colour
correction). With ``--out``, one RaindropGlass frame: rainy | model / filled | clean.

What it answers: whether a detect-and-fill stage (a mask head and an inpainting step in the graph) could
reach the issue's targets even with perfect detection, or whether the scene behind the drops has to be
reconstructed (learned from real pairs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainer import metrics as M
from trainer.data import read_image
from trainer.evaluate import OnnxRunner

BENCH = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bench"


def push_pull(x: torch.Tensor, known: torch.Tensor, levels: int = 7) -> torch.Tensor:
    """Fill ``x`` (NCHW) where ``known`` (Nx1xHxW in [0, 1]) is low from the known pixels around: masked
    averages down a pyramid, then back up, each level keeping its own average where it had enough known
    pixels and taking the coarser level's elsewhere."""
    xs, ws = [x * known], [known]
    for _ in range(levels):
        xs.append(F.avg_pool2d(xs[-1], 2, ceil_mode=True))
        ws.append(F.avg_pool2d(ws[-1], 2, ceil_mode=True))
    fill = xs[-1] / ws[-1].clamp_min(1e-4)
    for k in range(levels - 1, -1, -1):
        up = F.interpolate(fill, size=xs[k].shape[2:], mode="bilinear", align_corners=False)
        a = (ws[k] * 4).clamp(0, 1)
        fill = a * xs[k] / ws[k].clamp_min(1e-4) + (1 - a) * up
    return fill


def oracle_fill(out: np.ndarray, clean: np.ndarray, t: float) -> tuple[np.ndarray, float]:
    """``out`` with the places it differs from ``clean`` by more than ``t`` (luma, after the best gain
    and offset) filled from around them; and the share filled."""
    yo, yc = M.rgb_to_y(out), M.rgb_to_y(clean)
    fit = np.polyfit(yo.ravel(), yc.ravel(), 1)
    bad = torch.from_numpy((np.abs(np.polyval(fit, yo) - yc) > t).astype(np.float32))[None, None]
    bad = F.max_pool2d(bad, 5, stride=1, padding=2)
    x = torch.from_numpy(out.astype(np.float32)).permute(2, 0, 1)[None]
    y = (1 - bad) * x + bad * push_pull(x, 1 - bad)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).numpy().astype(np.uint8), float(bad.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", default="plugins/derain/model.onnx")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    ap.add_argument("--out", help="write a picture of one RaindropGlass frame here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = OnnxRunner(args.model)
    print(f"{'set':14} {'t':>4} {'input':>6} {'model':>6} {'filled':>6} {'share':>6} {'filled+aligned':>15}")
    for name in ("RobotCarDrops", "RaindropGlass"):
        folder = BENCH / name
        pairs = [(read_image(f), read_image(folder / "clean" / f.name)) for f in sorted((folder / "rainy").glob("*.png"))]
        outs = [run(a) for a, _ in pairs]
        for t in args.thresholds:
            rows = []
            for (a, b), o in zip(pairs, outs):
                filled, share = oracle_fill(o, b, t)
                rows.append((M.psnr_y(a, b), M.psnr_y(o, b), M.psnr_y(filled, b), share,
                             M.psnr_y_colour_aligned(filled, b)))
            m = np.mean(rows, axis=0)
            print(f"{name:14} {t:4.2f} {m[0]:6.2f} {m[1]:6.2f} {m[2]:6.2f} {m[3]:6.2f} {m[4]:15.2f}", flush=True)
        if args.out and name == "RaindropGlass":
            (a, b), o = pairs[1], outs[1]
            filled, _ = oracle_fill(o, b, args.thresholds[len(args.thresholds) // 2])
            from PIL import Image

            sheet = np.concatenate([np.concatenate([a, o], 1), np.concatenate([filled, b], 1)], 0)
            Image.fromarray(sheet).save(args.out)
            print("wrote", args.out)


if __name__ == "__main__":
    main()
