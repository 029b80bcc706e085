"""Night synthesis for training day2night: (day, night) pairs made on the fly from day frames.

Float tensors NCHW RGB in [0, 1]; every random number comes from the ``torch.Generator`` given, so the same
seed gives the same output bit for bit (on one device). Rain synthesis is :mod:`trainer.rain`; the light
renderer that ships inside the day2night graph is :mod:`trainer.lights` (whose detectors this uses).

* :func:`make_night` - exposure and gamma in linear light, colour temperature, a darker sky, glows around
  the light sources the day frame shows (tail lights, lamp heads on poles, window panes) and sensor noise.
* :func:`darken_filter` - the hand-made baseline.
"""

from __future__ import annotations

import torch

from .imaging import _u, linear_to_srgb, srgb_to_linear
from .lights import (_fade_colour, _glows, _headlight_pool, _horizon, _light_strength, _light_up, _night_sky,
                     _sky_texture, _windows)


def make_night(day: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Night version of ``day`` (NCHW in [0, 1]): a dark sky, low exposure and saturation, own headlights,
    street lamps with light pools, vehicle lights, traffic lights, lit windows, reflections on wet
    asphalt, and a night camera's gain noise."""
    def pick(lo: float, hi: float) -> float:
        return _u(gen, lo, hi)

    out = []
    for img in day.split(1):
        _, _, h, w = img.shape
        lin = srgb_to_linear(img)
        raw_sky, sky = _night_sky(lin, h, w)
        windows = _windows(img, pick, sky)
        # no daylight in the sky: a dark, flat night sky at a night camera's level, a little lighter towards
        # the horizon
        sky_col = torch.tensor([_u(gen, 0.6, 1.0), _u(gen, 0.5, 0.8), _u(gen, 0.5, 1.0)], device=img.device).view(1, 3, 1, 1)
        exposure = _u(gen, 0.045, 0.15)
        sky_lin = sky_col * _horizon(h, img.device) * _sky_texture(lin, sky) * _u(gen, 0.012, 0.028) / exposure
        lin = lin * (1 - sky) + sky * sky_lin
        lin = _fade_colour(lin, _u(gen, 0.35, 0.7))
        lin = lin * exposure
        lin = lin * (1 + _u(gen, 0.0, 4.0) * _headlight_pool(h, w, img.device))
        temp = [(1.05, 0.95, 0.75), (0.8, 0.9, 1.15), (1.0, 0.9, 0.8), (0.9, 0.95, 1.0)][int(torch.randint(0, 4, (), generator=gen))]
        lin = lin * torch.tensor(temp, device=img.device).view(1, 3, 1, 1)
        light, ground = _glows(img, raw_sky, pick)
        lin = _light_up(lin, img, _light_strength(light, pick), ground, pick) + windows
        y = linear_to_srgb(lin)
        y = y.clamp(0, 1) ** _u(gen, 0.9, 1.15)
        sigma = _u(gen, 0.004, 0.02)  # gain noise, stronger in the dark, some of it in colour
        noise = torch.randn(img.shape, generator=gen).to(img.device)
        mono = torch.randn(1, 1, h, w, generator=gen).to(img.device)
        y = y + (0.6 * mono + 0.4 * noise) * sigma * (0.5 + y.sqrt())
        out.append(y.clamp(0, 1))
    return torch.cat(out)


def darken_filter(day: torch.Tensor) -> torch.Tensor:
    """The hand-made baseline for day-to-night: darken in linear light, cool tint, gamma (no learning)."""
    lin = srgb_to_linear(day) * 0.06 * torch.tensor((0.85, 0.9, 1.1), device=day.device).view(1, 3, 1, 1)
    return linear_to_srgb(lin)


def night_pair(day: torch.Tensor, gen: torch.Generator, **_) -> tuple[torch.Tensor, torch.Tensor]:
    """(day input, synthetic night target)."""
    return day, make_night(day, gen)
