"""Image quality measures used by the evaluation.

* :func:`psnr_y` / :func:`ssim_y` - the deraining benchmark protocol (see ``shared/data/README.md``):
  luma Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 (MATLAB rgb2ycbcr on doubles, not rounded);
  PSNR = 10 log10(1 / MSE); SSIM with an 11x11 Gaussian (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255 on
  Y * 255, 'valid' filtering, mean of the map; images with min(H, W) >= 384 are first box-filtered and
  subsampled by round(min(H, W) / 256).
* :func:`structure_score` - SSIM between input and output luminance after local normalisation (so a
  global change of brightness or contrast keeps the score, a change of structure loses it).
* :func:`night_distance` - sliced Wasserstein distance between patch statistics (5x5 luminance patches,
  mean chroma, mean gradient magnitude) of two sets of images.
* :func:`flicker` - mean absolute change between consecutive frames.

Inputs are uint8 HxWx3 RGB numpy arrays unless noted.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float64) / 255.0
    return (16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((rgb_to_y(a) - rgb_to_y(b)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def psnr_y_colour_aligned(a: np.ndarray, b: np.ndarray) -> float:
    """Y-PSNR of ``a`` against ``b`` after the best gain and offset on ``a``'s luma (least squares): what is
    left when two cameras' exposure and colour balance are taken out (RobotCarDrops' rainy and clean views
    come from two cameras), so a model's change to what the scene shows is not drowned by it."""
    ya, yb = rgb_to_y(a).ravel(), rgb_to_y(b).ravel()
    fit = np.polyfit(ya, yb, 1) if np.ptp(ya) > 0 else np.array([0.0, yb.mean()])
    mse = float(np.mean((np.polyval(fit, ya) - yb) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _gauss(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def _ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """x, y: 1x1xHxW float64; valid filtering."""
    w = _gauss()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = F.conv2d(x, w), F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mx * mx
    syy = F.conv2d(y * y, w) - my * my
    sxy = F.conv2d(x * y, w) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def _box_subsample(y: np.ndarray, f: int) -> np.ndarray:
    """MATLAB: imfilter(img, ones(f)/f^2, 'symmetric', 'same') then img(1:f:end, 1:f:end)."""
    lo = (f - 1) // 2
    hi = f - 1 - lo
    p = np.pad(y, ((lo, hi), (lo, hi)), mode="symmetric")
    t = torch.from_numpy(p)[None, None]
    out = F.conv2d(t, torch.full((1, 1, f, f), 1.0 / (f * f), dtype=torch.float64))[0, 0].numpy()
    return out[::f, ::f]


def ssim_y(a: np.ndarray, b: np.ndarray) -> float:
    ya, yb = rgb_to_y(a) * 255.0, rgb_to_y(b) * 255.0
    f = max(1, round(min(ya.shape) / 256))
    if min(ya.shape) >= 384 and f > 1:
        ya, yb = _box_subsample(ya, f), _box_subsample(yb, f)
    ta, tb = torch.from_numpy(ya)[None, None], torch.from_numpy(yb)[None, None]
    return float(_ssim_map(ta, tb, 255.0).mean())


def _luma01(img: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(img.astype(np.float64) / 255.0)
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[None, None]


def _blur_sep(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders (same size)."""
    size = int(2 * math.ceil(3 * sigma) + 1)
    x = torch.arange(size, dtype=t.dtype) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    p = size // 2
    t = F.conv2d(F.pad(t, (p, p, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    return F.conv2d(F.pad(t, (0, 0, p, p), mode="reflect"), g.view(1, 1, -1, 1))


def _local_normalise(y: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    mu = _blur_sep(y, sigma)
    sd = (_blur_sep(y * y, sigma) - mu * mu).clamp_min(0).sqrt()
    eps = 0.1 * float(y.std()) + 1e-4  # relative to the image's own contrast: brightness-invariant
    return (y - mu) / (sd + eps)


def structure_score(inp: np.ndarray, out: np.ndarray, short: int = 256) -> float:
    """Computed at ``short`` pixels on the short side (structure, not sensor noise)."""
    if min(inp.shape[:2]) > short:
        inp, out = _resize_short(inp, short), _resize_short(out, short)
    a, b = _local_normalise(_luma01(inp)), _local_normalise(_luma01(out))
    return float(_ssim_map(a, b, 4.0).mean())


def _resize_short(img: np.ndarray, short: int) -> np.ndarray:
    t = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float()
    h, w = img.shape[:2]
    s = short / min(h, w)
    t = F.interpolate(t, size=(round(h * s), round(w * s)), mode="bilinear", antialias=s < 1, align_corners=False)
    return t[0].permute(1, 2, 0).clamp(0, 255).round().byte().numpy()


def patch_features(img: np.ndarray, short: int = 256) -> torch.Tensor:
    """Per 5x5 patch: 25 luma values, mean Cb, mean Cr, mean gradient magnitude (all in [0, 1] units)."""
    x = torch.from_numpy(_resize_short(img, short).astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb, cr = (b - y) * 0.564, (r - y) * 0.713
    gx = F.pad(y[..., :, 1:] - y[..., :, :-1], (0, 1, 0, 0))
    gy = F.pad(y[..., 1:, :] - y[..., :-1, :], (0, 0, 0, 1))
    grad = (gx * gx + gy * gy).sqrt()
    patches = F.unfold(y, 5, stride=2)  # 1 x 25 x L
    extra = [F.avg_pool2d(t, 5, stride=2).flatten(2) for t in (cb, cr, grad)]
    return torch.cat([patches] + extra, 1)[0].T  # L x 28


def night_distance(outputs: list[np.ndarray], night: list[np.ndarray] | dict[str, list[np.ndarray]],
                   n: int = 20000, projections: int = 256, seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance (x100) between patch features of two image sets; lower is closer.
    ``night`` as a dict of sets (e.g. stills of one dataset, frames of one clip): each set gives an
    equal share of the reference patches, however many frames it has."""
    gen = torch.Generator().manual_seed(seed)

    def sample(imgs, k):
        feats = torch.cat([patch_features(i) for i in imgs])
        idx = torch.randint(len(feats), (k,), generator=gen)
        return feats[idx].double()

    a = sample(outputs, n)
    sets = list(night.values()) if isinstance(night, dict) else [night]
    b = torch.cat([sample(s, n // len(sets) + (i < n % len(sets))) for i, s in enumerate(sets)])
    dirs = torch.randn(a.shape[1], projections, generator=gen, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a @ dirs, dim=0)
    pb, _ = torch.sort(b @ dirs, dim=0)
    return float((pa - pb).abs().mean() * 100)


def flicker(frames: list[np.ndarray]) -> float:
    """Mean absolute change (0-255 scale) between consecutive frames."""
    d = [np.abs(frames[i].astype(np.float32) - frames[i - 1].astype(np.float32)).mean() for i in range(1, len(frames))]
    return float(np.mean(d))


def _hessian_blobs(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """Scale-normalised determinant of the Hessian of 1x1xHxW luma at ``sigma`` (bright and dark blobs
    give a large positive value; edges and lines, where one curvature is near zero, do not)."""
    g = _blur_sep(y, sigma)
    dyy = g[:, :, 2:, 1:-1] - 2 * g[:, :, 1:-1, 1:-1] + g[:, :, :-2, 1:-1]
    dxx = g[:, :, 1:-1, 2:] - 2 * g[:, :, 1:-1, 1:-1] + g[:, :, 1:-1, :-2]
    dxy = (g[:, :, 2:, 2:] - g[:, :, 2:, :-2] - g[:, :, :-2, 2:] + g[:, :, :-2, :-2]) / 4
    return F.pad((dxx * dyy - dxy ** 2) * sigma ** 4, (1, 1, 1, 1))


DROP_SCALES = (2.0, 3.5, 6.0)  # pixels at 640x360: the drops of a windshield seen by a dashcam
DROP_STRENGTH = 0.2  # blob strength against the local contrast (see drop_area) counted as a drop
DROP_STAY = 0.8  # share of a window's frames a place must be a blob in to count as a drop on the glass


def _blob_places(img: np.ndarray) -> torch.Tensor:
    """Where a frame (at short side 360) shows a drop-sized blob: the determinant of the Hessian
    (:func:`_hessian_blobs`) at each of ``DROP_SCALES`` over the local variance of luma around it (three
    times that scale), above ``DROP_STRENGTH``; each blob with the disc around it. Against the local
    contrast, so a faint drop on fog counts as much as a dark one on the road, and texture does not."""
    y = torch.from_numpy(rgb_to_y(_resize_short(img, 360))).float()[None, None]
    hit = torch.zeros_like(y, dtype=torch.bool)
    for sigma in DROP_SCALES:
        mu = _blur_sep(y, 3 * sigma)
        var = (_blur_sep(y * y, 3 * sigma) - mu * mu).clamp_min(0)
        blob = (_hessian_blobs(y, sigma) / (var + 1e-4) > DROP_STRENGTH).float()
        r = int(round(sigma))
        hit |= F.max_pool2d(blob, 2 * r + 1, 1, r) > 0
    return hit[0, 0]


def drop_area(frames: list[np.ndarray], window: int = 15) -> float:
    """Share of the picture covered by drops that stay on the glass (0..1), for a clip (frames in order).

    In windows of ``window`` consecutive frames, a place counts where a drop-sized blob
    (:func:`_blob_places`) is seen in at least ``DROP_STAY`` of the frames: drops on the glass stay, what
    the scene shows moves on. The mean over the windows. The constants were set on clean clips and
    synthetic drops only: clean driving clips score about 0.01 (Udacity's two clips: 0.010, 0.008),
    synthetic drops on the glass 0.04 over one of them, and blurring (1.5 px at 360p) does not lower it
    (0.047): removing the drops does."""
    shares = []
    for s in range(0, max(1, len(frames) - window + 1), window):
        seen = torch.stack([_blob_places(f) for f in frames[s:s + window]]).float().mean(0)
        shares.append(float((seen >= DROP_STAY).float().mean()))
    return float(np.mean(shares))
