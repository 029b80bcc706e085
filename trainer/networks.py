"""Generators and discriminators, one short function or class each (pytorch-CycleGAN-and-pix2pix style).

* ``ResnetGenerator``   - the CycleGAN generator (c7s1-ngf, two stride-2 downs, n residual blocks, two ups).
* ``UnetGenerator``     - the pix2pix U-Net (skip connections at every scale).
* ``MobileGenerator``   - compact real-time generator: the ResNet layout with depthwise-separable residual
  blocks (GAN Compression style), optional encoder->decoder additive skips and optional residual output
  (``y = clamp(x + f(x))``), which converges much faster for restoration tasks like deraining.
* ``NLayerDiscriminator`` - the 70x70 PatchGAN (n_layers=3).

All generators map NCHW RGB in [-1, 1] to the same shape and range; H and W must be multiples of 4
(``size_multiple`` of the architecture, see :func:`size_multiple`).
"""

from __future__ import annotations

import torch
from torch import nn

from .lights import dim_paint, no_magenta, paint_lines, relight, tail_red_on_grid


def norm_layer(kind: str, ch: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


class ResnetBlock(nn.Module):
    def __init__(self, ch: int, norm: str = "instance"):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), norm_layer(norm, ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), norm_layer(norm, ch),
        )

    def forward(self, x):
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN generator; ``ngf=64, n_blocks=9`` is the paper's configuration."""

    def __init__(self, ngf: int = 64, n_blocks: int = 9, norm: str = "instance"):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), norm_layer(norm, ngf), nn.ReLU(True)]
        for m in (1, 2):
            layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1), norm_layer(norm, ngf * m * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, norm) for _ in range(n_blocks)]
        for m in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1),
                       norm_layer(norm, ngf * m // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class UnetGenerator(nn.Module):
    """pix2pix U-Net with ``num_downs`` stride-2 levels (H, W multiples of 2**num_downs)."""

    def __init__(self, ngf: int = 64, num_downs: int = 7, norm: str = "instance"):
        super().__init__()
        chans = [min(ngf * 2 ** i, ngf * 8) for i in range(num_downs)]
        self.downs = nn.ModuleList()
        cin = 3
        for i, c in enumerate(chans):
            self.downs.append(nn.Sequential(
                nn.LeakyReLU(0.2, True) if i else nn.Identity(), nn.Conv2d(cin, c, 4, 2, 1),
                norm_layer(norm, c) if 0 < i < num_downs - 1 else nn.Identity()))
            cin = c
        self.ups = nn.ModuleList()
        for i in reversed(range(num_downs)):
            c_in = chans[i] * (1 if i == num_downs - 1 else 2)
            c_out = chans[i - 1] if i else 3
            tail = [nn.Tanh()] if i == 0 else [norm_layer(norm, c_out)]
            self.ups.append(nn.Sequential(nn.ReLU(True), nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), *tail))

    def forward(self, x):
        skips = []
        for d in self.downs:
            x = d(x)
            skips.append(x)
        skips.pop()
        for u in self.ups:
            x = u(x)
            if skips:
                x = torch.cat([x, skips.pop()], 1)
        return x


class SeparableBlock(nn.Module):
    """Residual block of two depthwise-separable 3x3 convs (depthwise 3x3 -> pointwise 1x1)."""

    def __init__(self, ch: int, norm: str = "instance"):
        super().__init__()

        def sep(relu: bool):
            return [nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, groups=ch, bias=False), nn.Conv2d(ch, ch, 1),
                    norm_layer(norm, ch)] + ([nn.ReLU(True)] if relu else [])

        self.body = nn.Sequential(*sep(True), *sep(False))

    def can_be_identity(self) -> bool:
        """Instance norm turns the first small update of a zeroed layer into a unit-variance signal: such a
        block cannot start as a stable identity."""
        return not isinstance(self.body[-1], nn.InstanceNorm2d)

    def identity_(self) -> "SeparableBlock":
        """Make the block pass its input through unchanged: zero its last layer's scale (batch norm) or its
        last pointwise convolution (no norm)."""
        if not self.can_be_identity():
            raise ValueError("a block with instance norm cannot start as the identity")
        last = self.body[-1] if isinstance(self.body[-1], nn.BatchNorm2d) else self.body[-2]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        return self

    def forward(self, x):
        return x + self.body(x)


