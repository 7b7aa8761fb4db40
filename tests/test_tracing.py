"""Channel groups found by tracing (pruning/tracing.py) on models the course does not ship: a plain custom CNN,
torchvision's vgg11_bn, resnet18 (with the channels its residual additions couple), mobilenet_v2 (depthwise
convs, inverted residuals) and squeezenet1_1 (concatenations), and a custom model with nested concatenations. Pruning half of every group must give a model that computes what the masked model
computes, with the MACs predicted from the kept widths."""
import pytest
import torch
import torchvision
from torch import nn

from pruning import measure, select, surgery, tracing

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


class Custom(nn.Module):
    """A plain CNN written as a student would: functional activations, a flatten, two linear layers."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12)
        self.c2 = nn.Conv2d(12, 20, 3, padding=1)
        self.c3, self.b3 = nn.Conv2d(20, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16)
        self.fc1, self.fc2 = nn.Linear(16 * 8 * 8, 32), nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = nn.functional.max_pool2d(nn.functional.relu(self.c2(x)), 2)
        x = torch.flatten(nn.functional.relu(self.b3(self.c3(x))), 1)
        return self.fc2(nn.functional.dropout(torch.relu(self.fc1(x)), 0.1, self.training))


def _randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


class Inceptionish(nn.Module):
    """Concatenations as Inception, SqueezeNet and DenseNet use them: two branches concatenated, a BatchNorm over
    the concatenation, a DenseNet-style growth (a conv's output concatenated to its own input, so the segments
    nest), and a flatten -> linear head that reads a concatenation."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.b1, self.b3 = nn.Conv2d(8, 6, 1), nn.Conv2d(8, 10, 3, padding=1)
        self.bn_cat = nn.BatchNorm2d(16)
        self.grow = nn.Conv2d(16, 4, 3, padding=1)
        self.mix = nn.Conv2d(20, 12, 1)
        self.tail = nn.Conv2d(12, 5, 3, padding=1)
        self.fc = nn.Linear(17 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        y = torch.relu(self.bn_cat(torch.cat([self.b1(x), self.b3(x)], 1)))
        z = torch.cat([y, self.grow(y)], dim=1)
        z = nn.functional.max_pool2d(torch.relu(self.mix(z)), 2)
        w = nn.functional.adaptive_avg_pool2d(torch.cat((z, self.tail(z)), 1), 2)
        return self.fc(torch.flatten(w, 1))


MODELS = {
    "custom": Custom,
    "concatenations": Inceptionish,
    "squeezenet1_1": lambda: torchvision.models.squeezenet1_1(num_classes=10),
    "vgg11_bn": lambda: torchvision.models.vgg11_bn(num_classes=10),
    "resnet18": lambda: torchvision.models.resnet18(num_classes=10),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(num_classes=10),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_half_of_every_traced_group_prunes_to_the_masked_function_and_the_predicted_macs(name):
    torch.manual_seed(0)
    model = tracing.attach(_randomise_bn(MODELS[name]()), X[:1])
    groups = model.channel_groups()
    widths = surgery.widths(model)
    gen = torch.Generator().manual_seed(2)
    keep = {g.conv: sorted(torch.randperm(widths[g.conv], generator=gen)[: max(1, widths[g.conv] // 2)].tolist())
            for g in groups}
    pruned = surgery.remove_channels(model, keep).eval()
    masked = surgery.mask_channels(model, keep).eval()
    with torch.no_grad():
        want, got = masked(X), pruned(X)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, want.abs().max().item())), \
        (got - want).abs().max()
    assert measure.macs(pruned) == select.macs_after(model, {k: len(v) for k, v in keep.items()})
    assert measure.macs(pruned) < 0.6 * measure.macs(model)
    assert surgery.widths(pruned) == {k: len(v) for k, v in keep.items()}


def test_resnet18_couples_every_conv_that_writes_into_a_residual_sum():
    model = torchvision.models.resnet18(num_classes=10).eval()
    groups = {g.conv: g for g in tracing.channel_groups(model, X[:1])}
    stem = groups["conv1"]            # the stem feeds layer1's identity shortcuts
    assert set(stem.coupled) == {"layer1.0.conv2", "layer1.1.conv2"}
    assert {"layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1", "layer2.0.downsample.0"} <= set(stem.consumers)
    assert set(stem.all_norms) == {"bn1", "layer1.0.bn2", "layer1.1.bn2"}
    stage2 = next(g for g in groups.values() if "layer2.0.downsample.0" in (g.conv, *g.coupled))
    assert set((stage2.conv, *stage2.coupled)) == {"layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2"}
    inner = groups["layer3.1.conv1"]   # a block's inner channels stay a group of their own
    assert inner.consumers == ("layer3.1.conv2",) and not inner.coupled
    assert "fc" in next(g for g in groups.values() if "layer4.1.conv2" in (g.conv, *g.coupled)).consumers


def test_mobilenet_v2_depthwise_convs_follow_their_channels():
    model = torchvision.models.mobilenet_v2(num_classes=10).eval()
    groups = {g.conv: g for g in tracing.channel_groups(model, X[:1])}
    expand = groups["features.2.conv.0.0"]        # 1x1 expansion -> depthwise 3x3 -> 1x1 projection
    assert expand.depthwise == ("features.2.conv.1.0",) and expand.consumers == ("features.2.conv.2",)
    assert len(expand.all_norms) == 2


def test_a_concatenation_reads_each_group_as_a_segment_at_its_offset():
    groups = {g.conv: g for g in tracing.channel_groups(_randomise_bn(Inceptionish()), X[:1])}
    assert groups["stem"].offsets == () and groups["stem"].bn == "bn0"
    b1, b3, grow = groups["b1"], groups["b3"], groups["grow"]
    assert b1.bn is None and b1.norms == ("bn_cat",)          # a norm after a concatenation is never a group's own
    assert set(b1.offsets) == {("bn_cat", 0, 16), ("grow", 0, 16), ("mix", 0, 20)}
    assert set(b3.offsets) == {("bn_cat", 6, 16), ("grow", 6, 16), ("mix", 6, 20)}
    assert grow.offsets == (("mix", 16, 20),) and grow.segment("mix") == (16, 20)
    assert groups["mix"].consumers == ("tail", "fc") and groups["mix"].offsets == (("fc", 0, 17),)
    assert groups["tail"].offsets == (("fc", 12, 17),)
    # removing channels of b3 alone: mix loses those inputs, at b3's offset, and its MACs shrink by the sum rule
    model = tracing.attach(_randomise_bn(Inceptionish()), X[:1])
    keep = {"b3": [0, 3, 4, 9]}
    pruned = surgery.remove_channels(model, keep)
    assert pruned.mix.in_channels == 14 and pruned.grow.in_channels == 10 and pruned.bn_cat.num_features == 10
    assert torch.equal(pruned.mix.weight, model.mix.weight[:, [0, 1, 2, 3, 4, 5, 6, 9, 10, 15, 16, 17, 18, 19]])
    assert measure.macs(pruned) == select.macs_after(model, {"b3": 4})
    # a MACs budget over every group (the incremental count in keep_for_macs follows the same sum rule)
    scores = {name: torch.rand(w, generator=torch.Generator().manual_seed(3)) for name, w in surgery.widths(model).items()}
    keep = select.keep_for_macs(model, scores, 0.5)
    pruned = surgery.remove_channels(model, keep)
    assert measure.macs(pruned) == select.macs_after(model, {k: len(v) for k, v in keep.items()})
    assert 0.5 <= 1 - measure.macs(pruned) / measure.macs(model) < 0.52


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.a(x) * torch.sigmoid(self.b(x))


class CatThen(nn.Module):
    """A concatenation followed by something the tracer refuses after one."""

    def __init__(self, then):
        super().__init__()
        self.then = then
        self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), nn.Conv2d(3, 8, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        a = self.a(x)
        y = torch.cat([a, a if self.then == "twice" else self.b(x)], 2 if self.then == "dim" else 1)
        if self.then == "add":
            return y + self.c(x)
        if self.then == "twice":
            return self.head(y)
        return self.dw(y) if self.then == "depthwise" else y


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = self.a(x)
        if y.sum() > 0:            # data-dependent control flow: torch.fx cannot follow it
            return y
        return -y


def test_what_the_tracer_cannot_follow_is_refused_by_name_before_anything_changes():
    with pytest.raises(ValueError, match=r"function mul \(node mul\) is applied to the output channels of a, b;"):
        tracing.channel_groups(SqueezeExcite(), X[:1])
    for then, what in (("add", "an addition with a concatenation"), ("depthwise", "depthwise conv dw after a concat"),
                       ("dim", "a concatenation along another dim than the channels"),
                       ("twice", "reads the channels of a twice")):
        with pytest.raises(ValueError, match=what):
            tracing.channel_groups(CatThen(then), X[:1])
    with pytest.raises(ValueError, match="cannot trace Branchy with torch.fx"):
        tracing.channel_groups(Branchy(), X[:1])
    with pytest.raises(TypeError, match="example_input must be a tensor"):
        tracing.channel_groups(Custom(), (3, 32, 32))
    with pytest.raises(ValueError, match=r"tracing.attach\(model, example_input\)"):
        surgery.channel_groups(Custom())


# Torch-Pruning lists no group for the custom model's `tail`, whose channels reach the linear head through a
# concatenation and a flatten; the tests above cover that model (masked = pruned, MACs counted = predicted).
# SqueezeNet's classifier is a conv writing the class scores: Torch-Pruning lists it as a group (it can prune classes),
# the course never prunes a model's output.
TP_MODELS = [name for name in MODELS if name != "concatenations"]
OUTPUT_CONVS = {"squeezenet1_1": frozenset({"classifier.1"})}


@pytest.mark.parametrize("name", TP_MODELS)
def test_the_groups_and_macs_agree_with_torch_pruning(name):
    """Cross-check against Torch-Pruning's dependency graph (a test-only dependency): the same layers, group by
    group, and the same MACs after pruning half of every group."""
    tp = pytest.importorskip("torch_pruning")
    model = MODELS[name]().eval()
    names = {m: n for n, m in model.named_modules()}
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=X[:1])
    theirs = set()
    for group in graph.get_all_groups(root_module_types=[nn.Conv2d]):
        layers = {names[dep.target.module] for dep, _ in group if dep.target.module in names}
        theirs.add(frozenset(n for n in layers if isinstance(model.get_submodule(n), (nn.Conv2d, nn.Linear, nn.BatchNorm2d))))
    ours = {frozenset((g.conv, *g.coupled, *g.depthwise, *g.consumers, *g.all_norms))
            for g in tracing.channel_groups(model, X[:1])}
    assert ours == theirs - {OUTPUT_CONVS.get(name)}
    tracing.attach(model, X[:1])
    pruned = surgery.remove_channels(model, {n: list(range(w // 2)) for n, w in surgery.widths(model).items()})
    assert measure.macs(pruned) == _conv_linear_macs(pruned)


def _conv_linear_macs(model):
    """MACs of every conv and linear layer by the textbook formula, from forward hooks: an independent count
    (Torch-Pruning's own counter adds BatchNorm, activations and pooling, which the course does not count)."""
    total = []

    def hook(m, inputs, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total.append(out.numel() // out.shape[0] * (m.in_channels // m.groups) * k)
        else:
            total.append(m.in_features * m.out_features)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(X[:1])
    for h in handles:
        h.remove()
    return sum(total)


class MeanHead(nn.Module):
    """Global average pooling written as a mean, as students often do: x.mean((2, 3)) and torch.mean(keepdim)."""

    def __init__(self, keepdim=False):
        super().__init__()
        self.keepdim = keepdim
        self.a, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 6, 3, padding=1)
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        x = self.b(torch.relu(self.bn(self.a(x))))
        x = torch.mean(x, (2, 3), keepdim=True).flatten(1) if self.keepdim else x.mean((2, 3))
        return self.fc(x)


@pytest.mark.parametrize("keepdim", [False, True])
def test_a_spatial_mean_is_followed_like_global_pooling(keepdim):
    model = tracing.attach(_randomise_bn(MeanHead(keepdim)), X[:1])
    assert {g.conv: g.consumers for g in model.channel_groups()} == {"a": ("b",), "b": ("fc",)}
    keep = {"a": [0, 2, 5], "b": [1, 4]}
    pruned, masked = surgery.remove_channels(model, keep).eval(), surgery.mask_channels(model, keep).eval()
    with torch.no_grad():
        assert torch.allclose(pruned(X), masked(X), atol=1e-5)
    assert measure.macs(pruned) == select.macs_after(model, {k: len(v) for k, v in keep.items()})


def test_a_mean_over_the_channels_is_refused():
    class ChannelMean(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)

        def forward(self, x):
            return self.a(x).mean(1)

    with pytest.raises(ValueError, match=r"method \.mean\(\) \(node mean\) is applied to the output channels of a"):
        tracing.channel_groups(ChannelMean(), X[:1])
