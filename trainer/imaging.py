"""Small image operations the synthesisers and the light renderer share (NCHW float tensors).

Every random number comes from the ``torch.Generator`` given, so a seed gives the same result bit for bit.
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


def _lin_luma(lin: torch.Tensor) -> torch.Tensor:
    """Luminance (Rec. 709 weights) of linear RGB, Nx1xHxW."""
    return 0.2126 * lin[:, 0:1] + 0.7152 * lin[:, 1:2] + 0.0722 * lin[:, 2:3]


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(1e-8) ** (1 / 2.4) - 0.055)
