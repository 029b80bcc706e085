"""Rain synthesis: (rainy, clean) training pairs made on the fly from clean day frames, and rainy clips.

Float tensors NCHW RGB in [0, 1]; every random number comes from the ``torch.Generator`` given, so the same
seed gives the same output bit for bit (on one device).

* :func:`rain_pair` - rain streak layers at several depths (random density, angle, length, width, blur and
  brightness; additive as in Rain12/Rain100L, or screen-blended), haze that grows with depth, spray, drops on
  the glass rendered as small lenses (:func:`glass_drops`: refracted, flipped, minified view of the scene,
  dark rim, highlight, in or out of focus, clusters and trails), a partial wiper sweep, and the camera after
  the glass (defocus, sensor noise, JPEG at dashcam quality); a dashcam's windshield in focus
  (:func:`windshield_drops`: flattened wide-field lenses, the ground upside down in their upper part).
* :func:`rain_clip` - the same over a sequence of frames: drops that stay on the glass while the scene
  moves behind them (the frames of a real clip, or a still moved the way a camera moves, :func:`move_still`),
  drops that land, run down and get wiped, streaks that move.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .imaging import _gauss_blur, _u, _wide_blur

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
                near: bool = False, lens: bool = False, dense: bool = False, soft: bool = False,
                p_focus: float = 0.4) -> torch.Tensor:
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
    highlight blurred with them). At most one of ``near``, ``lens``, ``dense`` and ``soft``. Other drops are
    in focus (sharp lenses, as a dashcam focused far away still sees the windshield's drops) with probability
    ``p_focus``."""
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
    if focus < 1 - p_focus:  # out of focus glass: soft drops (RobotCar-style lens drops)
        sig = _u(gen, 0.01, 0.035) * s if lens else _u(gen, 0.002, 0.006) * s if soft else _u(gen, 0.5, 3.0) * s / 360
        comp = img * (1 - alpha) + view.clamp(0, 1) * alpha
        return _gauss_blur(comp, sig) * _gauss_blur(alpha, sig) + img * (1 - _gauss_blur(alpha, sig))
    return img * (1 - alpha) + view.clamp(0, 1) * alpha


