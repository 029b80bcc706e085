"""What dashcams burn into their frames: a date and time, a speed, coordinates, a camera name.

A burnt-in overlay stays where it is while the scene moves behind it, as a drop on the glass does, so a
model that finds drops by what stays takes it for one and fills it from around (the speed gone, the
digits half erased). Training clips get overlays on the rainy clip and its target alike, and no drop
under them, so the drop finder learns to leave sharp text alone. Text is drawn with Pillow's own
font (no system fonts needed), white or yellow, outlined, shadowed or on a dark box, near an edge
or anywhere, its seconds ticking over the clip.
"""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw, ImageFont

from .imaging import _u

_FORMATS = ("{Y}/{M}/{D} {h}:{m}:{s}", "{D}-{M}-{Y} {h}:{m}:{s}", "{Y}-{M}-{D}  {h}:{m}:{s}  {v} km/h",
            "{v} km/h", "{v} MPH", "N{la} E{lo}", "CAM{c}  {h}:{m}:{s}", "{M}/{D}/{Y} {h}:{m}:{s} {ap}")


def _text(second: int, fmt: str, base: dict) -> str:
    s = base["s"] + second
    return fmt.format(**{**base, "s": f"{s % 60:02d}", "m": f"{(base['m'] + s // 60) % 60:02d}"})


def stamp(clips: tuple[torch.Tensor, ...], gen: torch.Generator) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """``clips`` (each T x 3 x H x W in [0, 1]: a rainy clip and its target) with one overlay burnt in at the
    same place on every frame of each, its seconds counting up every few frames; and where it covers
    (1 x 1 x H x W in [0, 1], the text's coverage over the clip)."""
    t, _, h, w = clips[0].shape
    r = lambda lo, hi: int(torch.randint(lo, hi + 1, (), generator=gen))  # noqa: E731
    fmt = _FORMATS[r(0, len(_FORMATS) - 1)]
    base = {"Y": r(2015, 2030), "M": f"{r(1, 12):02d}", "D": f"{r(1, 28):02d}", "h": f"{r(0, 23):02d}",
            "m": r(0, 59), "s": r(0, 59), "v": r(0, 130), "la": f"{_u(gen, 0, 80):.5f}",
            "lo": f"{_u(gen, 0, 170):.5f}", "c": r(1, 4), "ap": "AM" if r(0, 1) else "PM"}
    size = max(7, int(h * _u(gen, 0.06, 0.15)))
    font = ImageFont.load_default(size=size)
    tick = r(2, 8)  # frames a second lasts here (clips are short)
    colour = (255, 255, 255) if _u(gen, 0, 1) < 0.7 else (255, 230, r(0, 90))
    style = ("outline", "shadow", "box", "plain")[min(3, int(_u(gen, 0, 4)))]
    x0, y0, x1, y1 = font.getbbox(_text(0, fmt, base))
    tw, th = x1 - x0, y1 - y0
    near_edge = _u(gen, 0, 1) < 0.7
    x = r(-tw // 3, max(-tw // 3, w - tw * 2 // 3))
    y = (r(1, max(1, h // 8)) if r(0, 1) else r(h - th - max(1, h // 8), max(h - th - max(1, h // 8), h - th - 1))) \
        if near_edge else r(0, max(0, h - th - 1))
    frames, covers = [[] for _ in clips], torch.zeros(1, 1, h, w)
    for k in range(t):
        layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        d = ImageDraw.Draw(layer)
        text = _text(k // tick, fmt, base)
        if style == "box":
            d.rectangle((x - 2, y + y0 - 2, x + tw + 2, y + y1 + 2), fill=(0, 0, 0, 150))
        if style == "shadow":
            d.text((x + 1, y + 1), text, font=font, fill=(0, 0, 0, 255))
        d.text((x, y), text, font=font, fill=(*colour, 255),
               **({"stroke_width": 1, "stroke_fill": (0, 0, 0, 255)} if style == "outline" else {}))
        a = torch.frombuffer(bytearray(layer.tobytes()), dtype=torch.uint8).view(h, w, 4).permute(2, 0, 1).float() / 255
        alpha = a[3:4]
        for out, clip in zip(frames, clips):
            out.append(clip[k] * (1 - alpha) + a[:3] * alpha)
        covers = torch.maximum(covers, alpha[None])
    return tuple(torch.stack(f) for f in frames), covers
