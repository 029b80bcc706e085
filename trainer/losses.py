"""Objectives: GAN losses (LSGAN default, vanilla, hinge), cycle/identity, paired L1 and SSIM,
distillation, and the CycleGAN image pool."""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn


class GANLoss(nn.Module):
    def __init__(self, mode: str = "lsgan"):
        super().__init__()
        if mode not in ("lsgan", "vanilla", "hinge"):
            raise ValueError(f"unknown gan_mode {mode!r}")
        self.mode = mode

    def forward(self, pred: torch.Tensor, real: bool, for_discriminator: bool = True) -> torch.Tensor:
        if self.mode == "lsgan":
            return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(pred, torch.full_like(pred, 1.0 if real else 0.0))
        if for_discriminator:  # hinge
            return F.relu(1 - pred).mean() if real else F.relu(1 + pred).mean()
        return -pred.mean()


def _gauss_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 - SSIM on images in [-1, 1] (per channel, Gaussian 11x11 window, valid filtering)."""
    x, y = (x + 1) / 2, (y + 1) / 2
    c = x.shape[1]
    w = _gauss_window(device=x.device).repeat(c, 1, 1, 1)
    mu_x, mu_y = F.conv2d(x, w, groups=c), F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x ** 2
    syy = F.conv2d(y * y, w, groups=c) - mu_y ** 2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return 1 - s.mean()


STRUCT_REACH = 12  # pixels: how far the local normalisation (sigma 4) looks


def _luma(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3] + 1) / 2


def local_normalise(y: torch.Tensor, sigma: float = STRUCT_REACH / 3) -> torch.Tensor:
    """(y - local mean) / (local std + 10% of the image's std): brightness- and contrast-invariant."""
    r = int(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=y.dtype, device=y.device)
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    g = g / g.sum()

    def blur(z):
        z = F.conv2d(F.pad(z, (r, r, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
        return F.conv2d(F.pad(z, (0, 0, r, r), mode="reflect"), g.view(1, 1, -1, 1))

    mu = blur(y)
    sd = (blur(y * y) - mu * mu).clamp_min(1e-8).sqrt()
    eps = 0.1 * y.flatten(1).std(1).view(-1, 1, 1, 1) + 1e-4
    return (y - mu) / (sd + eps)


def structure_loss(out: torch.Tensor, inp: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """L1 between locally normalised luma of output and input (images in [-1, 1]): keeps the scene's
    edges and textures where they were while leaving brightness and colour free to change.
    ``weight`` (Nx1xHxW in [0, 1]) says where structure counts (day2night: not in the daylit sky,
    whose clouds a night camera does not see)."""
    d = (local_normalise(_luma(out)) - local_normalise(_luma(inp))).abs()
    if weight is None:
        return d.mean()
    return (d * weight).sum() / weight.sum().clamp_min(1.0)


def cycle_loss(rec: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(rec, real)


def identity_loss(same: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(same, real)


def paired_l1(fake: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """L1 to the target; ``weight`` (Nx1xHxW, >= 1) makes some pixels count more, normalised so a
    weight of ones gives the plain L1."""
    if weight is None:
        return F.l1_loss(fake, target)
    return ((fake - target).abs() * weight).sum() / (weight.sum() * fake.shape[1])


def l1_emphasis(target: torch.Tensor, sky: torch.Tensor | None, light: float, sky_weight: float,
                inp: torch.Tensor | None = None, rain: float = 0.0) -> torch.Tensor:
    """Per-pixel L1 weights (images in [-1, 1]): 1 everywhere, plus ``light`` where the target is bright
    (day2night's light sources: a few pixels that a plain mean would let the network ignore), plus
    ``sky_weight`` in the day frame's sky (``sky``, Nx1xHxW in [0, 1]), plus ``rain`` where the input
    differs from the target (derain: the drops and streaks themselves, which a mean over the frame, mostly
    clean, lets the network leave; a difference of 0.05 in [0, 1] or more counts in full)."""
    w = 1 + light * ((_luma(target) - 0.45) * 4).clamp(0, 1)
    if rain:
        w = w + rain * (((inp - target).abs().amax(1, keepdim=True) - 0.02) / 0.08).clamp(0, 1)
    return w if sky is None else w + sky_weight * sky


def distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(student, teacher.detach())


class ImagePool:
    """History of generated images (CycleGAN): half the time the discriminator sees an older fake."""

    def __init__(self, size: int = 50, seed: int = 0):
        self.size, self.images, self.rng = size, [], random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img)
                out.append(img)
            elif self.rng.random() < 0.5:
                i = self.rng.randrange(self.size)
                out.append(self.images[i].clone())
                self.images[i] = img
            else:
                out.append(img)
        return torch.cat(out)
