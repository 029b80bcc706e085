import pytest

torch = pytest.importorskip("torch")

from trainer.rain import add_rain, line_kernel, rain_streaks  # noqa: E402
from trainer.synth import darken_filter, make_night  # noqa: E402


def _img(seed=0, h=48, w=64):
    return torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 0.6 + 0.2


@pytest.mark.parametrize("fn", [add_rain, make_night])
def test_synth_is_deterministic_given_seed(fn):
    x = _img()
    a = fn(x, torch.Generator().manual_seed(7))
    b = fn(x, torch.Generator().manual_seed(7))
    c = fn(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_streak_rain_is_additive_and_achromatic():
    x = _img()
    y = add_rain(x, torch.Generator().manual_seed(1), p_streaks_only=1.0)
    d = y - x
    assert float(d.min()) >= -1e-6  # streaks only brighten (Rain12-style additive rain)
    assert float(d.mean()) > 0.002  # and there is rain
    unclipped = (y < 0.999).all(1, keepdim=True).expand_as(d)
    spread = (d.max(1).values - d.min(1).values)[unclipped[:, 0]]
    assert float(spread.max()) < 1e-5  # same amount on R, G and B


def test_rain_streak_density_matches_rain12_range():
    means = [float(rain_streaks(320, 480, torch.Generator().manual_seed(s)).mean()) for s in range(12)]
    med = sorted(means)[len(means) // 2]
    assert 0.005 < med < 0.06  # Rain12's rain layers average 0.007-0.035


def test_line_kernel_orientation():
    k = line_kernel(9, 0.0)
    assert k.shape == (9, 9)
    assert float(k[:, 4].sum()) > 0.9 * float(k.sum())  # vertical
    k = line_kernel(9, 45.0)
    assert float(k.diagonal().sum()) > 0.5 * float(k.sum())  # top-left to bottom-right
    assert float(k.flip(1).diagonal().sum()) < 0.2 * float(k.sum())


def test_video_rain_keeps_parameters_moves_streaks():
    x = _img()[:1]
    a = add_rain(x, torch.Generator().manual_seed(3), noise_gen=torch.Generator().manual_seed(1))
    b = add_rain(x, torch.Generator().manual_seed(3), noise_gen=torch.Generator().manual_seed(2))
    assert not torch.equal(a, b)
    assert abs(float((a - x).mean()) - float((b - x).mean())) < 0.5 * float((a - x).mean())


def test_night_is_darker_than_day_and_filter_baseline():
    x = _img()
    n = make_night(x, torch.Generator().manual_seed(0))
    assert float(n.mean()) < 0.6 * float(x.mean())
    d = darken_filter(x)
    assert float(d.mean()) < 0.6 * float(x.mean())
    assert float(d[:, 2].mean()) > float(d[:, 0].mean())  # cool tint


def test_drops_are_whole_ellipses_whatever_their_window():
    """The drop field evaluates each drop in a window sized by its bucket: every drop (round, elongated,
    tilted, trails, cut by the frame's edge) must match the dense whole-frame evaluation."""
    from trainer import rain as synth

    for seed, (h, w, n, r_lo, r_hi) in enumerate([(96, 160, 300, 1.0, 8.0), (120, 90, 20, 2.0, 30.0),
                                                   (64, 64, 4, 3.0, 60.0)]):
        drops = synth._place_drops(h, w, torch.Generator().manual_seed(seed), n, r_lo, r_hi)
        hgt, ox, oy, rad = synth._drop_maps(drops, h, w)
        cy, cx, rx, ry, tilt = drops.view(-1, 5, 1, 1).unbind(1)
        yy = torch.arange(h).view(1, h, 1).float()
        xx = torch.arange(w).view(1, 1, w).float()
        dy = ((yy - cy) / ry).expand(-1, h, w)
        dx = (xx - cx + tilt * (yy - cy)) / rx
        top, i = (1 - dx * dx - dy * dy).max(0)
        assert torch.allclose(hgt[0, 0], top.clamp_min(0).sqrt(), atol=1e-5)
        inside = top > 0.01
        assert float(inside.float().mean()) > 0.01
        assert torch.allclose(ox[0, 0][inside], dx.gather(0, i[None])[0][inside], atol=1e-4)
        assert torch.allclose(rad[0, 0][inside], ((rx + ry) / 2).view(-1)[i][inside], atol=1e-4)


@pytest.mark.parametrize("sigma", [2.0, 6.0])
@pytest.mark.parametrize("zeros", [False, True])
def test_wide_blurs_are_the_same_numbers_as_one_row_convolution(sigma, zeros):
    """Rows 15 or more wide are blurred as columns of the transposed image (OpenVINO's bf16 CPU kernels hang
    on 1xK depthwise convolutions): the result is a plain separable Gaussian blur all the same."""
    import math

    import torch.nn.functional as F

    from trainer.imaging import _gauss_blur

    x = torch.rand(1, 3, 40, 60, generator=torch.Generator().manual_seed(0))
    r = math.ceil(2.5 * sigma)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1.0) / sigma) ** 2)
    k = k / k.sum()
    across, down = k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), k.view(1, 1, -1, 1).repeat(3, 1, 1, 1)
    if zeros:
        ref = F.conv2d(F.conv2d(x, across, padding=(0, r), groups=3), down, padding=(r, 0), groups=3)
    else:
        ref = F.conv2d(F.pad(F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), across, groups=3), (0, 0, r, r),
                             mode="replicate"), down, groups=3)
    assert torch.allclose(_gauss_blur(x, sigma, zeros), ref, atol=1e-6)
