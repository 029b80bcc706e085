"""Synthesisers that turn clean day frames into (clean, degraded) training pairs, on the fly.

Both work on float tensors NCHW RGB in [0, 1] and draw every random number from the ``torch.Generator``
they are given, so the same seed gives the same output bit for bit (on one device).

* :func:`add_rain`  - rain streak layers at several depths (random density, angle, length, width, blur and
  brightness; additive, the way Rain12/Rain100L are made, sometimes screen-blended), a veil of haze, and
  drops on the windshield.
* :func:`make_night` - exposure and gamma in linear light, colour temperature, a darker sky, glows around
  light sources (street lamps, head and tail lights) and sensor noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _u(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0.05:
        return x
    r = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def line_kernel(length: float, angle_deg: float, device=None) -> torch.Tensor:
    """A 1-pixel anti-aliased line of the given length; angle measured from vertical (positive leans right)."""
    size = int(math.ceil(length)) | 1
    k = torch.zeros(size, size, device=device)
    c = (size - 1) / 2
    a = math.radians(angle_deg)
    n = max(2, int(length * 3))
    for i in range(n):
        t = (i / (n - 1) - 0.5) * (length - 1)
        x, y = c + t * math.sin(a), c + t * math.cos(a)
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            if 0 <= x0 + dx < size and 0 <= y0 + dy < size:
                k[y0 + dy, x0 + dx] += wgt
    return k / k.max()


def streak_layer(h: int, w: int, gen: torch.Generator, density: float, angle: float, length: float,
                 width: float, blur: float, brightness: float, device=None) -> torch.Tensor:
    """One depth of rain: sparse seeds smeared along the fall direction. Returns 1x1xHxW in [0, ~1].

    ``gen`` draws the seed positions (for video: a new generator per frame, same rain parameters)."""
    seeds = (torch.rand(1, 1, h, w, generator=gen) < density).float()
    seeds = seeds * (0.4 + 0.6 * torch.rand(1, 1, h, w, generator=gen))
    seeds = seeds.to(device)
    k = line_kernel(length, angle, device)
    p = k.shape[-1] // 2
    layer = F.conv2d(F.pad(seeds, (p, p, p, p)), k.view(1, 1, *k.shape))
    if width > 1.0:  # thicker streaks: spread across the fall direction
        layer = _gauss_blur(layer, (width - 1.0) * 0.6) * width
    layer = _gauss_blur(layer, blur)
    return (layer * brightness).clamp(0, 1)


def rain_streaks(h: int, w: int, gen: torch.Generator, device=None, heavy: bool = False,
                 noise_gen: torch.Generator | None = None) -> torch.Tensor:
    """Several streak layers (far: dense, short, thin, dim; near: sparse, long, wide, bright).

    ``gen`` draws the rain's parameters; ``noise_gen`` (default: ``gen``) where the streaks fall."""
    angle = _u(gen, -25, 25)
    n_layers = int(torch.randint(1, 4, (), generator=gen))
    scale = min(h, w) / 320.0
    rain = torch.zeros(1, 1, h, w, device=device)
    for i in range(n_layers):
        depth = i / max(1, n_layers - 1) if n_layers > 1 else _u(gen, 0, 1)  # 0 far .. 1 near
        density = _u(gen, 0.0006, 0.004) * (1.6 - depth) * (3.0 if heavy else 1.0)
        length = _u(gen, 8, 22) * (1 + 1.5 * depth) * max(0.5, scale)
        width = _u(gen, 1.0, 1.6) + 1.2 * depth * _u(gen, 0, 1)
        blur = _u(gen, 0.0, 0.6) + 0.6 * depth * _u(gen, 0, 1)
        bright = _u(gen, 0.1, 0.35) * (0.6 + 0.6 * depth)
        rain = rain + streak_layer(h, w, noise_gen or gen, density, angle + _u(gen, -4, 4), length, width, blur, bright, device)
    return rain.clamp(0, 1)