class MobileGenerator(nn.Module):
    """Compact generator for real-time video: ResNet layout with separable residual blocks.

    ``skips``: add encoder features to the decoder at the same scale (cheap, keeps fine detail).
    ``residual``: predict a correction, ``y = clamp(x + f(x), -1, 1)``; otherwise ``y = tanh(f(x))``.
    ``out_kernel``: the output convolution's kernel (7 as in CycleGAN). It runs at full resolution with 3
    output channels, which CPU runtimes vectorise poorly: at 640x360 in OpenVINO a 3x3 one makes the whole
    ngf-16, 9-block network about 1.5 times as fast as a 7x7 one.
    """

    def __init__(self, ngf: int = 16, n_blocks: int = 6, norm: str = "instance",
                 skips: bool = True, residual: bool = False, out_kernel: int = 7, extra_in: int = 0):
        super().__init__()
        self.skips, self.residual = skips, residual
        self.inc = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), norm_layer(norm, ngf), nn.ReLU(True))
        # ``extra_in`` channels beside the image (a temporal model's features, see TemporalDerain), through a 3x3
        # convolution added to the first one's: zero at the start, so a warm start begins as the image-only net
        self.inc_extra = None
        if extra_in:
            self.inc_extra = nn.Conv2d(extra_in, ngf, 3, padding=1, padding_mode="replicate")
            nn.init.zeros_(self.inc_extra.weight)
            nn.init.zeros_(self.inc_extra.bias)
        self.down1 = nn.Sequential(nn.Conv2d(ngf, ngf * 2, 3, 2, 1), norm_layer(norm, ngf * 2), nn.ReLU(True))
        self.down2 = nn.Sequential(nn.Conv2d(ngf * 2, ngf * 4, 3, 2, 1), norm_layer(norm, ngf * 4), nn.ReLU(True))
        self.blocks = nn.Sequential(*[SeparableBlock(ngf * 4, norm) for _ in range(n_blocks)])
        self.up1 = nn.Sequential(nn.ConvTranspose2d(ngf * 4, ngf * 2, 3, 2, 1, output_padding=1),
                                 norm_layer(norm, ngf * 2), nn.ReLU(True))
        self.up2 = nn.Sequential(nn.ConvTranspose2d(ngf * 2, ngf, 3, 2, 1, output_padding=1),
                                 norm_layer(norm, ngf), nn.ReLU(True))
        self.outc = nn.Sequential(nn.ReflectionPad2d(out_kernel // 2), nn.Conv2d(ngf, 3, out_kernel))
        if residual:  # start as the identity mapping
            nn.init.zeros_(self.outc[1].weight)
            nn.init.zeros_(self.outc[1].bias)

    def forward(self, x, extra=None):
        if self.inc_extra is None:
            e0 = self.inc(x)
        else:
            pad, conv, norm, relu = self.inc
            e0 = relu(norm(conv(pad(x)) + self.inc_extra(extra)))
        e1 = self.down1(e0)
        y = self.blocks(self.down2(e1))
        y = self.up1(y)
        if self.skips:
            y = y + e1
        y = self.up2(y)
        if self.skips:
            y = y + e0
        y = self.outc(y)
        return torch.clamp(x + y, -1.0, 1.0) if self.residual else torch.tanh(y)


class NLayerDiscriminator(nn.Module):
    """PatchGAN; ``n_layers=3`` gives the 70x70 receptive field of pix2pix/CycleGAN."""

    def __init__(self, ndf: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        layers = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1), norm_layer(norm, ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def build_generator(kind: str, **kw) -> nn.Module:
    kinds = {"resnet": ResnetGenerator, "unet": UnetGenerator, "mobile": MobileGenerator}
    if kind not in kinds:
        raise ValueError(f"unknown generator kind {kind!r} (expected one of {sorted(kinds)})")
    return kinds[kind](**kw)


def build_discriminator(ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> nn.Module:
    return NLayerDiscriminator(ndf, n_layers, norm)


def size_multiple(kind: str, **kw) -> int:
    return 2 ** kw.get("num_downs", 7) if kind == "unet" else 4


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """Normal(0, 0.02) init of conv weights as in CycleGAN (zero-initialised layers stay zero)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.weight.abs().sum() > 0:
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


class Relit(nn.Module):
    """A day->night generator followed by the fixed light renderer of the night synthesiser
    (:func:`trainer.lights.relight`): the day frame's sky goes dark, and the light sources the day frame
    shows (tail and brake lights, red traffic lights, lamp heads on poles) glow, with pools and
    reflections on the road. The renderer runs on a fixed ``size`` grid (its blur radii and masks are
    made for it) and its change to the generator's output is resized to the frame, so one ONNX graph
    takes any size. The generator's output is first held to no more magenta than the day frame
    (:func:`trainer.lights.no_magenta`), and yellow lane paint is dimmed at the frame's own size at the end
    (:func:`trainer.lights.dim_paint` with the lines found on the grid), where the renderer added no light.
    Nothing in it is learned."""

    def __init__(self, net: nn.Module, size: tuple[int, int] = (144, 256), exposure: str = "bright"):
        super().__init__()
        self.net, self.size, self.exposure = net, tuple(size), exposure

    def forward(self, x):
        day01 = (x + 1) / 2
        night = 2 * no_magenta((self.net(x) + 1) / 2, day01) - 1  # no salmon-pink concrete
        # resized first, then mapped to [0, 1]: the same values, with the arithmetic on the small grid
        grid = lambda t: (nn.functional.interpolate(t, size=self.size, mode="bilinear", align_corners=False) + 1) / 2  # noqa: E731
        full = (x.shape[2], x.shape[3])
        up = lambda t: nn.functional.interpolate(t, size=full, mode="bilinear", align_corners=False)  # noqa: E731
        n, day = grid(night), grid(x)
        # tail lights' red is found at this size too: resized first, a light a few pixels wide blinks on video
        red = tail_red_on_grid(day01, self.size)
        lit, light = relight(day, n, paint=False, with_light=True, red=red, exposure=self.exposure)
        if self.exposure == "bright":
            out = torch.clamp(night + up(2 * (lit - n)), -1.0, 1.0)  # the change, back in the [-1, 1] range
        else:  # darker: the frame's own detail darkened with it (added as it is, it would stand out as noise)
            k = ((lit + 0.02) / (n + 0.02)).clamp(0, 1.5)
            out = torch.clamp(2 * (up(lit) + up(k) * ((night + 1) / 2 - up(n))) - 1, -1.0, 1.0)
        # yellow lane paint, a pixel or two wide, is found on the grid and dimmed pixel by pixel at this
        # size, in sRGB (no conversion of the full frame), where the renderer added no light
        return 2 * dim_paint((out + 1) / 2, day01, lines=up(paint_lines(day, light)), srgb=True) - 1


class SourceResolution(nn.Module):
    """Run a generator at a processing size and apply its result at the input's own size.

    The network sees the frame at short side ``short_side`` (never upscaled). The output at full size is
    the network's output, upsampled, plus the frame's own fine detail (the full-size frame minus its
    processing-size version, upsampled), scaled by how much the network brightened or darkened each place:
    ``y = up(G(s)) + k * (x - up(s))``. For a residual generator (derain) ``k = 1``: its correction is
    added to the full-size frame, so detail it never touches comes through untouched and a clean HD
    frame leaves as sharp as it came. For a generator that relights the frame (day2night) ``k`` is the
    local gain ``(G(s) + 1 + e) / (s + 1 + e)`` (in [0, 1.5]), so day detail is darkened with the scene.
    One ONNX graph with dynamic sizes; the cost is the network at the processing size plus resizes.
    """

    def __init__(self, net: nn.Module, short_side: int, multiple: int = 4, gain: bool = False, eps: float = 0.1):
        super().__init__()
        self.net, self.short_side, self.multiple, self.gain, self.eps = net, short_side, multiple, gain, eps

    def forward(self, x):
        hw = torch._shape_as_tensor(x)[2:].float()
        s = torch.clamp(self.short_side / torch.min(hw), max=1.0)
        small_hw = (torch.floor(hw * s / self.multiple) * self.multiple).long()
        small = nn.functional.interpolate(x, size=(small_hw[0], small_hw[1]), mode="bilinear", align_corners=False)
        out = self.net(small)
        full = (x.shape[2], x.shape[3])
        up = lambda t: nn.functional.interpolate(t, size=full, mode="bilinear", align_corners=False)  # noqa: E731
        if not self.gain:
            return torch.clamp(x + up(out - small), -1.0, 1.0)
        k = torch.clamp((out + 1 + self.eps) / (small + 1 + self.eps), 0.0, 1.5)
        return torch.clamp(up(out) + up(k) * (x - up(small)), -1.0, 1.0)


def temporal_features(small: torch.Tensor, state: torch.Tensor, keep: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed (not learned) temporal statistics of a stream at the network's size, in the model's range.

    ``state`` (N x 8 x h x w, all zero for a new stream): the frames' running mean (3), the running mean of
    the change between consecutive frames (1), the previous frame (3) and how much history there is (1, from
    0 to 1). Drops sit on the glass: where the scene moves they stay in the running mean while the scene
    blurs out of it, and the change there is small beside the change around them. Returns the network's
    extra input (the frame minus its running mean, the change, the history: 5 channels) and the new state.
    """
    mean, act, prev, seen = state[:, 0:3], state[:, 3:4], state[:, 4:7], state[:, 7:8]
    change = (small - prev).abs().mean(1, keepdim=True) * seen  # nothing to compare on a stream's first frame
    act = seen * (keep * act + (1 - keep) * change) + (1 - seen) * change
    mean = seen * (keep * mean + (1 - keep) * small) + (1 - seen) * small
    seen = torch.clamp(seen + 0.25, max=1.0)
    new = torch.cat([mean, act, small, seen], 1)
    return torch.cat([small - mean, 5 * act, seen], 1), new


TEMPORAL_STATE = 8  # channels of temporal_features' state
TEMPORAL_EXTRA = 5  # channels it adds to the network's input


class _AtNetworkSize(nn.Module):
    """What the temporal models share: ``(frame, state) -> (derained frame, new state)`` with the network at
    short side ``short_side`` (as :class:`SourceResolution`, never upscaled), its correction added to the
    full-size frame. The network's size is computed in integers (``streamgan.temporal.state_size`` follows
    the same rule); the state has that size divided by ``state_scale``. Subclasses give ``step`` (the model
    at the network's size) and ``advance`` (the new state alone, as training runs a clip's first frames)."""

    state_channels, state_scale = 0, 1

    def zero_state(self, n: int, h: int, w: int) -> torch.Tensor:
        """A new stream's state for frames of h x w at the network's size."""
        return torch.zeros(n, self.state_channels, h // self.state_scale, w // self.state_scale)

    def forward(self, x, state):
        # the network's size in integers (exact in every runtime, as the runtime computes it for the state)
        hw = torch._shape_as_tensor(x)[2:]
        short = torch.min(hw)
        scaled = torch.where(short > self.short_side, hw * self.short_side // short, hw)
        small_hw = scaled // self.multiple * self.multiple
        small = nn.functional.interpolate(x, size=(small_hw[0], small_hw[1]), mode="bilinear", align_corners=False)
        out, new = self.step(small, state)
        up = nn.functional.interpolate(out - small, size=(x.shape[2], x.shape[3]), mode="bilinear", align_corners=False)
        return torch.clamp(x + up, -1.0, 1.0), new


class TemporalDerain(_AtNetworkSize):
    """A temporal deraining model: the network sees the frame and the stream's temporal statistics
    (:func:`temporal_features`; its state, at the network's size). A stream starts with a zero state; one
    image alone runs with it and is derained from its look alone."""

    state_channels = TEMPORAL_STATE

    def __init__(self, net: MobileGenerator, short_side: int = 360, multiple: int = 4, keep: float = 0.8):
        super().__init__()
        self.net, self.short_side, self.multiple, self.keep = net, short_side, multiple, keep

    def step(self, small: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network at its own size: derained ``small`` and the new state (training runs this)."""
        extra, new = temporal_features(small, state, self.keep)
        return self.net(small, extra), new

    def advance(self, small: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return temporal_features(small, state, self.keep)[1]


def push_pull(x: torch.Tensor, weight: torch.Tensor, levels: int = 6) -> torch.Tensor:
    """``x`` filled where ``weight`` (N x 1 x H x W in [0, 1]) is low from where it is high around: weighted
    means down a pyramid of halvings, then back up, each level keeping its own mean where it had enough
    weight and taking the coarser level's elsewhere (fixed arithmetic, nothing learned)."""
    nums, dens = [x * weight], [weight]
    for _ in range(levels):
        nums.append(nn.functional.avg_pool2d(nums[-1], 2, ceil_mode=True))
        dens.append(nn.functional.avg_pool2d(dens[-1], 2, ceil_mode=True))
    fill = nums[-1] / (dens[-1] + 1e-3)
    for num, den in zip(reversed(nums[:-1]), reversed(dens[:-1])):
        up = nn.functional.interpolate(fill, size=(num.shape[2], num.shape[3]), mode="bilinear", align_corners=False)
        have = torch.clamp(den * 2, 0.0, 1.0)
        fill = have * num / (den + 1e-3) + (1 - have) * up
    return fill


DROPFILL_STATE = TEMPORAL_STATE + 1  # temporal_features' state and the drop map
DROPFILL_IN = 3 + TEMPORAL_EXTRA + 1 + 1  # the finder's input: frame, temporal statistics, local contrast, last map
DROPFILL_SCALE = 2  # the finder and the state run at the network's size over this


class DropFinder(nn.Module):
    """Where drops on the glass are: a drop map's logits (N x 1 x H x W) from its input (``DROPFILL_IN``
    channels: :meth:`DropFill.find`'s). A 3x3 convolution at the input's size sees the drops' edges; dilated
    3x3 convolutions at half that size see about 30 of its pixels around; a 1x1 convolution joins both.
    Batch norm after each convolution (folded into it in the exported graph) makes it learn several times
    faster. About 6,000 multiply-adds per pixel of its input."""

    def __init__(self, in_ch: int = DROPFILL_IN, full: int = 12, half: int = 24):
        super().__init__()

        def conv(i, o, k=3, stride=1, dilation=1):
            return [nn.Conv2d(i, o, k, stride, dilation * (k // 2), dilation), nn.BatchNorm2d(o), nn.ReLU(True)]

        self.edges = nn.Sequential(*conv(in_ch, full))
        self.down = nn.Sequential(*conv(full, half, stride=2))
        self.context = nn.Sequential(*[m for d in (1, 2, 4) for m in conv(half, half, dilation=d)])
        self.fuse = nn.Sequential(*conv(full + half, 8, k=1), nn.Conv2d(8, 1, 1))
        nn.init.constant_(self.fuse[3].bias, -4.0)  # starts finding little

    def _pairs(self):
        for seq in (self.edges, self.down, self.context, self.fuse):
            for i in range(len(seq) - 1):
                if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], (nn.BatchNorm2d, nn.Identity)):
                    yield seq, i

    @torch.no_grad()
    def fold_(self) -> "DropFinder":
        """Batch norm folded into the convolution before it and replaced by the identity (for export: the
        graph's weights keep this module's names, so ``load_folded`` can start from them)."""
        for seq, i in self._pairs():
            conv, bn = seq[i], seq[i + 1]
            if isinstance(bn, nn.BatchNorm2d):
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                conv.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
                seq[i + 1] = nn.Identity()
        return self

    def load_folded(self, state: dict) -> None:
        """Start from folded weights (an exported plugin's): the convolutions take them and batch norm
        starts as the identity and keeps its statistics fixed (it learns its scale and shift only)."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        if unexpected or any(not isinstance(dict(self.named_modules())[k.rsplit(".", 1)[0]], nn.BatchNorm2d)
                             for k in missing):
            raise ValueError(f"not a drop finder's weights: missing {missing}, unexpected {unexpected}")
        for seq, i in self._pairs():
            bn = seq[i + 1]
            bn.reset_parameters()
            bn.running_var.fill_(1 - bn.eps)
        self.frozen_norm = True

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, "frozen_norm", False):
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x):
        e = self.edges(x)
        c = self.context(self.down(e))
        c = nn.functional.interpolate(c, size=(x.shape[2], x.shape[3]), mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([e, c], 1))


def local_contrast(x: torch.Tensor, k: int = 5, eps: float = 0.02) -> torch.Tensor:
    """The luma's departure from its k x k neighbourhood in units of the neighbourhood's own spread
    (N x 1 x H x W, clipped to +-3): a drop stands out as much in fog as in sun."""
    y = x.mean(1, keepdim=True)

    def pool(t):
        return nn.functional.avg_pool2d(t, k, 1, k // 2, count_include_pad=False)

    d = y - pool(y)
    return torch.clamp(d / (torch.sqrt(pool(d * d)) + eps), -3.0, 3.0)


class DropFill(_AtNetworkSize):
    """A temporal deraining model that finds the drops on the glass and fills them.

    At the network's size the derain generator removes streaks. At half that size (``scale``) the
    :class:`DropFinder` maps the drops from the frame's look (its colour and :func:`local_contrast`), the
    stream's temporal statistics (what stays while the scene moves) and the previous frame's map; the
    generator's output is filled there from around (:func:`push_pull`) and the fill is blended in at the
    network's size. The state, at half the network's size, is :func:`temporal_features`' state and the
    drop map (``DROPFILL_STATE`` channels).

    The fill waits for the stream's history (``temporal_features``' last channel: nothing on a stream's
    first frame, a quarter more each frame, all of it from the fifth): a drop is something that stays on
    the glass, and a lone image (or a stream's first frames, after a reset or a cut) shows nothing that
    stays, only a look that sky, road and branches share. A lone image gets the generator's output."""

    state_channels = DROPFILL_STATE

    def __init__(self, net: MobileGenerator, finder: DropFinder, short_side: int = 360, multiple: int = 4,
                 keep: float = 0.8, scale: int = DROPFILL_SCALE):
        super().__init__()
        self.net, self.finder = net, finder
        self.short_side, self.multiple, self.keep, self.state_scale = short_side, multiple, keep, scale

    def down(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` at the network's size -> at the state's (the finder's and the drop map's)."""
        return nn.functional.avg_pool2d(x, self.state_scale) if self.state_scale > 1 else x

    def find(self, small: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The drop map's logits and the temporal part of the new state (both at the state's size)."""
        half = self.down(small)
        extra, new = temporal_features(half, state[:, :TEMPORAL_STATE], self.keep)
        return self.finder(torch.cat([half, extra, local_contrast(half), state[:, TEMPORAL_STATE:]], 1)), new

    def fill(self, derained: torch.Tensor, drops: torch.Tensor) -> torch.Tensor:
        """``derained`` (network size) filled from around where ``drops`` (state size, in [0, 1]) is high."""
        fill = push_pull(self.down(derained), 1 - drops, levels=5)
        if self.state_scale > 1:  # both up in one resize (one operator, not two, in the graph)
            size = (derained.shape[2], derained.shape[3])
            both = nn.functional.interpolate(torch.cat([fill, drops], 1), size=size, mode="bilinear",
                                             align_corners=False)
            fill, drops = both[:, :3], both[:, 3:]
        return derained + drops * (fill - derained)

    def advance(self, small: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        logits, new = self.find(small, state)
        return torch.cat([new, torch.sigmoid(logits)], 1)

    @staticmethod
    def weigh(drops: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The map the fill uses: ``drops`` times the stream's history before this frame (0 to 1, in
        ``state``), so the fill waits for the history (training fills with it too)."""
        return drops * state[:, TEMPORAL_STATE - 1:TEMPORAL_STATE]

    def step(self, small: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, new = self.find(small, state)
        drops = torch.sigmoid(logits)
        return self.fill(self.net(small), self.weigh(drops, state)), torch.cat([new, drops], 1)
