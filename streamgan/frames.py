"""Frame geometry: processing resolution, padding to the model's multiple, and tiling.

``plan_size`` decides at which size the model sees a frame (the card's policy or the user's
``--size``). ``translate_batch`` runs a backend on a uint8 NHWC batch of any size: it pads each
side up to the model's size multiple (reflection, so borders stay natural) and crops back, and
frames larger than ``tile`` are cut into overlapping tiles whose outputs are blended with linear
ramps across the overlap, so no seam shows.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError


def _even(v: float) -> int:
    return max(2, int(round(v / 2)) * 2)


def plan_size(width: int, height: int, policy: str = "native", short_side: int | None = None,
              size: int | None = None) -> tuple[int, int]:
    """(w, h) the model runs at. ``size`` (the CLI's --size) is a short side and wins."""
    side = size if size is not None else (short_side if policy == "short_side" else None)
    if side is None:
        return width, height
    if side < 16:
        raise UsageError(f"processing size {side} is too small (at least 16)")
    short = min(width, height)
    if side >= short:  # never upscale the input just to run the model
        return width, height
    k = side / short
    return _even(width * k), _even(height * k)


def pad_to_multiple(batch: np.ndarray, multiple: int) -> tuple[np.ndarray, int, int]:
    n, h, w, c = batch.shape
    ph, pw = -h % multiple, -w % multiple
    if not ph and not pw:
        return batch, h, w
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(batch, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode), h, w


def _ramp(length: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    r = np.ones(length, np.float32)
    if overlap > 0:
        ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        if not first:
            r[:overlap] = ramp
        if not last:
            r[-overlap:] = ramp[::-1]
    return r


def _starts(total: int, tile: int, overlap: int) -> list[int]:
    if total <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, total - tile, step)) + [total - tile]
    return sorted(set(starts))


def backend_shapes(n: int, height: int, width: int, multiple: int = 4,
                   tile: int | None = None) -> list[tuple[int, int, int]]:
    """The (batch, height, width) shapes ``translate_batch`` hands ``run`` for n frames of
    height x width: padded up to ``multiple``, or whole tiles (padded) when tiling."""
    if tile is not None and not (height <= tile and width <= tile):
        tile = max(multiple, tile - tile % multiple)
        height, width = min(height, tile), min(width, tile)
    return [(n, height + (-height % multiple), width + (-width % multiple))]


def translate_batch(run, batch: np.ndarray, multiple: int = 4, tile: int | None = None,
                    overlap: int = 32) -> np.ndarray:
    """Apply ``run`` (uint8 NHWC -> uint8 NHWC, sizes a multiple of ``multiple``) to any batch."""
    n, h, w, _ = batch.shape
    if tile is None or (h <= tile and w <= tile):
        padded, h0, w0 = pad_to_multiple(batch, multiple)
        out = run(padded)
        return out if padded is batch else out[:, :h0, :w0]
    tile = max(multiple, tile - tile % multiple)
    overlap = min(overlap, tile // 2)
    acc = np.zeros((n, h, w, 3), np.float32)
    weight = np.zeros((h, w), np.float32)
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    for y in ys:
        for x in xs:
            part = batch[:, y: y + tile, x: x + tile]
            padded, th, tw = pad_to_multiple(part, multiple)
            res = run(np.ascontiguousarray(padded))[:, :th, :tw].astype(np.float32)
            wy = _ramp(th, overlap, y == ys[0], y == ys[-1])
            wx = _ramp(tw, overlap, x == xs[0], x == xs[-1])
            wgt = wy[:, None] * wx[None, :]
            acc[:, y: y + th, x: x + tw] += res * wgt[None, :, :, None]
            weight[y: y + th, x: x + tw] += wgt
    acc /= weight[None, :, :, None]
    return np.clip(np.rint(acc), 0, 255).astype(np.uint8)
