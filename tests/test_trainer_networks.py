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


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_warm_start_into_a_deeper_net_with_a_smaller_output_kernel(norm):
    """Added residual blocks start as the identity and a 7x7 output kernel is cut to its 3x3 centre: a source
    whose output kernel is zero outside that centre gives exactly the same outputs after the warm start."""
    from trainer.train import load_net, warm_start_state

    torch.manual_seed(0)
    src = MobileGenerator(8, 2, norm=norm)
    for p in src.parameters():
        p.data.normal_(0, 0.1)
    ring = torch.ones_like(src.outc[1].weight, dtype=torch.bool)
    ring[:, :, 2:5, 2:5] = False
    src.outc[1].weight.data[ring] = 0
    dst = MobileGenerator(8, 5, norm=norm, out_kernel=3)
    state, notes = warm_start_state(dst, src.state_dict())
    load_net(dst, state, "src", "G", "src", "dst")
    assert notes == ["outc.1.weight: 7x7 kernel cut to its 3x3 centre", "residual blocks 2-4 added as the identity"]
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(dst(x), src(x), atol=1e-6)


def test_warm_start_leaves_other_differences_to_the_architecture_error():
    from trainer.options import CheckpointError
    from trainer.train import load_net, warm_start_state

    dst = MobileGenerator(8, 2)
    state, _ = warm_start_state(dst, MobileGenerator(16, 2).state_dict())  # other widths: no guessing
    with pytest.raises(CheckpointError, match="another architecture"):
        load_net(dst, state, "src", "G", "src", "dst")
    state, _ = warm_start_state(dst, MobileGenerator(8, 2, out_kernel=3).state_dict())  # a kernel is never grown
    with pytest.raises(CheckpointError, match="another architecture"):
        load_net(dst, state, "src", "G", "src", "dst")
    deeper = MobileGenerator(8, 3, norm="instance")  # instance norm: an added block would not stay the identity
    state, notes = warm_start_state(deeper, MobileGenerator(8, 2, norm="instance").state_dict())
    assert notes == []
    with pytest.raises(CheckpointError, match="another architecture"):
        load_net(deeper, state, "src", "G", "src", "dst")
    partial = MobileGenerator(8, 2, norm="none").state_dict()
    del partial["blocks.1.body.7.bias"]  # a block with some of its weights is not a new block
    state, notes = warm_start_state(MobileGenerator(8, 2, norm="none"), partial)
    assert notes == []
    with pytest.raises(CheckpointError, match="another architecture"):
        load_net(MobileGenerator(8, 2, norm="none"), state, "src", "G", "src", "dst")