def windshield_drops(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blurry, refracting drops on the glass (img: 1x3xHxW in [0, 1])."""
    _, _, h, w = img.shape
    n = int(torch.randint(5, 40, (), generator=gen))
    yy = torch.arange(h, device=img.device).view(h, 1).float()
    xx = torch.arange(w, device=img.device).view(1, w).float()
    alpha = torch.zeros(h, w, device=img.device)
    for _ in range(n):
        cy, cx = _u(gen, 0, h), _u(gen, 0, w)
        r = _u(gen, 2, 6) * min(h, w) / 128
        ry = r * _u(gen, 0.8, 1.4)
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / r) ** 2
        alpha = torch.maximum(alpha, torch.sigmoid((1 - d) * 6))
    inside = _gauss_blur(img, min(h, w) / 40) * _u(gen, 0.85, 1.1) + _u(gen, 0.0, 0.08)
    a = alpha.view(1, 1, h, w) * _u(gen, 0.6, 1.0)
    return img * (1 - a) + inside.clamp(0, 1) * a


def add_rain(clean: torch.Tensor, gen: torch.Generator, p_streaks_only: float = 0.7,
             p_veil: float = 0.25, p_drops: float = 0.3, noise_gen: torch.Generator | None = None) -> torch.Tensor:
    """Rainy version of ``clean`` (NCHW in [0, 1]). Each image gets its own random rain.

    For video, pass a generator seeded the same for every frame as ``gen`` (same rain, same drops on the
    glass) and a per-frame generator as ``noise_gen`` (the streaks move)."""
    out = []
    for img in clean.split(1):
        _, _, h, w = img.shape
        simple = _u(gen, 0, 1) < p_streaks_only
        rain = rain_streaks(h, w, gen, img.device, heavy=not simple and _u(gen, 0, 1) < 0.5, noise_gen=noise_gen)
        if simple:  # Rain12 / Rain100L style: additive achromatic streaks
            y = img + rain
        else:
            y = img
            if _u(gen, 0, 1) < p_veil:  # haze veil, denser towards the top of the frame
                t = _u(gen, 0.05, 0.25)
                ramp = torch.linspace(1.0, _u(gen, 0.3, 1.0), h, device=img.device).view(1, 1, h, 1)
                y = y * (1 - t * ramp) + _u(gen, 0.6, 0.95) * t * ramp
            y = 1 - (1 - y) * (1 - rain) if _u(gen, 0, 1) < 0.5 else y + rain
            if _u(gen, 0, 1) < p_drops:
                y = windshield_drops(y.clamp(0, 1), gen)
        out.append(y.clamp(0, 1))
    return torch.cat(out)


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


def _glows(h: int, w: int, gen: torch.Generator, device) -> torch.Tensor:
    """Light sources with halos: lamps above the road, head/tail lights near the horizon. 1x3xHxW linear."""
    yy = torch.arange(h, device=device).view(h, 1).float()
    xx = torch.arange(w, device=device).view(1, w).float()
    light = torch.zeros(1, 3, h, w, device=device)
    colours = [(1.0, 0.75, 0.4), (1.0, 0.95, 0.85), (1.0, 0.15, 0.1), (0.85, 0.9, 1.0)]
    s = min(h, w)
    for _ in range(int(torch.randint(2, 14, (), generator=gen))):
        kind = int(torch.randint(0, 4, (), generator=gen))
        cy = _u(gen, 0.15, 0.45) * h if kind in (0, 3) else _u(gen, 0.45, 0.7) * h
        cx = _u(gen, 0, w)
        core = _u(gen, 0.004, 0.015) * s
        halo = core * _u(gen, 3, 8)
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        g = 4.0 * torch.exp(-d2 / (2 * core ** 2)) + _u(gen, 0.05, 0.25) * torch.exp(-d2 / (2 * halo ** 2))
        c = torch.tensor(colours[kind], device=device).view(1, 3, 1, 1)
        light = light + g.view(1, 1, h, w) * c * _u(gen, 0.3, 1.0)
    return light


def make_night(day: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Night version of ``day`` (NCHW in [0, 1])."""
    out = []
    for img in day.split(1):
        _, _, h, w = img.shape
        lin = srgb_to_linear(img)
        # darker sky: bright, bluish-or-grey regions in the upper part of the frame
        lum = (0.2126 * lin[:, 0] + 0.7152 * lin[:, 1] + 0.0722 * lin[:, 2]).unsqueeze(1)
        top = torch.linspace(1, 0, h, device=img.device).clamp(0, 1).view(1, 1, h, 1) ** 0.7
        sky = _gauss_blur(((lum - 0.25) * 4).clamp(0, 1) * top, min(h, w) / 60)
        lin = lin * (1 - sky * _u(gen, 0.6, 0.95))
        lin = lin * _u(gen, 0.03, 0.1)  # exposure
        # own headlights: a brighter pool of light on the road ahead (lower middle of the frame)
        yy = torch.linspace(0, 1, h, device=img.device).view(1, 1, h, 1)
        xx = torch.linspace(-1, 1, w, device=img.device).view(1, 1, 1, w)
        cone = torch.exp(-((yy - 1.0) / 0.35) ** 2 - (xx / 0.45) ** 2)
        lin = lin * (1 + _u(gen, 0.0, 4.0) * cone)
        temp = [(1.05, 0.95, 0.75), (0.8, 0.9, 1.15), (1.0, 0.9, 0.8), (0.9, 0.95, 1.0)][int(torch.randint(0, 4, (), generator=gen))]
        lin = lin * torch.tensor(temp, device=img.device).view(1, 3, 1, 1)
        lin = lin + _glows(h, w, gen, img.device) * _u(gen, 0.1, 0.5)
        y = linear_to_srgb(lin)
        y = y.clamp(0, 1) ** _u(gen, 0.9, 1.15)
        sigma = _u(gen, 0.002, 0.015)
        noise = torch.randn(img.shape, generator=gen).to(img.device)
        y = y + noise * sigma * (0.3 + y.sqrt())
        out.append(y.clamp(0, 1))
    return torch.cat(out)


def darken_filter(day: torch.Tensor) -> torch.Tensor:
    """The hand-made baseline for day-to-night: darken in linear light, cool tint, gamma (no learning)."""
    lin = srgb_to_linear(day) * 0.06 * torch.tensor((0.85, 0.9, 1.1), device=day.device).view(1, 3, 1, 1)
    return linear_to_srgb(lin)


SYNTHS = {"rain": add_rain, "night": make_night}
