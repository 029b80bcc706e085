"""The light renderer of the day2night plugin: a fixed function (no random numbers, nothing learned) exported
inside its graph after the network (``networks.Relit``), and the detectors it shares with the night synthesiser
(:mod:`trainer.synth`): the sky, tail lights and lamps of the day frame, yellow lane paint.

* :func:`relight` - the day frame's sky made a night sky, the light sources it shows lit with halos, pools and
  reflections, the road ahead in the car's own headlights, colour faded; :func:`no_magenta`, :func:`dim_paint`,
  :func:`paint_lines`, :func:`tail_red_on_grid` - the pieces ``networks.Relit`` calls beside it.
* :func:`sky_mask` - where the day frame shows sky.

Float tensors NCHW RGB in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .imaging import _gauss_blur, _lin_luma, _wide_blur, linear_to_srgb, srgb_to_linear



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
    # the top row kept, the rest 0: a product with a constant (zeros made and joined at run time would be
    # made on the host by an ONNX interpreter and copied to the GPU every frame)
    rows = int(small.shape[2])
    seed = small * (torch.arange(rows, device=m.device) == 0).to(small.dtype).view(1, 1, rows, 1)
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


# How dark the night is (``relight``'s ``exposure``). "bright": the network's night as it is, a camera that
# gains night up (the FLIR frames it was tuned against: mean luma about 125 of 255 there, about 30 on day
# frames of ours). "dashcam": what an ordinary dashcam records: the scene at DASHCAM_GAIN of that in linear
# light wherever the car's own headlights do not reach, the road ahead lit by them (DASHCAM_CONE at the
# brightest), the light sources as bright as before (they over-expose in both).
EXPOSURES = {  # name: what ``streamgan models`` says of it
    "dashcam": "as dark as an ordinary dashcam records night: black sky, the road ahead in the car's own "
               "headlights, the rest near black",
    "bright": "a camera that gains night up: the scene visible throughout, as the FLIR night frames",
}
DASHCAM_GAIN = 0.25
DASHCAM_CONE = 3.0
DASHCAM_SKY = 0.3  # the night sky darker again: no city glow on an open road


def headlight_cone(h: int, w: int, device=None) -> torch.Tensor:
    """Where a car's own low beams light the road ahead (1x1xHxW gain shape, 1 at the brightest): below the
    horizon (taken at 55% of the height), a wedge widening towards the bottom, brightest a little way ahead
    and fading into the distance as the light spreads over more road."""
    yy = torch.linspace(0, 1, h, device=device).view(1, 1, h, 1)
    xx = torch.linspace(-1, 1, w, device=device).view(1, 1, 1, w)
    t = ((yy - 0.55) / 0.45).clamp(0, 1)  # 0 at the horizon, 1 at the bottom row
    half = 0.08 + 0.9 * t  # the wedge's half-width (of half the frame's width)
    across = torch.exp(-(xx / half) ** 4)  # flat across the beam, soft edges
    along = (t * 2.5).clamp(0, 1) ** 2 * (1 - 0.3 * t)  # dark at the horizon, brightest some way ahead
    return across * along


def relight(day: torch.Tensor, night: torch.Tensor, paint: bool = True, with_light: bool = False,
            red: torch.Tensor | None = None, exposure: str = "bright"):
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
    lit = _light_up(lin, day, light, ground, pick)
    if exposure == "dashcam":  # the scene darkened, its own headlights on the road; lights and reflections kept
        gain = DASHCAM_GAIN * (1 + DASHCAM_CONE * headlight_cone(h, w, day.device)) * (1 - sky * (1 - DASHCAM_SKY))
        lit = lit + lin * (gain - 1)
    elif exposure != "bright":
        raise ValueError(f"unknown night exposure {exposure!r} (expected one of {', '.join(EXPOSURES)})")
    out = linear_to_srgb(lit).clamp(0, 1)
    return (out, light) if with_light else out