def windshield_drops(img: torch.Tensor, gen: torch.Generator, density: float | None = None) -> torch.Tensor:
    """Drops on a dashcam's windshield as the camera sees them in focus (img: 1x3xHxW in [0, 1]).

    The windshield leans back, so its drops look flattened (wider than tall), and each is a lens with a wide
    field: it shows the whole scene upside down and blurred, the dark ground in its upper part and the bright
    sky in its lower part, with a dark crescent at its upper rim (light refracted away). Radii of 2.5 to 8-18
    pixels at a short side of 360 (larger frames: in proportion), many of them: ``density`` in [0, 1]
    (random in [0.3, 1] if None) covers 7-50% of the glass."""
    _, _, h, w = img.shape
    s = min(h, w)
    px = s / 360 if s > 360 else 1.0
    dens = 0.3 + 0.7 * _u(gen, 0, 1) if density is None else density
    r_lo, r_hi = 2.5 * px, _u(gen, 8, 18) * px
    n = min(500, int(3 + dens * _u(gen, 0.25, 0.5) * h * w / (3.14 * r_lo * r_hi * 0.8)))
    drops = []
    for _ in range(n):
        r = _power(gen, r_lo, r_hi)
        drops.append((_u(gen, 0, h), _u(gen, 0, w), r, r * _u(gen, 0.55, 0.95), _u(gen, -0.15, 0.15)))
    hgt, ox, oy, rad = _drop_maps(torch.tensor(drops).to(img.device), h, w)
    yy = torch.arange(h, device=img.device).view(1, 1, h, 1).float()
    xx = torch.arange(w, device=img.device).view(1, 1, 1, w).float()
    field = _u(gen, 0.3, 0.8) * h  # how far from its centre the drop's rim looks
    sy = yy - oy * rad - oy * field
    sx = xx - ox * rad - ox * field * _u(gen, 0.6, 1.2)
    grid = torch.stack([(sx[:, 0] + 0.5) / w * 2 - 1, (sy[:, 0] + 0.5) / h * 2 - 1], -1)
    scene = _gauss_blur(img, _u(gen, 3, 8) * px)
    view = F.grid_sample(scene, grid, mode="bilinear", padding_mode="border", align_corners=False)
    view = view * _u(gen, 0.95, 1.15) + _u(gen, 0.0, 0.04)
    top = (-oy).clamp(0, 1)
    rim = torch.sigmoid(((ox ** 2 + oy ** 2).clamp(0, 1).sqrt() - (0.8 - 0.35 * top)) * 15) * (0.3 + 0.7 * top)
    view = view * (1 - _u(gen, 0.5, 0.9) * rim)
    alpha = torch.sigmoid((hgt - 0.05) * 40) * (hgt > 0).float()
    comp = img * (1 - alpha) + view.clamp(0, 1) * alpha
    blur = _u(gen, 0.3, 1.2) * px  # the glass is just out of the camera's focus
    soft = _gauss_blur(alpha, blur)
    return _gauss_blur(comp, blur) * soft + img * (1 - soft)


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
              p_focus: float = 0.4, p_windshield: float = 0.0,
              noise_gen: torch.Generator | None = None, glass: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
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
    a share ``p_film`` of the wet glass veils the view (:func:`film`). A share ``p_windshield`` of the drops
    are a dashcam's windshield in focus (:func:`windshield_drops`, drawn before the other kinds). The other
    drops are in focus with probability ``p_focus`` (:func:`glass_drops`).

    For video, pass a generator seeded the same for every frame as ``gen`` (same rain, same drops on the
    glass) and a per-frame generator as ``noise_gen`` (the streaks move). ``glass=False`` leaves the glass
    dry (the same weather in the air: the same draws up to the drops)."""
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
        if glass and (not streaks or _u(gen, 0, 1) < p_drops):
            dry = y
            windshield = p_windshield > 0 and _u(gen, 0, 1) < p_windshield
            near = not windshield and p_near_drops > 0 and _u(gen, 0, 1) < p_near_drops
            lens = not near and p_lens_drops > 0 and _u(gen, 0, 1) < p_lens_drops
            dense = not near and not lens and p_dense_drops > 0 and _u(gen, 0, 1) < p_dense_drops
            soft = not (near or lens or dense) and p_soft_drops > 0 and _u(gen, 0, 1) < p_soft_drops
            if windshield:
                y = windshield_drops(y, gen)
            else:
                y = glass_drops(y, gen, near=near, lens=lens, dense=dense, soft=soft, p_focus=p_focus)
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


# ------------------------------------------------------------------------------------------- clips
def move_still(img: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` frames (n x 3 x H x W) from one still (1 x 3 x H x W) moved the way a dashcam moves: forward
    motion as a zoom about a vanishing point near the middle of the frame (0-3% a frame), a small pan and a
    slow roll, each drawn at random (from standing almost still to fast)."""
    _, _, h, w = img.shape
    vy, vx = _u(gen, -0.15, 0.1), _u(gen, -0.15, 0.15)  # the vanishing point in [-1, 1] coordinates
    zoom = _u(gen, 0.0, 0.03) if _u(gen, 0, 1) < 0.8 else _u(gen, 0.0, 0.004)
    pan, tilt = _u(gen, -0.006, 0.006), _u(gen, -0.002, 0.002)
    roll = _u(gen, -0.003, 0.003)
    thetas = []
    for k in range(n):
        s, a = 1.0 / (1.0 + zoom) ** k, roll * k  # zoomed in: the frame samples nearer the vanishing point
        c, si = math.cos(a) * s, math.sin(a) * s
        thetas.append([[c, -si * h / w, vx * (1 - c) + pan * k], [si * w / h, c, vy * (1 - c) + tilt * k]])
    theta = torch.tensor(thetas, dtype=img.dtype, device=img.device)
    grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False)
    return F.grid_sample(img.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def overcast(clip: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The clip (T x 3 x H x W in [0, 1]) as it looks when it rains: under a thick overcast the light is
    flat and dim, so colours fade (saturation 25-75%), contrast falls (40-80%) about a mean of 0.3-0.55 and
    the light turns slightly blue-grey. One draw for the whole clip."""
    lum = (clip * torch.tensor([0.299, 0.587, 0.114], device=clip.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = lum + _u(gen, 0.25, 0.75) * (clip - lum)
    x = _u(gen, 0.3, 0.55) + _u(gen, 0.4, 0.8) * (x - x.mean())
    tint = torch.tensor([_u(gen, 0.88, 1.0), _u(gen, 0.96, 1.03), _u(gen, 1.0, 1.12)], device=clip.device)
    return (x * tint.view(1, 3, 1, 1)).clamp(0, 1)


def rain_clip(clean: torch.Tensor, gen: torch.Generator, p_wipe: float = 0.15, p_arrivals: float = 0.5,
              p_camera: float = 0.8, p_running: float = 0.0, p_overcast: float = 0.0, drop_mask: bool = False,
              **kw):
    """(rainy, target) clips from one clean clip (T x 3 x H x W in [0, 1], consecutive frames of one
    camera), with :func:`rain_pair`'s weather (``kw``: its options) held for the whole clip: the drops stay
    on the glass where they are while the scene moves behind them (each frame refracts its own scene), the
    streaks fall and move (drawn anew every frame). New drops land during the clip (``p_arrivals``) and a
    wiper may sweep the glass clear once (``p_wipe``: the blade on one frame, no drops after it until new
    ones land). The camera after the glass (defocus, JPEG) is the same for the clip, its noise new every
    frame; the target is the clean clip through the same camera. With probability ``p_running`` some drops
    run down the glass, 0.3-2% of the frame's height a frame (drawn from their own generator: the other
    draws stay as they are). ``drop_mask``: also return how much the drops on the glass change the last frame
    (1 x 1 x H x W: the largest change over the colours, against the same weather with the glass dry), the
    rest of the clip's rain not counted. With probability ``p_overcast`` the clip is first seen under an
    overcast sky (:func:`overcast`; the target too)."""
    if p_overcast > 0 and _u(gen, 0, 1) < p_overcast:
        clean = overcast(clean, gen)
    t = clean.shape[0]
    seed = int(torch.randint(0, 2 ** 62, (), generator=gen))
    wipe = int(torch.randint(1, t, (), generator=gen)) if t > 1 and _u(gen, 0, 1) < p_wipe else t
    arrivals = []
    if _u(gen, 0, 1) < p_arrivals:
        for _ in range(int(torch.randint(1, 4, (), generator=gen))):
            arrivals.append((int(torch.randint(0, t, (), generator=gen)), int(torch.randint(0, 2 ** 62, (), generator=gen))))
    running = None
    rg = torch.Generator().manual_seed(seed + 99)
    if p_running > 0 and _u(rg, 0, 1) < p_running:
        running = (int(torch.randint(0, 2 ** 62, (), generator=rg)), _u(rg, 0.003, 0.02) * clean.shape[2],
                   _u(rg, 0.0, 0.2))
    # drops that land or run are windshield drops (in focus, as a dashcam sees them) as often as the others
    p_ws = kw.get("p_windshield", 0.0)
    late_drops = windshield_drops if p_ws > 0 and _u(torch.Generator().manual_seed(seed + 3), 0, 1) < p_ws \
        else glass_drops
    cam = None
    if _u(gen, 0, 1) < p_camera:
        cam = {"blur": _u(gen, 0, 0.8), "sigma": _u(gen, 0.0, 0.02), "quality": int(_u(gen, 35, 90)),
               "jpeg": _u(gen, 0, 1) < 0.7}
    ins, tgts = [], []
    for k in range(t):
        img = clean[k:k + 1]
        weather = torch.Generator().manual_seed(seed)  # the same draws every frame: the same drops
        moving = torch.Generator().manual_seed(seed + 1 + k)
        y, _ = rain_pair(img, weather, p_camera=0.0, noise_gen=moving, **kw)
        if k >= wipe:
            dry, _ = rain_pair(img, torch.Generator().manual_seed(seed), p_camera=0.0, noise_gen=moving,
                               **{**kw, "p_drops": 0.0})
            y = wiper(y, dry, torch.Generator().manual_seed(seed + 7)) if k == wipe else dry
        for at, s in arrivals:
            if k >= at and not (at < wipe <= k):  # drops that landed before the sweep are gone after it
                y = late_drops(y, torch.Generator().manual_seed(s), density=_u(torch.Generator().manual_seed(s + 1), 0, 0.3))
        if running is not None:  # drops placed on the frame moved up, then moved back down with their change
            s_run, speed, dens = running
            d = int(round(speed * k))
            up = torch.roll(y, -d, dims=2)
            y = y + torch.roll(late_drops(up, torch.Generator().manual_seed(s_run), density=dens) - up, d, dims=2)
        if drop_mask and k == t - 1:
            dry, _ = rain_pair(img, torch.Generator().manual_seed(seed), p_camera=0.0,
                               noise_gen=torch.Generator().manual_seed(seed + 1 + k), glass=False, **kw)
            mask = (y.clamp(0, 1) - dry.clamp(0, 1)).abs().amax(1, keepdim=True)
        tgt = img
        if cam is not None:
            params = {**cam, "noise": torch.randn(img.shape, generator=moving)}
            y, _ = camera(y.clamp(0, 1), moving, params)
            tgt, _ = camera(img, moving, params)
        ins.append(y.clamp(0, 1))
        tgts.append(tgt)
    return (torch.cat(ins), torch.cat(tgts)) + ((mask,) if drop_mask else ())
