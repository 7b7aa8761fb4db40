"""The course's models: LeNet-5, a CIFAR VGG, CIFAR ResNet-20/56 and the edge-popup Conv-2/4/6.

Every model that channel surgery can shrink says which channels may be removed through
``channel_groups()``: a list of :class:`ChannelGroup`, each naming (by module path) a conv
whose output channels can go, the BatchNorm that follows it (if any) and the layers that read
those channels (the next conv, or a linear layer after a flatten).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

# ChannelGroup, eval_mode and device_of live in pruning.core; importing them from here keeps working
from .core import ChannelGroup, device_of, eval_mode  # noqa: F401



# --------------------------------------------------------------------------- LeNet-5

class LeNet5(nn.Module):
    """LeNet-5 for 28x28 MNIST: conv(6,5x5,pad 2)-pool-conv(16,5x5)-pool-fc120-fc84-fc10."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.input_size = (in_channels, 28, 28)
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    def channel_groups(self) -> list[ChannelGroup]:
        return [ChannelGroup("conv1", None, ("conv2",)), ChannelGroup("conv2", None, ("fc1",))]


# --------------------------------------------------------------------------- VGG

VGG_CONFIGS = {
    # numbers are conv widths at width 1.0, "M" is a 2x2 max-pool (PFEC's CIFAR VGG layouts)
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
              512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def vgg_features(cfg, in_channels: int) -> tuple[nn.Sequential, int]:
    """A VGG feature stack from ``cfg`` (channel counts, ``"M"`` = 2x2 max-pool): 3x3 conv + BN + ReLU blocks.
    Returns the stack and its output channels. Notebook 07's detector backbone uses it too."""
    layers: list[nn.Module] = []
    c_in = in_channels
    for c in cfg:
        if c == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
    return nn.Sequential(*layers), c_in


class VGG(nn.Module):
    """CIFAR VGG with BatchNorm (PFEC's VGG-16 layout by default): 3x3 conv + BN + ReLU blocks,
    2x2 max-pool after each block, global average pool, one linear classifier.

    ``width`` multiplies every conv's channel count (the course uses 0.5; see the README).
    ``features[i]`` is the i-th module of the feature stack, so the first conv is ``features.0``
    and its BatchNorm ``features.1``.
    """

    def __init__(self, depth: int | str = 16, width: float = 1.0, num_classes: int = 10,
                 in_channels: int = 3, widths: list[int] | None = None):
        super().__init__()
        name = depth if isinstance(depth, str) else f"vgg{depth}"
        if name not in VGG_CONFIGS:
            raise ValueError(f"unknown VGG depth {depth!r}; choose one of {sorted(VGG_CONFIGS)}")
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        cfg = [c if c == "M" else max(1, int(round(c * width))) for c in VGG_CONFIGS[name]]
        if widths is not None:  # explicit per-conv widths, e.g. a pruned or searched structure
            convs = [i for i, c in enumerate(cfg) if c != "M"]
            if len(widths) != len(convs):
                raise ValueError(f"{name} has {len(convs)} convs, got {len(widths)} widths")
            for i, w in zip(convs, widths):
                cfg[i] = int(w)
        self.cfg = cfg
        self.input_size = (in_channels, 32, 32)     # CIFAR; the global pool lets it run on other sizes too
        self.features, c_in = vgg_features(cfg, in_channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)
        _kaiming_init(self)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))

    def conv_names(self) -> list[str]:
        return [f"features.{i}" for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d)]

    def channel_groups(self) -> list[ChannelGroup]:
        convs = self.conv_names()
        groups = []
        for k, name in enumerate(convs):
            i = int(name.split(".")[1])
            consumer = convs[k + 1] if k + 1 < len(convs) else "classifier"
            groups.append(ChannelGroup(name, f"features.{i + 1}", (consumer,)))
        return groups


# --------------------------------------------------------------------------- CIFAR ResNet

class BasicBlock(nn.Module):
    """Two 3x3 convs with BN and an identity (or 1x1-projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, mid: int | None = None):
        super().__init__()
        mid = c_out if mid is None else mid
        self.conv1 = nn.Conv2d(c_in, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for CIFAR (He et al. 2016): 16-32-64 channels, n basic blocks per stage.

    Only the inner conv of each block (``conv1``) is prunable: the block's output channels are
    tied to the shortcut, so removing them would need the whole residual stream to agree.
    """

    def __init__(self, depth: int = 20, width: float = 1.0, num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, ...), got {depth}")
        n = (depth - 2) // 6
        widths = [max(1, int(round(c * width))) for c in (16, 32, 64)]
        self.input_size = (3, 32, 32)
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, c_in = [], widths[0]
        for s, c in enumerate(widths):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(c_in, c, stride=2 if (s > 0 and b == 0) else 1))
                c_in = c
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        _kaiming_init(self)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))

    def channel_groups(self) -> list[ChannelGroup]:
        return block_channel_groups(self)


