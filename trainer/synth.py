"""Synthesisers that turn clean day frames into (clean, degraded) training pairs, on the fly.

Both work on float tensors NCHW RGB in [0, 1] and draw every random number from the ``torch.Generator``
they are given, so the same seed gives the same output bit for bit (on one device).

* :func:`rain_pair` - (rainy, clean) pairs: rain streak layers at several depths (random density, angle,
  length, width, blur and brightness; additive as in Rain12/Rain100L, or screen-blended), haze that grows
  with depth, spray, drops on the glass rendered as small lenses (:func:`glass_drops`: refracted,
  flipped, minified view of the scene, dark rim, highlight, in or out of focus, clusters and trails), a
  partial wiper sweep, and the camera after the glass (defocus, sensor noise, JPEG at dashcam quality).
* :func:`make_night` - exposure and gamma in linear light, colour temperature, a darker sky, glows around
  the light sources the day frame shows (tail lights, lamp heads on poles, window panes) and sensor noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from streamgan.engines.openvino import WIDE_ROW


def _u(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _gauss_blur(x: torch.Tensor, sigma: float, zeros: bool = False) -> torch.Tensor:
    """Separable Gaussian blur; beyond the frame the edge repeats, or is 0 with ``zeros`` (for light
    halos and masks: fewer operations in an exported graph)."""
    if sigma <= 0.05:
        return x
    r = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = int(x.shape[1])
    down = k.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    if zeros:
        return F.conv2d(_blur_rows(x, down, r), down, padding=(r, 0), groups=c)
    x = _blur_rows(F.pad(x, (r, r, 0, 0), mode="replicate"), down, 0)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), down, groups=c)


def _blur_rows(x: torch.Tensor, down: torch.Tensor, pad: int) -> torch.Tensor:
    """Blur along rows with the column kernel ``down`` (C x 1 x K x 1), zero-padded by ``pad``. Rows of
    ``WIDE_ROW`` or more are blurred as the columns of the transposed image (the same numbers): exported as
    1xK depthwise convolutions, OpenVINO's bf16/fp16 CPU compile may never end
    (:func:`streamgan.engines.openvino.wide_row_convolutions`)."""
    c, k = int(down.shape[0]), int(down.shape[2])
    if k < WIDE_ROW:
        return F.conv2d(x, down.transpose(2, 3), padding=(0, pad), groups=c)
    return F.conv2d(x.transpose(2, 3), down, padding=(pad, 0), groups=c).transpose(2, 3)


def _wide_blur(x: torch.Tensor, sigma: float, zeros: bool = True, min_sigma: float = 2) -> torch.Tensor:
    """:func:`_gauss_blur` for wide halos and pools, computed at a reduced size when ``sigma`` is large
    (the result is smooth; a fraction of the cost): reduced while the blur there stays at least
    ``min_sigma`` pixels wide. Beyond the frame: 0, or the edge repeated."""
    f = 1
    while sigma / (2 * f) >= min_sigma and f < 8:
        f *= 2
    if f == 1:
        return _gauss_blur(x, sigma, zeros=zeros)
    small = _gauss_blur(F.avg_pool2d(x, f, ceil_mode=True), sigma / f, zeros=zeros)
    return F.interpolate(small, size=x.shape[2:], mode="bilinear", align_corners=False)


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
                 noise_gen: torch.Generator | None = None, fine: float = 1.0) -> torch.Tensor:
    """Several streak layers (far: dense, short, thin, dim; near: sparse, long, wide, bright).

    ``gen`` draws the rain's parameters; ``noise_gen`` (default: ``gen``) where the streaks fall. ``fine`` > 1
    renders the rain ``fine`` times larger and shrinks it to the frame: the same rain seen from further
    away or by a smaller sensor, as many streaks per area and as long, but ``fine`` times thinner, so
    fainter (about 1/``fine`` of the light; Rain12's streaks at 480x320). Without ``noise_gen`` the larger
    canvas draws more seed positions from ``gen``, so the later layers' parameters differ too."""
    scale = max(0.5, min(h, w) / 320.0)
    if fine <= 1.0:
        return _streak_layers(h, w, gen, device, heavy, noise_gen, scale, 1.0)
    big = _streak_layers(round(h * fine), round(w * fine), gen, device, heavy, noise_gen, scale * fine, fine ** -2)
    return F.interpolate(big, size=(h, w), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def _streak_layers(h: int, w: int, gen: torch.Generator, device, heavy: bool, noise_gen, scale: float,
                   per_px: float) -> torch.Tensor:
    """:func:`rain_streaks` at ``h`` x ``w``: lengths times ``scale``, seed density times ``per_px``."""
    angle = _u(gen, -25, 25)
    n_layers = int(torch.randint(1, 4, (), generator=gen))
    rain = torch.zeros(1, 1, h, w, device=device)
    for i in range(n_layers):
        depth = i / max(1, n_layers - 1) if n_layers > 1 else _u(gen, 0, 1)  # 0 far .. 1 near
        density = _u(gen, 0.0006, 0.004) * (1.6 - depth) * (3.0 if heavy else 1.0) * per_px
        length = _u(gen, 8, 22) * (1 + 1.5 * depth) * scale
        width = _u(gen, 1.0, 1.6) + 1.2 * depth * _u(gen, 0, 1)
        blur = _u(gen, 0.0, 0.6) + 0.6 * depth * _u(gen, 0, 1)
        bright = _u(gen, 0.1, 0.35) * (0.6 + 0.6 * depth)
        rain = rain + streak_layer(h, w, noise_gen or gen, density, angle + _u(gen, -4, 4), length, width, blur, bright, device)
    return rain.clamp(0, 1)


def _power(gen: torch.Generator, lo: float, hi: float, a: float = 2.0) -> float:
    """A draw in [lo, hi] skewed towards lo (many small, few large), density ~ x**-a."""
    u = float(torch.rand((), generator=gen))
    b = 1.0 - a
    return (lo ** b + u * (hi ** b - lo ** b)) ** (1.0 / b)


def _drop_field(h: int, w: int, gen: torch.Generator, n: int, r_lo: float, r_hi: float, device=None):
    """Place ``n`` drops (:func:`_place_drops`) and render them (:func:`_drop_maps`)."""
    return _drop_maps(_place_drops(h, w, gen, n, r_lo, r_hi).to(device), h, w)


def _place_drops(h: int, w: int, gen: torch.Generator, n: int, r_lo: float, r_hi: float) -> torch.Tensor:
    """Round and elongated drops, clusters and running trails (a chain of smaller drops above a larger one):
    one row per drop, (centre y, centre x, radius x, radius y, tilt)."""
    n_clusters = int(torch.randint(0, 4, (), generator=gen))
    centres = [(_u(gen, 0, h), _u(gen, 0, w), _u(gen, 0.05, 0.25) * min(h, w)) for _ in range(n_clusters)]
    drops = []
    for _ in range(n):
        if centres and _u(gen, 0, 1) < 0.5:
            cy0, cx0, spread = centres[int(torch.randint(len(centres), (), generator=gen))]
            cy = cy0 + float(torch.randn((), generator=gen)) * spread
            cx = cx0 + float(torch.randn((), generator=gen)) * spread
        else:
            cy, cx = _u(gen, 0, h), _u(gen, 0, w)
        r = _power(gen, r_lo, r_hi)
        elong = _u(gen, 1.0, 1.3) if _u(gen, 0, 1) < 0.8 else _u(gen, 1.3, 2.5)  # taller than wide: running
        drops.append((cy, cx, r, r * elong, _u(gen, -0.3, 0.3)))
        if r > 0.5 * r_hi and _u(gen, 0, 1) < 0.3:  # the trail a running drop leaves above it
            ty, tr = cy, r
            for _ in range(int(torch.randint(3, 10, (), generator=gen))):
                tr *= _u(gen, 0.45, 0.8)
                ty -= r * _u(gen, 0.8, 1.8)
                if tr < 0.8:
                    break
                drops.append((ty, cx + _u(gen, -0.3, 0.3) * r, tr, tr * _u(gen, 1.0, 1.6), 0.0))
    return torch.tensor(drops)


def _drop_maps(d: torch.Tensor, h: int, w: int):
    """Per pixel, keep the drop whose surface is highest there (drops merge). Returns 1x1xHxW maps: ``hgt``
    (the dome of the drop on top, 0 outside any drop), ``ox``/``oy`` (offset from that drop's centre in
    units of its radii) and ``rad`` (its radius in pixels)."""
    device = d.device
    # each drop is evaluated in a window around it, not over the whole frame: drops of similar size share
    # one window size (powers of two), so a covered windshield of small drops stays cheap
    ext = (torch.maximum(d[:, 3], d[:, 2] + d[:, 4].abs() * d[:, 3]).ceil() + 1).clamp_min(2)
    bucket = torch.exp2(torch.log2(ext).ceil()).long()
    parts = []
    for e in bucket.unique().tolist():
        cy, cx, rx, ry, tilt = (t.view(-1, 1, 1) for t in d[bucket == e].unbind(1))
        offs = torch.arange(-e, e + 1, device=device)
        py = cy.round().long() + offs.view(1, -1, 1)
        px = cx.round().long() + offs.view(1, 1, -1)
        dy = ((py - cy) / ry).expand(-1, -1, 2 * e + 1)
        dx = (px - cx + tilt * (py - cy)) / rx
        top = 1 - dx * dx - dy * dy  # the dome's square: monotonic, no sqrt per drop
        keep = (top > 0) & (py >= 0) & (py < h) & (px >= 0) & (px < w)
        rad = ((rx + ry) / 2).expand_as(top)
        parts.append(((py * w + px).expand_as(top)[keep], torch.stack([top[keep], dx[keep], dy[keep], rad[keep]])))
    idx = torch.cat([p[0] for p in parts])
    top, dx, dy, rad = torch.cat([p[1] for p in parts], 1)
    hgt = torch.zeros(h * w, device=device).scatter_reduce(0, idx, top, "amax")  # the drop on top wins
    win = top == hgt[idx]
    ox, oy, rd = (torch.zeros(h * w, device=device).index_put((idx[win],), v[win]) for v in (dx, dy, rad))
    hgt, ox, oy, rad = (t.view(h, w) for t in (hgt, ox, oy, rd))
    hgt = hgt.clamp_min(0).sqrt()
    v = lambda t: t.view(1, 1, h, w)  # noqa: E731
    return v(hgt), v(ox), v(oy), v(rad)


def glass_drops(img: torch.Tensor, gen: torch.Generator, density: float | None = None,
                near: bool = False, lens: bool = False, dense: bool = False, soft: bool = False) -> torch.Tensor:
    """Water drops on the windshield or lens (img: 1x3xHxW in [0, 1]), each a small lens.

    A drop refracts a flipped, minified, blurred view of the scene around it (it sees a wider field than
    its own footprint), is darker at its rim (light refracted away) and carries a small bright highlight
    (a reflection). The glass is nearer than the scene, so drops are in or out of focus: out-of-focus
    drops are soft blobs. ``density`` in [0, 1]: 0 a few drops, 1 a covered windshield (random if None).
    ``dense``: a windshield covered with drops of similar size, 1-7% of the short side (the Raindrop
    pictures), at a density of at least one half; otherwise most drops are specks of a pixel or two.
    ``near``: glass a few centimetres from the lens (:func:`near_drops`). ``lens``: drops on the lens or
    its cover itself (RobotCar style): large (up to a quarter of the short side), many, each still a lens
    that shows the scene around it flipped, with its rim and highlight, all moderately out of focus.
    ``soft``: glass a few centimetres in front of a lens focused on the street (the Raindrop pictures):
    radii from 1% of the short side to 3-6%, many drops, translucent, each a blurred and brightened flipped
    view of the scene with a faint rim, the whole of them out of focus by 0.2-0.6% of the short side (their
    highlight blurred with them). At most one of ``near``, ``lens``, ``dense`` and ``soft``."""
    if near + lens + dense + soft > 1:
        raise ValueError("glass_drops: one kind of drop at a time (near, lens, dense or soft)")
    _, _, h, w = img.shape
    s = min(h, w)
    dens = _u(gen, 0, 1) ** 2 if density is None else density
    if near:
        return near_drops(img, gen, dens)
    if lens:
        r_lo, r_hi = s * 0.03, s * _u(gen, 0.1, 0.25)
        dens = 0.4 + 0.6 * dens
    elif dense:
        r_lo, r_hi = s * 0.012, s * _u(gen, 0.03, 0.07)
        dens = 0.5 + 0.5 * dens
    elif soft:
        r_lo, r_hi = s * 0.01, s * _u(gen, 0.03, 0.06)
        dens = 0.3 + 0.7 * dens
    else:
        r_lo, r_hi = max(1.0, s * 0.006), s * _u(gen, 0.02, 0.09)
    mean_area = 3.14 * r_lo * r_hi * 1.3
    n = int(3 + dens * _u(gen, 0.3, 0.9) * h * w / mean_area)
    n = min(n, 400)
    hgt, ox, oy, rad = _drop_field(h, w, gen, n, r_lo, r_hi, img.device)
    inside = (hgt > 0).float()
    # refraction: the drop shows the scene mirrored through its centre, magnified field of view
    zoom = _u(gen, 1.5, 4.0)
    yy = torch.arange(h, device=img.device).view(1, 1, h, 1).float()
    xx = torch.arange(w, device=img.device).view(1, 1, 1, w).float()
    sy = yy - oy * rad * (1 + zoom)
    sx = xx - ox * rad * (1 + zoom)
    grid = torch.stack([(sx[:, 0] + 0.5) / w * 2 - 1, (sy[:, 0] + 0.5) / h * 2 - 1], -1)
    scene = _gauss_blur(img, _u(gen, 0.5, 2.5) * s / 360)
    view = F.grid_sample(scene, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if soft:  # a blurred, brighter view, a faint rim
        view = _gauss_blur(view, _u(gen, 0.002, 0.006) * s) * _u(gen, 1.0, 1.2) + _u(gen, 0.05, 0.15)
    else:
        view = view * _u(gen, 0.9, 1.25) + _u(gen, 0.0, 0.08)  # drops gather light
    edge = ((ox ** 2 + oy ** 2).clamp(0, 1)) ** 3  # 0 at the centre .. 1 at the rim
    view = view * (1 - (_u(gen, 0.0, 0.25) if soft else _u(gen, 0.3, 0.8)) * edge)
    # a highlight up and to one side of the centre
    hx, hy = _u(gen, -0.45, 0.45), _u(gen, -0.55, -0.25)
    spot = torch.exp(-((ox - hx) ** 2 + (oy - hy) ** 2) / (2 * 0.12 ** 2)) * inside
    view = view + spot * _u(gen, 0.2, 0.7) * (rad > 2.5).float()
    alpha = torch.sigmoid((hgt - 0.05) * 40) * inside
    if soft:
        alpha = alpha * _u(gen, 0.7, 0.95)  # translucent
    focus = 0.0 if lens or soft else _u(gen, 0, 1)
    if focus < 0.6:  # out of focus glass: soft drops (RobotCar-style lens drops)
        sig = _u(gen, 0.01, 0.035) * s if lens else _u(gen, 0.002, 0.006) * s if soft else _u(gen, 0.5, 3.0) * s / 360
        comp = img * (1 - alpha) + view.clamp(0, 1) * alpha
        return _gauss_blur(comp, sig) * _gauss_blur(alpha, sig) + img * (1 - _gauss_blur(alpha, sig))
    return img * (1 - alpha) + view.clamp(0, 1) * alpha


def near_drops(img: torch.Tensor, gen: torch.Generator, dens: float) -> torch.Tensor:
    """Drops on glass just in front of the lens, far out of focus (as in the Raindrop and RobotCar
    pictures): milky discs a few percent of the frame wide with soft edges several pixels wide, through
    which the scene is seen blurred, brighter and with less contrast. No rim and no highlight survive
    that much defocus."""
    _, _, h, w = img.shape
    s = min(h, w)
    r_lo, r_hi = s * 0.02, s * (_u(gen, 0.05, 0.11) if _u(gen, 0, 1) < 0.7 else _u(gen, 0.11, 0.2))  # up to a lens
    n = min(int(3 + (0.3 + 0.7 * dens) * _u(gen, 0.3, 1.0) * h * w / (3.14 * r_lo * r_hi * 1.3)), 300)
    hgt, _, _, _ = _drop_field(h, w, gen, n, r_lo, r_hi, img.device)
    view = _wide_blur(img, _u(gen, 0.3, 0.8) * r_hi, zeros=False)  # the scene seen through the drop
    milk = _u(gen, 0.15, 0.5)
    view = view * _u(gen, 1.0, 1.2) * (1 - milk) + milk * _u(gen, 0.65, 0.95)
    alpha = _wide_blur((hgt > 0.1).float(), _u(gen, 0.1, 0.3) * r_hi) * _u(gen, 0.5, 0.95)
    return img * (1 - alpha) + view.clamp(0, 1) * alpha


def haze(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Rain veil / accumulation: contrast loss that grows with distance (towards the horizon), greyish-bright."""
    _, _, h, w = img.shape
    horizon = _u(gen, 0.3, 0.6)
    ys = torch.linspace(0, 1, h, device=img.device).view(1, 1, h, 1)
    depth = torch.exp(-((ys - horizon).clamp_min(0) / _u(gen, 0.15, 0.4)))  # 1 far (at/above horizon) .. 0 near
    t = _u(gen, 0.05, 0.45) * depth
    air = _u(gen, 0.55, 0.9) + torch.tensor([_u(gen, -0.03, 0.03) for _ in range(3)], device=img.device).view(1, 3, 1, 1)
    return img * (1 - t) + air * t


def spray(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Spray thrown up behind vehicles: soft bright low-contrast clouds near the road."""
    _, _, h, w = img.shape
    out = img
    for _ in range(int(torch.randint(1, 4, (), generator=gen))):
        cy, cx = _u(gen, 0.45, 0.8) * h, _u(gen, 0.1, 0.9) * w
        ry, rx = _u(gen, 0.04, 0.12) * h, _u(gen, 0.06, 0.2) * w
        yy = torch.arange(h, device=img.device).view(h, 1).float()
        xx = torch.arange(w, device=img.device).view(1, w).float()
        blob = torch.exp(-(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2))
        tex = _gauss_blur(torch.rand(1, 1, h, w, generator=gen).to(img.device), max(1.0, min(h, w) / 60))
        a = (blob * (0.5 + tex)).clamp(0, 1).view(1, 1, h, w) * _u(gen, 0.15, 0.5)
        out = out * (1 - a) + _u(gen, 0.6, 0.85) * a
    return out


def film(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Veiling glare of wet glass: the water on it scatters part of the light into a wide halo of the scene
    (a blur a quarter of the short side wide) a little brighter than the scene (the glass catches light from
    outside the view), so contrast falls and dark places lift near bright ones, as in the real drop pictures
    (their rainy frames are 0.04 brighter in Y and 7-20% lower in contrast than the clean ones)."""
    _, _, h, w = img.shape
    v = _u(gen, 0.1, 0.4)
    glare = _wide_blur(img, min(h, w) / 4, zeros=False) * _u(gen, 1.0, 1.3)
    return (img * (1 - v) + glare * v).clamp(0, 1)


def wiper(rainy: torch.Tensor, clean: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A partial wiper sweep: a wiped sector (``clean``: the view without drops) and the dark blade."""
    _, _, h, w = rainy.shape
    px, py = _u(gen, 0.2, 0.8) * w, h * _u(gen, 1.05, 1.4)  # pivot below the frame
    yy = torch.arange(h, device=rainy.device).view(h, 1).float() - py
    xx = torch.arange(w, device=rainy.device).view(1, w).float() - px
    ang = torch.atan2(xx, -yy)  # 0 = straight up
    a0 = _u(gen, -1.0, 0.6)
    a1 = a0 + _u(gen, 0.2, 0.9)
    wiped = torch.sigmoid((ang - a0) * 60) * torch.sigmoid((a1 - ang) * 60)
    wiped = wiped.view(1, 1, h, w)
    out = rainy * (1 - wiped) + (clean * 0.97 + 0.02) * wiped
    blade = torch.exp(-((ang - a1) / 0.012) ** 2).view(1, 1, h, w) * (torch.sqrt(xx ** 2 + yy ** 2) > 0.25 * h).float().view(1, 1, h, w)
    return out * (1 - 0.85 * blade.clamp(0, 1))


def camera(x: torch.Tensor, gen: torch.Generator, params: dict | None = None) -> tuple[torch.Tensor, dict]:
    """What a dashcam does after the glass: slight defocus, sensor noise, JPEG at dashcam quality.

    Returns the image and the parameters drawn, so the same camera (same noise sample) can be applied to
    the clean target: the model learns to remove rain, not to denoise."""
    _, _, h, w = x.shape
    if params is None:
        params = {"blur": _u(gen, 0, 0.8), "sigma": _u(gen, 0.0, 0.02), "quality": int(_u(gen, 35, 90)),
                  "jpeg": _u(gen, 0, 1) < 0.7, "noise": torch.randn(x.shape, generator=gen)}
    y = _gauss_blur(x, params["blur"])
    y = (y + params["noise"].to(x.device) * params["sigma"] * (0.3 + y.clamp(0, 1).sqrt())).clamp(0, 1)
    if params["jpeg"]:
        y = jpeg(y, params["quality"])
    return y, params


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip (4:2:0, as dashcams and H.264 keyframes store colour) of NCHW [0, 1]."""
    import io

    import numpy as np
    from PIL import Image

    out = []
    for img in x:
        arr = (img.permute(1, 2, 0).cpu().numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality, subsampling=2)
        buf.seek(0)
        back = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255
        out.append(torch.from_numpy(back).permute(2, 0, 1))
    return torch.stack(out).to(x.device)


def rain_pair(clean: torch.Tensor, gen: torch.Generator, p_streaks_only: float = 0.25, p_veil: float = 0.5,
              p_drops: float = 0.6, p_spray: float = 0.15, p_wiper: float = 0.1, p_camera: float = 0.8,
              p_near_drops: float = 0.0, p_lens_drops: float = 0.0, p_dense_drops: float = 0.0,
              p_fine_streaks: float = 0.0, p_film: float = 0.0, p_soft_drops: float = 0.0,
              noise_gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(rainy, target) from ``clean`` (NCHW in [0, 1]). Each image gets its own random weather.

    In the order light meets them: haze with depth, spray, streaks in the air, drops on the glass, a
    wiper sweep, then the camera (defocus, noise, JPEG). The target is the clean frame through the same
    camera (same noise sample), so the model learns to remove rain and keep the camera's look.
    A share ``p_streaks_only`` is Rain12 / Rain100L style: additive achromatic streaks, no camera.
    A share ``p_near_drops`` of the drops on the glass are far out of focus (:func:`near_drops`), and a
    share ``p_lens_drops`` of the rest are large drops on the lens itself (:func:`glass_drops` ``lens``).
    A share ``p_dense_drops`` of the rest is a windshield covered with drops (:func:`glass_drops` ``dense``),
    and a share ``p_soft_drops`` of what is left translucent drops out of focus (``soft``, Raindrop style).
    A share ``p_fine_streaks`` of the streaks is rendered finer (:func:`rain_streaks` ``fine`` 1-1.8), and
    a share ``p_film`` of the wet glass veils the view (:func:`film`).

    For video, pass a generator seeded the same for every frame as ``gen`` (same rain, same drops on the
    glass) and a per-frame generator as ``noise_gen`` (the streaks move)."""
    ins, tgts = [], []
    for img in clean.split(1):
        _, _, h, w = img.shape
        simple = _u(gen, 0, 1) < p_streaks_only
        streaks = simple or _u(gen, 0, 1) < 0.7
        heavy = not simple and _u(gen, 0, 1) < 0.4
        fine = _u(gen, 1.0, 1.8) if p_fine_streaks > 0 and _u(gen, 0, 1) < p_fine_streaks else 1.0
        rain = rain_streaks(h, w, gen, img.device, heavy=heavy, noise_gen=noise_gen, fine=fine) if streaks else None
        if simple:
            ins.append((img + rain).clamp(0, 1))
            tgts.append(img)
            continue
        y = img
        if _u(gen, 0, 1) < p_veil:
            y = haze(y, gen)
        if _u(gen, 0, 1) < p_spray:
            y = spray(y, gen)
        if rain is not None:
            y = 1 - (1 - y) * (1 - rain) if _u(gen, 0, 1) < 0.5 else y + rain
        y = y.clamp(0, 1)
        if not streaks or _u(gen, 0, 1) < p_drops:
            dry = y
            near = p_near_drops > 0 and _u(gen, 0, 1) < p_near_drops
            lens = not near and p_lens_drops > 0 and _u(gen, 0, 1) < p_lens_drops
            dense = not near and not lens and p_dense_drops > 0 and _u(gen, 0, 1) < p_dense_drops
            soft = not (near or lens or dense) and p_soft_drops > 0 and _u(gen, 0, 1) < p_soft_drops
            y = glass_drops(y, gen, near=near, lens=lens, dense=dense, soft=soft)
            if p_film > 0 and _u(gen, 0, 1) < p_film:
                y = film(y, gen)
            if _u(gen, 0, 1) < p_wiper:  # the wiper clears the glass, not the air
                y = wiper(y, dry, gen)
        tgt = img
        if _u(gen, 0, 1) < p_camera:
            y, cam = camera(y.clamp(0, 1), gen)
            tgt, _ = camera(img, gen, cam)
        ins.append(y.clamp(0, 1))
        tgts.append(tgt)
    return torch.cat(ins), torch.cat(tgts)


def add_rain(clean: torch.Tensor, gen: torch.Generator, **kw) -> torch.Tensor:
    """The rainy half of :func:`rain_pair` (for sample clips and tests)."""
    return rain_pair(clean, gen, **kw)[0]


def _lin_luma(lin: torch.Tensor) -> torch.Tensor:
    """Luminance (Rec. 709 weights) of linear RGB, Nx1xHxW."""
    return 0.2126 * lin[:, 0:1] + 0.7152 * lin[:, 1:2] + 0.0722 * lin[:, 2:3]


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


def _dilate(m: torch.Tensor, ry: int, rx: int | None = None) -> torch.Tensor:
    """Grey dilation by a (2ry+1) x (2rx+1) rectangle, as two 1-D passes (the same result, less work)."""
    rx = ry if rx is None else rx
    if ry:
        m = F.max_pool2d(m, (2 * ry + 1, 1), stride=1, padding=(ry, 0))
    return F.max_pool2d(m, (1, 2 * rx + 1), stride=1, padding=(0, rx)) if rx else m


def _open(m: torch.Tensor, r: int | tuple[int, int]) -> torch.Tensor:
    """Morphological opening of a soft mask: what is left has no part narrower than 2r+1 pixels
    (``r`` one radius, or (rows, columns))."""
    ry, rx = (r, r) if isinstance(r, int) else r
    return _dilate(-_dilate(-m, ry, rx), ry, rx)


def _saturation(img: torch.Tensor) -> torch.Tensor:
    """(max - min) / max over the channels (Nx1xHxW): 0 for grey and black, 1 for a pure colour."""
    top = img.amax(1, keepdim=True)
    return (top - img.amin(1, keepdim=True)) / (top + 1e-3)


def _shift(x: torch.Tensor, dy: int = 0, dx: int = 0) -> torch.Tensor:
    """``x`` moved down by dy and right by dx pixels (zeros come in)."""
    h, w = (int(v) for v in x.shape[-2:])
    p = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    return p[..., max(-dy, 0):max(-dy, 0) + h, max(-dx, 0):max(-dx, 0) + w]


def _close(m: torch.Tensor, r: int | tuple[int, int]) -> torch.Tensor:
    """Morphological closing: dark features narrower than 2r+1 pixels are filled."""
    return -_open(-m, r)


def _dull_red(img: torch.Tensor) -> torch.Tensor:
    """Tail lights as a washed-out camera records them in daylight (1x1xHxW score): small spots of a dull
    pure red (green and blue level, a tenth or more redder than grey) that are redder than what is around
    them (a top-hat on the chroma: a red hood or a warm-lit wall is left), shorter than an 18th of the short
    side (not a painted kerb), among grey things (a car, the road; not red flowers in foliage), between the
    horizon and the hood, and not next to white (the colour fringe along a white lane line)."""
    h, w = (int(v) for v in img.shape[2:])  # ints also when traced for ONNX
    s = min(h, w)
    r, g, b = img[:, :1], img[:, 1:2], img[:, 2:]
    white = _dilate(((img.amin(1, keepdim=True) - 0.8) * 10).clamp(0, 1), 1)
    chroma = (r - torch.maximum(g, b)) / (r + 1e-3)
    spot = chroma - _open(chroma, max(2, round(s / 70)))
    pure = ((0.35 - (g - b).abs() / (r - torch.minimum(g, b) + 1e-3)) * 6).clamp(0, 1)
    rows = torch.linspace(0, 1, h, device=img.device).view(1, 1, h, 1)
    band = ((rows - 0.3) * 10).clamp(0, 1) * ((0.85 - rows) * 10).clamp(0, 1)
    grey = ((0.18 - _gauss_blur(_saturation(img), s / 40)) * 12).clamp(0, 1)
    dull = (((r - 0.2) * 6).clamp(0, 1) * ((chroma - 0.04) * 12).clamp(0, 1) * ((spot - 0.08) * 10).clamp(0, 1)
            * pure * band * grey * (1 - white))
    return (dull - _open(dull, (0, max(3, round(s / 36))))).clamp(0, 1)


def _tail_red(img: torch.Tensor, green: float = 0.72) -> torch.Tensor:
    """Per pixel, how much ``img`` (NCHW sRGB in [0, 1]) has a tail or brake light's red to amber (Nx1xHxW):
    green under ``green`` times red (0.5: red only, no amber)."""
    r, g, b = img[:, :1], img[:, 1:2], img[:, 2:]
    return ((r - 0.25) * 6).clamp(0, 1) * ((green - g / (r + 1e-3)) * 8).clamp(0, 1) * ((0.6 - b / (r + 1e-3)) * 8).clamp(0, 1)


def tail_red_on_grid(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The red of tail and brake lights (:func:`_tail_red`, green under half of red: no amber, so no yellow
    lane paint, whose most orange pixels pass at full size) found at ``img``'s own size and carried to a
    coarser grid ``size`` (a 3x3 maximum, then a bilinear resize), for :func:`relight` on that grid. A light
    a few pixels wide, resized first, is sampled at full strength in one frame and at half of it in the
    next as the car moves, and blinks on video. The 3x3 maximum covers a resize by up to about 2.5 (a
    landscape frame at short side 360 onto 144x256); a portrait frame is shrunk more along its long side,
    where a light two pixels high can still fall between samples."""
    red = _dilate(_tail_red(img, green=0.5), 1)
    return F.interpolate(red, size=size, mode="bilinear", align_corners=False)


def _lamps(img: torch.Tensor, raw_sky: torch.Tensor,
           red: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the day frame has something that is lit at night (1x1xHxW masks of the light cores):
    (coloured, lamp heads).

    * coloured: small red to amber blobs - tail and brake lights, indicators, red traffic lights, dim ones
      too (a tail light in daylight is dark red; a washed-out camera's dull red, :func:`_dull_red`) - glow
      in their own hue at full saturation; larger areas (a red car) are left (top-hat), and so are yellow
      lane lines;
    * lamp heads: the top end of a thin dark pole standing against the sky (darker than what is on
      both sides of it for a length below its top, bright above it, with nothing pole-like above).
    Both are functions of the frame alone, so a network can learn where lights go at night. ``red``: tail
    lights' red found at a finer size (:func:`tail_red_on_grid`), taken with what is found here."""
    h, w = (int(v) for v in img.shape[2:])  # ints also when traced for ONNX
    s = min(h, w)
    red = _tail_red(img) if red is None else torch.maximum(_tail_red(img), red)
    # a dull red light one or two cells wide scores about 0.6 (its neighbourhood is never quite grey): count
    # that as a full one, or the blob threshold below drops it
    red = torch.maximum(red, (_dull_red(img) / 0.6).clamp(0, 1))
    red = ((_gauss_blur(red, 0.8, zeros=True) - 0.3) * 3).clamp(0, 1)  # a blob of a few pixels, not a stray one
    coloured = (red - _open(red, max(2, round(s / 70)))).clamp(0, 1) * (1 - raw_sky)
    near_sky = _dilate((raw_sky > 0.5).float(), round(s / 30))
    d = max(1, round(s / 180))  # poles up to 2d+1 pixels wide
    y = img.mean(1, keepdim=True)
    thin = ((_close(y, (0, d + 1)) - y - 0.06) * 10).clamp(0, 1) * near_sky
    L = max(3, round(s / 25))  # a pole: thin for L rows below its top
    along = -F.max_pool2d(-_shift(thin, dy=-(L // 2)), (L | 1, 1), stride=1, padding=(L // 2, 0))
    # nothing pole-like above the top either, for L rows and 3d columns each side: the top of a pole, not a
    # crossing in a lattice tower or a tree's crown
    above = _shift(_dilate(thin, L // 2, 3 * d), dy=2 * d + L // 2)
    head = along * (1 - above) * ((_shift(y, dy=2 * d) - 0.45) * 8).clamp(0, 1)
    return coloured, F.max_pool2d(head, 3, stride=1, padding=1)


def _glows(img: torch.Tensor, raw_sky: torch.Tensor, pick,
           red: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Light sources with halos where :func:`_lamps` finds them (``pick(lo, hi)``: a strength in that range;
    ``red`` as :func:`_lamps` takes it).
    Returns (light Nx3xHxW linear,
    ground Nx3xHxW: the pools lamp heads throw on the road below them and wet-road reflections)."""
    h, w = (int(v) for v in img.shape[2:])  # ints also when traced for ONNX
    s = min(h, w)
    coloured, heads = _lamps(img, raw_sky, red)
    # its own hue at full saturation (a washed-out camera's dull red is a tail light's red at night), a
    # little desaturated by the glare
    lo = img.amin(1, keepdim=True)
    hue = srgb_to_linear(((img - lo) / (img.amax(1, keepdim=True) - lo).clamp_min(1e-3)).clamp_min(0.02)) ** 0.7
    lamp = torch.tensor([1.0, pick(0.65, 0.95), pick(0.3, 0.85)], device=img.device).view(1, 3, 1, 1)

    core = coloured * hue * pick(0.4, 1.0) + heads * lamp * pick(0.5, 1.0)  # one pass for all: glow is linear
    white = 30 * _gauss_blur(core.amax(1, keepdim=True), s / 300, zeros=True)  # the core over-exposes to white
    halo = 4.0 * _gauss_blur(core, s / 250, zeros=True) + pick(0.4, 1.0) * (6 * _wide_blur(core, s / 90) + 20 * _wide_blur(core, s / 25))
    light = white + halo
    below = ((torch.linspace(0, 1, h, device=img.device).view(1, 1, h, 1) - 0.5) * 7).clamp(0, 1)  # the road
    pools = _shift(_wide_blur(heads * lamp, s / 10), dy=int(0.35 * h)) * below * s * 0.5
    ground = pools * pick(0.3, 1.0)
    if pick(0, 1) < 0.6:  # wet asphalt: each light smeared downwards onto the road in its own colour (the
        # halo; the over-exposed core barely reflects), brightest just below it: a short streak and a long one
        src = halo + 0.1 * white

        def streak(length: float, drop: float) -> torch.Tensor:
            k = max(3, int(length * h) | 1)  # a vertical box, zeros beyond the frame
            return _shift(F.avg_pool2d(src, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=True), dy=int(drop * h))

        ground = ground + (0.6 * streak(0.08, 0.05) + 0.4 * streak(0.25, 0.12)) * below * pick(0.5, 2.0)
    return light, ground


def _sky_raw(lin: torch.Tensor, h: int, w: int, close: int) -> torch.Tensor:
    """Where the daylit sky is: bright, smooth and high in the frame (Nx2xHxW, not grown), found on the
    luminance as it is and on the luminance with dark lines up to 2*close+1 pixels wide (wires, twigs)
    filled first, so that they do not break the sky (one pass over both: fewer operations in an exported
    graph).

    Smooth is judged per pixel for the first (the lamp-head detector's, tuned so) and per 360th of the
    short side for the second, which darkens the sky: the same sky is equally smooth on a 144x256 grid and
    at 360x640 (per pixel, a sky's gradient is 2.5x steeper on the grid, where a grey, wire-crossed sky
    was found only half as strongly as at 360x640)."""
    lum = _lin_luma(lin)
    lum = torch.cat([lum, _close(lum, close)], 1)
    top = torch.linspace(1, 0, h, device=lin.device).clamp(0, 1).view(1, 1, h, 1) ** 0.5
    gy = (lum[:, :, 1:] - lum[:, :, :-1]).abs()
    gx = (lum[..., 1:] - lum[..., :-1]).abs()
    tex = _gauss_blur(F.pad(gy, (0, 0, 0, 1)) + F.pad(gx, (0, 1)), min(h, w) / 80, zeros=True)
    per = torch.tensor([1.0, min(h, w) / 360], device=lin.device).view(1, 2, 1, 1)
    smooth = (1 - tex * per * 25).clamp(0, 1)
    return ((lum - 0.15) * 5).clamp(0, 1) * top * smooth


def _sky(raw: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Soft mask of the daylit sky (Nx1xHxW) from its raw mask, grown over the bright fringe around trees
    and roofs."""
    r = max(1, int(min(h, w) / 25))
    m = _dilate(raw, r)
    return _wide_blur(m, r / 2, min_sigma=1)  # round edges: a rectangle grown from a coarse mask shows as blocks


def sky_mask(img: torch.Tensor, grow: int = 0) -> torch.Tensor:
    """The daylit-sky mask of sRGB images (NCHW in [0, 1]) as the night synthesiser finds it (Nx1xHxW):
    bright, smooth, high in the frame and reaching its top; grown by ``grow`` pixels (over the horizon,
    whose edge turns over when the sky goes dark)."""
    with torch.no_grad():
        h, w = (int(v) for v in img.shape[2:])
        m = _night_sky(srgb_to_linear(img), h, w)[1]  # per image: no op mixes the batch
        return _dilate(m, grow) if grow else m


def _windows(img: torch.Tensor, pick, sky: torch.Tensor) -> torch.Tensor:
    """Lit windows and shop fronts: small grey patches darker than the wall around them in daylight
    (glass: a black top-hat, at least a few pixels wide), above the road and off the sky.
    1x3xHxW linear light."""
    h, w = (int(v) for v in img.shape[2:])  # ints also when traced for ONNX
    s = min(h, w)
    y = img.mean(1, keepdim=True)
    rows = torch.linspace(0, 1, h, device=img.device).view(1, 1, h, 1)
    wall = _close(y, max(2, round(s / 40)))
    glass = ((wall - y - 0.2) * 8).clamp(0, 1) * ((wall - 0.45) * 8).clamp(0, 1)
    glass = _open(glass, max(1, round(s / 180)))
    green = _gauss_blur(img[:, 1:2] - torch.maximum(img[:, :1], img[:, 2:]), s / 40)
    grey = ((0.25 - _gauss_blur(_saturation(img), s / 60)) * 8).clamp(0, 1) * ((0.01 - green) * 60).clamp(0, 1)  # walls, not foliage
    high = ((rows > 0.1) & (rows < 0.6)).float()
    warm = torch.tensor([1.0, pick(0.6, 0.85), pick(0.3, 0.55)], device=img.device).view(1, 3, 1, 1)
    return _gauss_blur(glass * grey * high * (1 - sky), 0.7) * warm * pick(0.05, 0.2)


def _from_top(m: torch.Tensor) -> torch.Tensor:
    """The part of mask ``m`` (NxCxHxW in [0, 1], each channel on its own) connected to the top row of the
    frame (geodesic reconstruction at quarter size, reaching half the frame's long side): the sky, not a
    white truck."""
    steps = max(4, math.ceil(max(int(v) for v in m.shape[2:]) / 16))  # each step reaches 2 quarter-pixels
    small = F.avg_pool2d(m, 4, ceil_mode=True)
    seed = torch.cat([small[:, :, :1], torch.zeros_like(small[:, :, 1:])], 2)
    for _ in range(steps):
        seed = torch.minimum(F.max_pool2d(seed, 5, stride=1, padding=2), small)
    return F.interpolate(seed, size=m.shape[2:], mode="bilinear", align_corners=False)


def _night_sky(lin: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(raw, soft) masks (Nx1xHxW) of the daylit sky that reaches the top of the frame: what goes dark at
    night (a white truck or a bright wall below it does not). The soft mask, which darkens, looks through
    wires and twigs; the raw one, by which lamp heads are found at the tops of poles, does not (else the
    trunks in a bare tree's crown would light up as lamps)."""
    both = _sky_raw(lin, h, w, close=max(1, round(min(h, w) / 144)))  # (as it is, through wires)
    # each its own connectivity (_from_top works per channel): lamp heads found where only the closed sky
    # reaches the top flash on and off from frame to frame, and wire-crossed sky is cut off from the top
    # without the closed one's
    both = both * _from_top((both > 0.3).float()).clamp(0, 1)
    return both[:, :1], _sky(both[:, 1:], h, w)


def _sky_texture(lin: torch.Tensor, sky: torch.Tensor) -> torch.Tensor:
    """The day sky's luminance relative to its mean under ``sky`` (Nx1xHxW): clouds stay faintly
    visible in the dark night sky, lit from below by the city, as night cameras see them."""
    lum = _lin_luma(lin)
    mean = (lum * sky).sum((2, 3), keepdim=True) / (sky.sum((2, 3), keepdim=True) + 1e-6)
    return (lum / mean.clamp_min(1e-4)).clamp(0, 1.5)


def _horizon(h: int, device=None) -> torch.Tensor:
    """Night-sky brightness by row: a little lighter towards the horizon (city glow)."""
    return 0.5 + torch.linspace(0, 1, h, device=device).view(1, 1, h, 1) ** 2


def _fade_colour(lin: torch.Tensor, keep: float) -> torch.Tensor:
    """Colour fades at night: ``keep`` of each pixel's saturation (linear light, luminance unchanged)."""
    lum = _lin_luma(lin)
    return lum + (lin - lum) * keep


def _headlight_pool(h: int, w: int, device=None) -> torch.Tensor:
    """The car's own headlights: where they light the road ahead, the lower middle of the frame (1x1xHxW,
    1 at the bottom centre; a gain shape)."""
    yy = torch.linspace(0, 1, h, device=device).view(1, 1, h, 1)
    xx = torch.linspace(-1, 1, w, device=device).view(1, 1, 1, w)
    return torch.exp(-((yy - 1.0) / 0.35) ** 2 - (xx / 0.45) ** 2)


# the lightest ground (linear light, night exposure) whose brightness scales the pools and reflections on it
GROUND_MAX = 0.04


def _light_up(lin: torch.Tensor, day: torch.Tensor, light: torch.Tensor, ground: torch.Tensor, pick) -> torch.Tensor:
    """``lin`` (a night rendering of ``day``, linear light) with the light sources of :func:`_glows` added
    (``light``, already at its strength: :func:`_light_strength`) and their pools and reflections lighting
    what is on the ground (brighter on lighter ground)."""
    scene_gain = day.mean((1, 2, 3), keepdim=True) * 0.5 + 0.5
    # lit in proportion to how light the ground is, up to a light road's level: a white car under tail lights
    # is not a mirror, and the whole of its body glowing is what gives a fake night away
    return lin + light + ground * lin.clamp(0.002, GROUND_MAX) * 40 * scene_gain * pick(0.3, 1.0)


def _light_strength(light: torch.Tensor, pick) -> torch.Tensor:
    """The light sources of :func:`_glows` at the strength they are added to the scene with."""
    return light * pick(0.1, 0.5)


def _yellow_colour(day: torch.Tensor) -> torch.Tensor:
    """Yellow to amber, pixel by pixel (Nx1xHxW soft mask of sRGB ``day``): lane paint's colour, also the pale
    bright cream a washed-out camera records it as (blue at 0.8 of red)."""
    r, g, b = day[:, :1], day[:, 1:2], day[:, 2:]
    b_r = b / (r + 1e-3)
    pale = ((r - 0.8) * 10).clamp(0, 1) * ((0.85 - b_r) * 10).clamp(0, 1)  # bright cream, not warm grey asphalt
    yellow = torch.maximum(((0.75 - b_r) * 6).clamp(0, 1), pale)
    return ((r - 0.35) * 8).clamp(0, 1) * ((g / (r + 1e-3) - 0.55) * 8).clamp(0, 1) * yellow


def _yellow_paint(day: torch.Tensor) -> torch.Tensor:
    """Yellow road paint in a day frame (Nx1xHxW soft mask): lines of paint's colour (:func:`_yellow_colour`),
    narrower than an 18th of the short side, in the lower 60% of the frame. Wider yellow things (a taxi, a
    sign, dry grass) are left (top-hat)."""
    h, w = (int(v) for v in day.shape[2:])  # ints also when traced for ONNX
    rows = torch.linspace(0, 1, h, device=day.device).view(1, 1, h, 1)
    y = _yellow_colour(day) * ((rows - 0.4) * 8).clamp(0, 1)
    y = (y - _open(y, max(2, round(min(h, w) / 36)))).clamp(0, 1)
    return _gauss_blur(y, 0.7, zeros=True).clamp(0, 1)


# yellow lane paint at night away from strong light: a dim, pale yellow (linear light; dim_paint normalises the
# tint to luminance 1), at PAINT_DIM of the luminance the rendering gave it
PAINT_TINT = (1.0, 0.75, 0.3)
PAINT_DIM = 0.35


def dim_paint(img: torch.Tensor, day: torch.Tensor, lines: torch.Tensor | None = None,
              srgb: bool = False) -> torch.Tensor:
    """Yellow lane paint in a night rendering ``img`` (linear light, or sRGB if ``srgb``) brought back to
    dim, pale yellow paint: a relighting network tends to make it glow orange, which no night camera
    records away from headlights. ``lines``: where the paint is, found on a coarser grid and resized to
    this one (lines a pixel or two wide cannot be found again at this size by their shape; each pixel must
    have paint's colour or touch one that has: the network's orange glow spills past the paint's edge).
    In sRGB the tint and the dimming are the linear ones carried over (no conversion of the frame: cheap
    at full size)."""
    p = _yellow_paint(day) if lines is None else lines * _dilate(_yellow_colour(day), 1)
    tint, dim = torch.tensor(PAINT_TINT, device=day.device).view(1, 3, 1, 1), PAINT_DIM
    if srgb:
        tint, dim = linear_to_srgb(tint), dim ** (1 / 2.2)
    pale = _lin_luma(img) * tint / _lin_luma(tint)
    return img * (1 - p) + p * pale * dim


def no_magenta(img: torch.Tensor, day: torch.Tensor, keep: float = 0.95, eps: float = 0.02) -> torch.Tensor:
    """A night rendering ``img`` (sRGB, [0, 1]) held to no more magenta than its ``day`` frame: a relighting
    network turns bright concrete and dry grass salmon pink, a colour no street lamp or headlight gives a
    grey surface (sodium and halogen light are orange to warm white). The tint is green against the mean of
    red and blue; where the rendering's falls below ``keep`` times the day frame's (capped at grey's), green
    is raised to that bound and the pixel scaled back to its Rec. 709-weighted sRGB luma (not linear
    luminance: that falls a few per cent, 3% on the concrete's (137, 86, 73)). Warm orange and yellow
    paint are left as they are, and red things (tail lights, red cars) stay red: their bound is their own
    day colour's."""
    rb = lambda t: (t[:, 0:1] + t[:, 2:3]) / 2  # noqa: E731
    day_tint = ((day[:, 1:2] + eps) / (rb(day) + eps)).clamp(max=1.0)
    green = torch.maximum(img[:, 1:2], keep * day_tint * (rb(img) + eps) - eps)
    out = torch.cat([img[:, 0:1], green, img[:, 2:3]], 1)
    return out * (_lin_luma(img) + 1e-3) / (_lin_luma(out) + 1e-3)


def paint_lines(day: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """Where :func:`dim_paint` finds lane paint in ``day``, grown by a pixel and made solid (Nx1xHxW), but
    not where ``light`` (linear, the light sources :func:`relight` added) reaches a quarter of a dark road's
    level (0.005): paint in a tail light's glow is lit by it, and a light of paint's colour keeps its glow.
    The mask to pass on to a finer grid as its ``lines``."""
    lit = _dilate((_lin_luma(light) * 200).clamp(0, 1), 1)  # grown as the paint is
    return (_dilate(_yellow_paint(day), 1) * 3).clamp(0, 1) * (1 - lit)


# The day2night network's output off the sky sits darker than real night footage (median luma 0.145 against
# 0.157 on the held-out night frames, Y as the metrics take it): the renderer exposes it this much brighter.
NIGHT_EXPOSURE = 1.25
# the brightest the network's rendering of a grey day sky may stay under the sky mask (linear luminance)
NIGHT_SKY_CAP = 0.03
# the car's own headlights double the light at the bottom centre of the frame (make_night draws 0-4; 1 is
# nearest the held-out night frames: night distance 1.60 -> 1.32, 1.96 -> 1.45 against 60 training night
# frames, where 2 gave 1.40)
OWN_HEADLIGHTS = 1.0
# the saturation the rendering keeps (make_night's 0.35-0.7 at its middle; night distance 1.32 -> 1.27,
# 1.45 -> 1.39 against 60 training night frames; the network's orange road glare goes a muted tan)
NIGHT_COLOUR = 0.5


def relight(day: torch.Tensor, night: torch.Tensor, paint: bool = True, with_light: bool = False,
            red: torch.Tensor | None = None):
    """Finish a night rendering ``night`` of ``day`` (both NCHW in [0, 1], batched) the way :func:`make_night`
    lights its targets, with each strength at the middle of its range and no noise: the day frame's sky set to
    a dark night-sky level (its clouds faintly kept), the light sources the day frame shows (tail and brake
    lights, red traffic lights, lamp heads on poles) lit with halos, light pools and reflections on the road;
    yellow lane paint kept dim (:func:`dim_paint`, here only: :func:`make_night` draws no glowing paint to
    undo; ``paint`` False leaves it to the caller); off the sky, the network's rendering exposed
    ``NIGHT_EXPOSURE`` times brighter in linear light, under a grey sky held to ``NIGHT_SKY_CAP``; the road
    ahead lit by the car's own headlights (``OWN_HEADLIGHTS``, a quarter of make_night's range); the
    rendering's colour faded to ``NIGHT_COLOUR`` of its saturation (the light sources, added after, keep
    theirs). Window panes are left to the network: their detector also fires on foliage. A fixed function of
    the two frames (no random numbers), exportable to ONNX at a fixed size (sizes and blur radii follow from
    the shape it is traced with). ``with_light``: also return the light the sources added (linear, Nx3xHxW),
    so a caller can tell them from what it changes after. ``red``: tail lights' red found at the day
    frame's own size when ``day`` is a resized copy (:func:`tail_red_on_grid`)."""
    def pick(lo: float, hi: float) -> float:
        return (lo + hi) / 2

    h, w = (int(v) for v in day.shape[2:])
    lin_day = srgb_to_linear(day)
    raw_sky, sky = _night_sky(lin_day, h, w)
    # exposed off the sky, fading out as the sky mask rises to a third (a steeper fade carries bf16's
    # rounding of the mask into the picture)
    lin = srgb_to_linear(night.clamp(0, 1)) * (1 + (NIGHT_EXPOSURE - 1) * (1 - (sky * 3).clamp(0, 1)))
    # the network renders a white or grey (overcast) day sky bright, and the sky mask's soft edge keeps
    # part of it: under such a sky its rendering is held to a night sky's brightness
    grey_sky = sky * (1 - 4 * _saturation(day)).clamp(0, 1)
    lin = lin * (1 - grey_sky + grey_sky * (NIGHT_SKY_CAP / _lin_luma(lin).clamp_min(1e-4)).clamp(max=1))
    sky_lin = torch.tensor([0.8, 0.72, 0.8], device=day.device).view(1, 3, 1, 1) * 0.025 * _horizon(h, day.device)
    lin = lin * (1 - sky) + sky * sky_lin * _sky_texture(lin_day, sky)
    if paint:
        lin = dim_paint(lin, day)
    lin = lin * (1 + OWN_HEADLIGHTS * _headlight_pool(h, w, day.device))
    lin = _fade_colour(lin, NIGHT_COLOUR)
    light, ground = _glows(day, raw_sky, pick, red)
    light = _light_strength(light, pick)
    out = linear_to_srgb(_light_up(lin, day, light, ground, pick)).clamp(0, 1)
    return (out, light) if with_light else out


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


# task -> (input, target) pair maker used by the trainer
SYNTHS = {"rain": rain_pair, "night": night_pair}
