"""The few things every engine module shares: a model's device, its eval mode, its input size, and the
:class:`ChannelGroup` that says which channels may be removed together.

**The input size is given once.** A model says what one input looks like (``(C, H, W)``, no batch dimension) by
an ``input_size`` attribute: the course's models set it in their constructor, :func:`set_input_size` sets it on a
model of your own, and :func:`pruning.tracing.attach` sets it from the example batch it traces. Every count and
measurement (MACs, selection at a MACs budget, latency, export) reads it from there when it is not passed, so a
224x224 model's MACs cannot silently be counted at 32x32. Passing ``input_size=`` still wins (a fully
convolutional model can be measured at another size).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn


@contextmanager
def eval_mode(model: nn.Module):
    """Run the block with ``model`` in eval mode (BatchNorm on its running statistics, no dropout) and
    restore its train/eval mode afterwards, also if the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def default_device() -> torch.device:
    """Where the notebooks run their models: ``cuda`` when PyTorch sees a GPU, else the CPU. The environment
    variable ``PRUNING_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``) overrides it, e.g. ``PRUNING_DEVICE=cpu`` on a GPU
    machine to compute what the course's reference runs (all on the CPU) computed. Latency is measured on the CPU
    either way (``measure.latency_many`` times a CPU copy of a model on the GPU)."""
    name = os.environ.get("PRUNING_DEVICE", "").strip()
    if name:
        device = torch.device(name)          # raises on a name that is no device
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"PRUNING_DEVICE={name!r}, but PyTorch sees no GPU here (torch.cuda.is_available() is False)")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_of(model: nn.Module) -> torch.device:
    """The device ``model`` lives on: its first parameter's (or, with none, its first buffer's), else the CPU.

    The training and evaluation loops move each batch there, so a model moved with ``model.to("cuda")``
    is trained and evaluated on the GPU; on the CPU nothing changes."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def set_input_size(model: nn.Module, input_size) -> nn.Module:
    """Record the size of one input of ``model`` (``(C, H, W)``, or any shape without the batch dimension) and
    return the model. Copies (``copy.deepcopy``, channel surgery, decompositions) keep it."""
    size = tuple(int(s) for s in input_size)
    if not size or any(s < 1 for s in size):
        raise ValueError(f"input_size must be positive sizes without the batch dimension, e.g. (3, 224, 224); "
                         f"got {tuple(input_size)}")
    model.input_size = size
    return model


def input_size_of(model: nn.Module, input_size=None) -> tuple[int, ...]:
    """``input_size`` if given, else the size the model declares (its ``input_size`` attribute). A model that
    declares none and gets none is a clear error, never a silent 3x32x32."""
    if input_size is not None:
        return tuple(int(s) for s in input_size)
    declared = getattr(model, "input_size", None)
    if declared is None:
        raise ValueError(f"{type(model).__name__} does not say what its input looks like: pass input_size=(C, H, W), "
                         f"or declare it once with pruning.core.set_input_size(model, (3, 224, 224)) "
                         f"(pruning.tracing.attach(model, x) does it from the batch it traces)")
    return tuple(declared)


def example_input(model: nn.Module, input_size=None, batch_size: int = 1) -> torch.Tensor:
    """A zero batch of the model's input size (:func:`input_size_of`) with the model's dtype, on its device."""
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    return torch.zeros((batch_size, *input_size_of(model, input_size)), dtype=dtype, device=device_of(model))


def run_example(model: nn.Module, x: torch.Tensor):
    """``model(x)``, with a failure explained in terms of the input size (the usual cause)."""
    try:
        return model(x)
    except RuntimeError as err:
        raise ValueError(f"{type(model).__name__} failed on an example input of shape {tuple(x.shape)}: pass the "
                         f"input_size your model takes (one image, no batch dimension), or declare it with "
                         f"pruning.core.set_input_size. The model said: {err}") from err


@dataclass(frozen=True)
class ChannelGroup:
    """Output channels of ``conv`` that can be removed together with ``bn`` and the
    matching inputs of every layer in ``consumers`` (module names, as in ``named_modules``).

    A group found by tracing (:mod:`pruning.tracing`) may couple more layers: ``coupled`` convs write the same
    channels (they meet ``conv`` in a residual sum) and lose the same outputs; ``norms`` are further BatchNorms on
    those channels; ``depthwise`` convs carry channel c to channel c and lose the same filters. The group is still named, and its channels chosen, by ``conv``.

    A consumer or norm that reads a **concatenation** (``torch.cat`` of several groups' channels, as in Inception,
    SqueezeNet's Fire modules or DenseNet) sees this group's channels as one segment of its input: ``offsets``
    lists ``(layer, offset, width)`` for each such layer, the segment starting at input channel ``offset`` of the
    layer's ``width``. A layer not listed reads exactly this group's channels."""

    conv: str
    bn: str | None = None
    consumers: tuple[str, ...] = field(default_factory=tuple)
    coupled: tuple[str, ...] = field(default_factory=tuple)
    norms: tuple[str, ...] = field(default_factory=tuple)
    depthwise: tuple[str, ...] = field(default_factory=tuple)
    offsets: tuple[tuple[str, int, int], ...] = field(default_factory=tuple)

    def segment(self, layer: str) -> tuple[int, int] | None:
        """``(offset, width)`` of this group's channels inside ``layer``'s input when ``layer`` reads a
        concatenation, else ``None`` (it reads exactly these channels)."""
        for name, offset, width in self.offsets:
            if name == layer:
                return offset, width
        return None

    @property
    def members(self) -> tuple[str, ...]:
        """Every conv and linear layer whose MACs scale with the fraction of this group's channels kept."""
        return (self.conv, *self.coupled, *self.depthwise, *self.consumers)

    @property
    def all_norms(self) -> tuple[str, ...]:
        return ((self.bn,) if self.bn else ()) + self.norms
