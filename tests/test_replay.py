"""replay.forward_after: model(x) again, rerunning only what follows the changed layers."""
import pytest
import torch
from torch import nn

from pruning import models, replay, surgery
from pruning.methods import sensitivity as sens


def _net(name):
    torch.manual_seed(0)
    model = models.build(name, width=0.25) if name.startswith("vgg") else models.build(name, width=0.5)
    with torch.no_grad():                          # BN statistics away from 0 / 1, so that a wrong cache shows
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("name", ["vgg16", "resnet20"])
def test_forward_after_equals_the_full_forward_with_a_group_zeroed(name):
    model = _net(name)
    x = torch.randn(6, 3, 32, 32)
    deep = [g for g in surgery.channel_groups(model)][-2]        # deep, and for the ResNet one read by a shortcut
    names = [deep.conv, *deep.coupled, *deep.all_norms]
    with torch.no_grad():
        forward = replay.forward_after(model, names, x)
        assert torch.equal(forward(), model(x))
        weight = model.get_submodule(deep.conv).weight
        saved = weight[1].clone()
        weight[1] = 0                                            # change a named module in place ...
        changed = model(x)
        assert torch.equal(forward(), changed)                   # ... and the replay sees it
        weight[1] = saved
        assert not torch.allclose(changed, model(x))             # the change mattered
        assert torch.equal(forward(), model(x))


def test_forward_after_refuses_a_module_the_forward_never_uses():
    model = _net("vgg16")
    with pytest.raises(ValueError, match="none of"):
        replay.forward_after(model, ["no.such.layer"], torch.randn(1, 3, 32, 32))


def test_an_untraceable_model_falls_back_to_the_full_forward():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else -self.conv(x)    # data-dependent: symbolic_trace fails

    model = Branchy().eval()
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(replay.forward_after(model, ["conv"], x)(), model(x))


def test_the_removal_losses_use_it_and_still_match_a_plain_loop():
    model = _net("resnet20")
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    g = surgery.channel_groups(model)[-1]
    fast = sens.removal_losses(model, x, y, g.conv)
    import torch.nn.functional as F
    with torch.no_grad():
        base = float(F.cross_entropy(model(x), y))
        n = model.get_submodule(g.conv).out_channels
        for c in (0, n // 2):
            pruned = surgery.remove_channels(model, {g.conv: [i for i in range(n) if i != c]})
            assert float(fast[c]) == pytest.approx(float(F.cross_entropy(pruned(x), y)) - base, abs=1e-5)
