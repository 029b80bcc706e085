import pytest

torch = pytest.importorskip("torch")

from trainer.networks import (MobileGenerator, NLayerDiscriminator, ResnetGenerator, UnetGenerator,  # noqa: E402
                              build_generator)


@pytest.mark.parametrize("net", [ResnetGenerator(8, 2), UnetGenerator(8, 4), MobileGenerator(8, 2),
                                 MobileGenerator(8, 2, residual=True, norm="none")])
def test_generators_keep_shape_and_range(net):
    x = torch.rand(2, 3, 48, 80) * 2 - 1
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert float(y.abs().max()) <= 1.0


def test_paper_resnet_option_and_mobile_is_much_smaller():
    big = sum(p.numel() for p in ResnetGenerator(64, 9).parameters())
    small = sum(p.numel() for p in MobileGenerator(16, 9).parameters())
    assert 11_300_000 < big < 11_450_000  # pytorch-CycleGAN's resnet_9blocks: 11.378 M parameters
    assert small < big / 40


def test_residual_mobile_starts_as_identity():
    net = MobileGenerator(8, 2, residual=True, norm="none")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.allclose(net(x), x)


def test_patchgan_is_70x70():
    d = NLayerDiscriminator(8, 3, norm="none")
    x = torch.zeros(1, 3, 160, 160, requires_grad=True)
    out = d(x)
    c = out.shape[-1] // 2
    out[0, 0, c, c].backward()  # receptive field of one central output: 70x70 pixels
    g = x.grad[0].abs().sum(0)
    rows, cols = (g.sum(1) > 0).nonzero(), (g.sum(0) > 0).nonzero()
    assert int(rows.max() - rows.min() + 1) == 70
    assert int(cols.max() - cols.min() + 1) == 70


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown generator kind"):
        build_generator("vgg")
