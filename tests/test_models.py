import pytest
import torch

from pruning import models
from pruning.measure import macs, parameters


@pytest.mark.parametrize("name,size,kw", [
    ("lenet5", (1, 28, 28), {}), ("vgg16", (3, 32, 32), {"width": 0.25}), ("vgg11", (3, 32, 32), {}),
    ("resnet20", (3, 32, 32), {}), ("resnet56", (3, 32, 32), {"width": 0.5}),
    ("conv2", (3, 32, 32), {}), ("conv4", (3, 32, 32), {}), ("conv6", (3, 32, 32), {"width": 0.5}),
])
def test_forward_shapes(name, size, kw):
    m = models.build(name, **kw)
    assert m(torch.randn(2, *size)).shape == (2, 10)


def test_vgg_width_and_layout():
    m = models.build("vgg16", width=0.5)
    assert len(m.conv_names()) == 13
    assert [m.features[int(n.split(".")[1])].out_channels for n in m.conv_names()][:3] == [32, 32, 64]
    assert macs(m) == pytest.approx(78.7e6, rel=0.001) and parameters(m) == pytest.approx(3.68e6, rel=0.01)
    explicit = models.VGG(16, widths=[8] * 13)
    assert all(explicit.features[int(n.split(".")[1])].out_channels == 8 for n in explicit.conv_names())


def test_edge_popup_convnets_have_no_bias_and_no_bn():
    m = models.build("conv4")
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    assert all(x.bias is None for x in m.modules() if isinstance(x, (torch.nn.Conv2d, torch.nn.Linear)))


def test_channel_groups_name_real_layers():
    for name in ("lenet5", "vgg16", "resnet20", "conv6"):
        m = models.build(name)
        mods = dict(m.named_modules())
        for g in m.channel_groups():
            assert isinstance(mods[g.conv], torch.nn.Conv2d)
            assert g.bn is None or isinstance(mods[g.bn], torch.nn.BatchNorm2d)
            assert all(c in mods for c in g.consumers)
    assert len(models.build("resnet20").channel_groups()) == 9
    assert len(models.build("resnet56").channel_groups()) == 27


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="unknown model"):
        models.build("alexnet")
    with pytest.raises(ValueError, match="6n\\+2"):
        models.CifarResNet(21)
    with pytest.raises(ValueError, match="13 convs"):
        models.VGG(16, widths=[4, 4])


def test_eval_mode_restores_the_mode_even_on_error():
    from pruning.models import build, eval_mode
    model = build("lenet5").train()
    with eval_mode(model):
        assert not model.training
    assert model.training
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            raise RuntimeError("boom")
    assert model.training
    model.eval()
    with eval_mode(model):
        pass
    assert not model.training
