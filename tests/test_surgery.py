import pytest
import torch
from torch import nn

from pruning import measure, select, surgery
from pruning.methods.baselines import l1_scores, random_scores
from pruning.models import build

SIZES = {"lenet5": (1, 28, 28)}


def _trained_looking(name, **kw):
    """A model in eval mode whose BN layers have non-trivial statistics and affine parameters."""
    torch.manual_seed(0)
    m = build(name, **kw).eval()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.3, 0.3)
    return m


def _conv_macs(conv: nn.Conv2d, out_hw: int) -> int:
    kh, kw = conv.kernel_size
    return conv.out_channels * conv.in_channels * kh * kw * out_hw * out_hw


@pytest.mark.parametrize("name", ["lenet5", "vgg16", "resnet20", "conv4"])
def test_surgery_equals_masked_model_and_flops_drop_as_predicted(name):
    m = _trained_looking(name)
    size = SIZES.get(name, (3, 32, 32))
    keep = select.keep_by_ratio(l1_scores(m), 0.4)
    small = surgery.remove_channels(m, keep)
    masked = surgery.mask_channels(m, keep)
    x = torch.randn(8, *size)
    with torch.no_grad():
        a, b = small(x), masked(x)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert not torch.allclose(a, m(x), atol=1e-3)  # pruning did change the function
    # the masked model costs as much as the original; the small one what selection predicted
    assert measure.macs(masked, size) == measure.macs(m, size)
    assert measure.macs(small, size) == select.macs_after(m, {k: len(v) for k, v in keep.items()}, size)
    assert measure.macs(small, size) < measure.macs(m, size)


def test_flops_drop_matches_hand_formula_on_vgg():
    m = _trained_looking("vgg11", width=0.25)
    names = m.conv_names()
    keep = {names[1]: list(range(10))}  # conv 2 of VGG-11 at width 0.25: 32 -> 10 channels, at 16x16
    small = surgery.remove_channels(m, keep)
    conv2, conv3 = m.get_submodule(names[1]), m.get_submodule(names[2])
    saved = _conv_macs(conv2, 16) * (32 - 10) // 32 + _conv_macs(conv3, 8) * (32 - 10) // 32
    assert measure.macs(m) - measure.macs(small) == saved


def test_torchvision_resnet_blocks_are_supported():
    torchvision = pytest.importorskip("torchvision")
    m = torchvision.models.resnet18().eval()
    groups = surgery.channel_groups(m)
    assert len(groups) == 8
    keep = {groups[0].conv: list(range(32))}
    small = surgery.remove_channels(m, keep)
    masked = surgery.mask_channels(m, keep)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(small(x), masked(x), atol=1e-5)


def test_surgery_keeps_dtype():
    m = build("vgg11", width=0.25).double().eval()
    small = surgery.remove_channels(m, select.keep_by_ratio(l1_scores(m), 0.5))
    assert all(p.dtype == torch.float64 for p in small.parameters())
    assert all(b.dtype == torch.float64 for n, b in small.named_buffers() if "running" in n)
    small(torch.randn(1, 3, 32, 32, dtype=torch.float64))


def test_original_is_untouched_unless_inplace():
    m = build("vgg16", width=0.25)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    keep = select.keep_by_ratio(random_scores(m), 0.5)
    surgery.remove_channels(m, keep)
    surgery.mask_channels(m, keep)
    surgery.mask_weights(m, 0.5)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    surgery.remove_channels(m, keep, inplace=True)
    assert m.features[0].out_channels == 8


def test_bad_inputs_raise_clear_errors():
    m = build("vgg16", width=0.25)
    first = m.conv_names()[0]
    with pytest.raises(ValueError, match="every channel"):
        surgery.remove_channels(m, {first: []})
    with pytest.raises(ValueError, match="out of range"):
        surgery.remove_channels(m, {first: [0, 99]})
    with pytest.raises(ValueError, match="repeated"):
        surgery.remove_channels(m, {first: [1, 1]})
    with pytest.raises(ValueError, match="not a prunable conv"):
        surgery.remove_channels(m, {"classifier": [0]})
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            surgery.mask_weights(m, bad)
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            select.keep_by_ratio(l1_scores(m), bad)
    masked = surgery.mask_weights(m, 0.3)
    with pytest.raises(ValueError, match="make_permanent"):
        surgery.remove_channels(masked, {first: [0]})


def test_unsupported_patterns_raise():
    with pytest.raises(ValueError, match="unsupported layer pattern"):
        surgery.channel_groups(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))

    class Depthwise(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(4, 4, 3, groups=4)
            self.n = nn.Conv2d(4, 2, 1)

        def channel_groups(self):
            from pruning.models import ChannelGroup
            return [ChannelGroup("c", None, ("n",))]

    with pytest.raises(ValueError, match="unsupported layer pattern"):
        surgery.remove_channels(Depthwise(), {"c": [0, 1]})


def test_mask_weights_sparsity_and_permanence():
    m = build("lenet5")
    masked = surgery.mask_weights(m, 0.7)
    assert measure.sparsity(masked)["overall"]["sparsity"] == pytest.approx(0.7, abs=1e-3)
    per_layer = surgery.mask_weights(m, 0.5, scope="layer")
    rep = measure.sparsity(per_layer)
    assert all(abs(rep[n]["sparsity"] - 0.5) < 0.01 for n in ("conv1", "conv2", "fc1"))
    surgery.make_permanent(masked)
    assert not any(n.endswith("_orig") for n, _ in masked.named_parameters())
    assert measure.sparsity(masked)["overall"]["sparsity"] == pytest.approx(0.7, abs=1e-3)


def test_mask_with_scores_removes_lowest():
    m = nn.Sequential(nn.Linear(4, 1, bias=False))
    scores = {"0": torch.tensor([[4.0, 1.0, 3.0, 2.0]])}
    masked = surgery.mask_with_scores(m, scores, 0.5)
    assert masked[0].weight_mask.tolist() == [[1.0, 0.0, 1.0, 0.0]]