def block_channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The inner channels of every residual basic block (``conv1 -> bn1 -> conv2``).

    Works for the course's CIFAR ResNets and for torchvision's ResNet-18/34 basic blocks.
    """
    groups = []
    for name, m in model.named_modules():
        if all(isinstance(getattr(m, a, None), t) for a, t in
               (("conv1", nn.Conv2d), ("bn1", nn.BatchNorm2d), ("conv2", nn.Conv2d))) and name:
            groups.append(ChannelGroup(f"{name}.conv1", f"{name}.bn1", (f"{name}.conv2",)))
    return groups


def resnet20(**kw) -> CifarResNet:
    return CifarResNet(20, **kw)


def resnet56(**kw) -> CifarResNet:
    return CifarResNet(56, **kw)


# --------------------------------------------------------------------------- edge-popup Conv-2/4/6

CONV_CONFIGS = {
    "conv2": [64, 64, "M"],
    "conv4": [64, 64, "M", 128, 128, "M"],
    "conv6": [64, 64, "M", 128, 128, "M", 256, 256, "M"],
}


class ConvNet(nn.Module):
    """Conv-2/4/6 of Ramanujan et al. (2020): 3x3 convs and max-pools, then fully connected
    256-256-10; no bias and no BatchNorm anywhere, as in edge-popup. ``width`` scales every layer.

    ``conv_layer`` and ``linear_layer`` let a method swap in its own masked layers (edge-popup,
    sparse binary programming) while the architecture stays the same.
    """

    def __init__(self, depth: int | str = 4, width: float = 1.0, num_classes: int = 10,
                 in_channels: int = 3, image_size: int = 32,
                 conv_layer: type[nn.Conv2d] = nn.Conv2d, linear_layer: type[nn.Linear] = nn.Linear):
        super().__init__()
        name = depth if isinstance(depth, str) else f"conv{depth}"
        if name not in CONV_CONFIGS:
            raise ValueError(f"unknown ConvNet depth {depth!r}; choose one of {sorted(CONV_CONFIGS)}")
        self.input_size = (in_channels, image_size, image_size)
        layers: list[nn.Module] = []
        c_in, size = in_channels, image_size
        for c in CONV_CONFIGS[name]:
            if c == "M":
                layers.append(nn.MaxPool2d(2))
                size //= 2
            else:
                c = max(1, int(round(c * width)))
                layers += [conv_layer(c_in, c, 3, padding=1, bias=False), nn.ReLU(inplace=True)]
                c_in = c
        self.features = nn.Sequential(*layers)
        hidden = max(1, int(round(256 * width)))
        self.classifier = nn.Sequential(
            linear_layer(c_in * size * size, hidden, bias=False), nn.ReLU(inplace=True),
            linear_layer(hidden, hidden, bias=False), nn.ReLU(inplace=True),
            linear_layer(hidden, num_classes, bias=False),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))

    def channel_groups(self) -> list[ChannelGroup]:
        convs = [f"features.{i}" for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d)]
        return [ChannelGroup(name, None, (convs[k + 1] if k + 1 < len(convs) else "classifier.0",))
                for k, name in enumerate(convs)]


# --------------------------------------------------------------------------- helpers

def _kaiming_init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build(name: str, **kw) -> nn.Module:
    """Build a course model by name: ``lenet5``, ``vgg11/13/16/19``, ``resnet20/32/44/56``,
    ``conv2/4/6``. Keyword arguments go to the model's constructor (e.g. ``width=0.5``)."""
    if name == "lenet5":
        return LeNet5(**kw)
    if name in VGG_CONFIGS:
        return VGG(name, **kw)
    if name.startswith("resnet") and name[6:].isdigit():
        return CifarResNet(int(name[6:]), **kw)
    if name in CONV_CONFIGS:
        return ConvNet(name, **kw)
    raise ValueError(f"unknown model {name!r}; choose lenet5, vgg11/13/16/19, resnet20/32/44/56 or conv2/4/6")
