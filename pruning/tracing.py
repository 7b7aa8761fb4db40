"""Channel groups found by tracing: which layers must shrink together when a conv loses output channels.

The course's own models declare their groups (``model.channel_groups()``). Your own model does not, so this module
finds them by running it symbolically (``torch.fx.symbolic_trace``) and following every conv's output channels
through the graph, with the shapes of one example input (``ShapeProp``):

* through BatchNorm (its features shrink with the channels), activations, pooling (a mean over the spatial dims
  included), dropout and identity;
* into a **consumer**: a conv (its input channels shrink) or, after a flatten, a linear layer (its columns for those
  channels shrink);
* through a **depthwise** conv (``groups == in_channels == out_channels``), which keeps channel ``c`` in channel
  ``c``: its filters shrink with the channels, in and out;
* across a **residual addition**: the two summed tensors must keep the same channels, so every conv writing into
  the sum (the blocks' last convs, a projection shortcut, the stem before an identity shortcut) and every layer
  reading it form one coupled group, pruned with one list of indices;
* through a **concatenation** along the channels (``torch.cat(..., 1)``, as in Inception, SqueezeNet's Fire modules
  or DenseNet): each concatenated tensor stays its own group, and a layer reading the result reads each group as one
  segment of its input, at an offset (``ChannelGroup.offsets``), so surgery removes the right input channels and the
  MACs count sums what the segments lose.

A channel space that reaches the model's output (the logits, a detection head's maps) or starts at the model's input
is not prunable. An operation the tracer does not know, applied to a tracked tensor (data-dependent control flow,
which ``symbolic_trace`` cannot follow, a split or a channel shuffle, a product of two feature maps as in
squeeze-and-excitation, an addition or a depthwise conv after a concatenation), is refused with an error naming it
and the layer, before anything changes.

    groups = tracing.channel_groups(model, torch.zeros(1, 3, 32, 32))
    tracing.attach(model, torch.zeros(1, 3, 32, 32))     # the rest of the engine now sees model.channel_groups()
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from .core import ChannelGroup, device_of, eval_mode, set_input_size

PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.GELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.ELU,
                nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                nn.AdaptiveMaxPool2d)
PASS_FUNCTIONS = {F.relu, F.relu6, torch.relu, F.silu, F.hardswish, F.gelu, F.leaky_relu, torch.sigmoid, F.sigmoid,
                  torch.tanh, F.elu, F.dropout, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
PASS_METHODS = {"relu", "relu_", "sigmoid", "contiguous", "clone", "detach"}
ADD = {operator.add, operator.iadd, torch.add}
CAT = {torch.cat, torch.concat, torch.concatenate}
FLATTEN_FUNCTIONS = {torch.flatten}
FLATTEN_METHODS = {"flatten", "view", "reshape"}
IGNORED_METHODS = {"size", "dim"}


class _Space:
    """One set of channels that must be pruned together (merged across residual additions)."""

    def __init__(self, width: int):
        self.width, self.parent = width, self
        self.producers, self.norms, self.depthwise, self.consumers = [], [], [], []
        self.offsets: list[tuple[str, int, int]] = []   # (layer, offset, width): layers reading it inside a concatenation
        self.fixed: list[str] = []          # why this space may not be pruned (model input, model output)

    def root(self) -> "_Space":
        s = self
        while s.parent is not s:
            s = s.parent
        return s

    def merge(self, other: "_Space", where: str) -> "_Space":
        a, b = self.root(), other.root()
        if a is b:
            return a
        if a.width != b.width:
            raise ValueError(f"unsupported layer pattern at {where}: adds {a.width} channels to {b.width}")
        b.parent = a
        for field in ("producers", "norms", "depthwise", "consumers", "offsets", "fixed"):
            getattr(a, field).extend(getattr(b, field))
        return a


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # torch.fx's own message names the construct it cannot trace
        raise ValueError(f"cannot trace {type(model).__name__} with torch.fx, so its channel groups are unknown: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0]}. Declare them with a channel_groups() "
                         "method (see pruning.models.ChannelGroup) instead.") from None


def channel_groups(model: nn.Module, example_input: torch.Tensor) -> list[ChannelGroup]:
    """The prunable channel groups of ``model``, found by tracing it on ``example_input`` (one batch of the input
    it expects). Each group is named after the first conv (in graph order) that writes its channels."""
    if not isinstance(example_input, torch.Tensor):
        raise TypeError("example_input must be a tensor of the model's input shape, e.g. torch.zeros(1, 3, 32, 32)")
    gm = _trace(model)
    with eval_mode(model), torch.no_grad():   # gm shares the model's modules
        ShapeProp(gm).propagate(example_input.to(device_of(model)))   # the example follows the model's device
    modules = dict(model.named_modules())
    # node -> (kind, parts): kind "ch" (a feature map) or "flat" (flattened, for a linear layer); parts the spaces
    # whose channels it carries, each with its first channel: one space at offset 0, or several after a concatenation
    space: dict[fx.Node, tuple] = {}

    def shape(node):
        meta = node.meta.get("tensor_meta")
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def tracked(args):
        return [a for a in args if isinstance(a, fx.Node) and a in space]

    def width(entry):
        return sum(sp.root().width for sp, _ in entry[1])

    def single(entry):
        """The one space an entry carries, or None after a concatenation."""
        return entry[1][0][0] if len(entry[1]) == 1 else None

    def reads(entry, name, role):
        """``name`` reads the channels of ``entry``: a consumer (inputs shrink) or a norm of each of its spaces, at
        its offset when the entry is a concatenation."""
        for sp, offset in entry[1]:
            root = sp.root()
            getattr(root, role).append(name)
            if len(entry[1]) > 1:
                root.offsets.append((name, offset, width(entry)))

    def refuse(node, what):
        writers = sorted({p for a in tracked(_flat_args([*node.args, *node.kwargs.values()]))
                          for sp, _ in space[a][1] for p in sp.root().producers})
        raise ValueError(f"unsupported layer pattern: {what} (node {node.name}) is applied to the output channels of "
                         f"{', '.join(writers) or 'a conv'}; the tracer cannot tell how it moves them, so it changes "
                         "nothing. Declare the model's channel groups with a channel_groups() method instead "
                         "(see pruning.core.ChannelGroup).")

    def spatial_mean(node, ins):
        """A mean over the spatial dims of a tracked feature map: (N, C) reads like a pooled flatten, (N, C, 1, 1)
        like a pooling. Returns the entry the result carries, or None if the mean mixes channels."""
        kind, parts = space[ins[0]]
        out = shape(node)
        if kind != "ch" or out is None or len(out) < 2 or out[1] != width(space[ins[0]]):
            return None
        if len(out) == 2:
            return ("flat", parts)
        return ("ch", parts) if len(out) == 4 and out[2:] == (1, 1) else None

    def flattened(source):
        return ("flat", space[source][1])

    def concatenation(node):
        """``torch.cat`` of feature maps along the channels: the parts of every input, one after the other."""
        tensors = node.args[0] if node.args else node.kwargs.get("tensors", ())
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        out = shape(node)
        if out is None or len(out) != 4 or dim not in (1, -3):
            refuse(node, "a concatenation along another dim than the channels")
        parts, offset = [], 0
        for t in tensors:
            if not (isinstance(t, fx.Node) and t in space) or space[t][0] != "ch":
                refuse(node, "a concatenation with a tensor the tracer does not follow")
            parts += [(sp, offset + o) for sp, o in space[t][1]]
            offset += width(space[t])
        return ("ch", tuple(parts))

    for node in gm.graph.nodes:
        ins = tracked(_flat_args([*node.args, *node.kwargs.values()]))
        if node.op == "placeholder":
            s = shape(node)
            if s is not None and len(s) == 4:
                sp = _Space(s[1])
                sp.fixed.append("the model's input")
                space[node] = ("ch", ((sp, 0),))
        elif node.op == "output":
            for a in tracked(_flat_args(node.args)):
                for sp, _ in space[a][1]:
                    sp.root().fixed.append("the model's output")
        elif node.op == "call_module":
            m = modules[node.target]
            name = node.target
            src = space.get(node.args[0]) if node.args and isinstance(node.args[0], fx.Node) else None
            if isinstance(m, nn.Conv2d):
                if src is not None and src[0] != "ch":
                    refuse(node, f"conv {name} reading a flattened tensor")
                if m.groups == 1:
                    if src is not None:
                        reads(src, name, "consumers")
                    out = _Space(m.out_channels)
                    out.producers.append(name)
                    space[node] = ("ch", ((out, 0),))
                elif m.groups == m.in_channels == m.out_channels:
                    if src is None:
                        refuse(node, f"depthwise conv {name} on an untracked input")
                    if single(src) is None:
                        refuse(node, f"depthwise conv {name} after a concatenation")
                    single(src).root().depthwise.append(name)
                    space[node] = src
                else:
                    raise ValueError(f"unsupported layer pattern: {name} is a grouped conv (groups={m.groups}, "
                                     f"{m.in_channels} -> {m.out_channels} channels); only depthwise convs with one "
                                     "filter per channel can follow their input's channels")
            elif isinstance(m, nn.BatchNorm2d):
                if src is not None:
                    reads(src, name, "norms")
                    space[node] = src
            elif isinstance(m, nn.Linear):
                if src is not None:
                    if src[0] != "flat":
                        refuse(node, f"linear layer {name} on a 4-d feature map")
                    reads(src, name, "consumers")
            elif isinstance(m, nn.Flatten):
                if src is not None:
                    space[node] = flattened(node.args[0])
            elif isinstance(m, PASS_MODULES):
                if src is not None:
                    space[node] = src
            elif ins:
                refuse(node, f"module {name} ({type(m).__name__})")
        elif node.op == "call_function":
            if node.target in ADD and len(ins) == 2:
                if {space[a][0] for a in ins} != {"ch"}:
                    refuse(node, "an addition of flattened tensors")
                if single(space[ins[0]]) is None or single(space[ins[1]]) is None:
                    refuse(node, "an addition with a concatenation")
                merged = single(space[ins[0]]).merge(single(space[ins[1]]), node.name)
                space[node] = ("ch", ((merged, 0),))
            elif node.target in ADD and len(ins) == 1:
                space[node] = space[ins[0]]                     # adding a constant moves no channel
            elif node.target in CAT and ins:
                space[node] = concatenation(node)
            elif node.target in PASS_FUNCTIONS and ins:
                space[node] = space[ins[0]]
            elif node.target in FLATTEN_FUNCTIONS and ins:
                space[node] = flattened(ins[0])
            elif node.target is getattr and ins:
                pass                                            # x.shape and the like: not a tensor of channels
            elif node.target is torch.mean and ins and (pooled := spatial_mean(node, ins)):
                space[node] = pooled                            # global average pooling written as a mean
            elif ins:
                refuse(node, f"function {getattr(node.target, '__name__', node.target)}")
        elif node.op == "call_method":
            if node.target in IGNORED_METHODS or not ins:   # x.size(0) and the like, or no tracked tensor
                continue
            if node.target in PASS_METHODS:
                space[node] = space[ins[0]]
            elif node.target in ("add", "add_") and len(ins) == 2:
                if single(space[ins[0]]) is None or single(space[ins[1]]) is None:
                    refuse(node, "an addition with a concatenation")
                space[node] = ("ch", ((single(space[ins[0]]).merge(single(space[ins[1]]), node.name), 0),))
            elif node.target in FLATTEN_METHODS and shape(node) is not None and len(shape(node)) == 2:
                space[node] = flattened(ins[0])
            elif node.target == "mean" and (pooled := spatial_mean(node, ins)):
                space[node] = pooled                            # x.mean((2, 3)): global average pooling
            else:
                refuse(node, f"method .{node.target}()")
    roots, groups = [], []
    for _, parts in space.values():
        for sp, _ in parts:
            r = sp.root()
            if r not in roots:
                roots.append(r)
    order = {n.target: i for i, n in enumerate(gm.graph.nodes) if n.op == "call_module"}
    for r in roots:
        if r.fixed or not r.producers:
            continue
        producers = sorted(dict.fromkeys(r.producers), key=order.get)     # named by the first in graph order
        readers = [layer for layer, _, _ in dict.fromkeys(r.offsets)]
        if len(readers) != len(set(readers)):
            twice = next(layer for layer in readers if readers.count(layer) > 1)
            raise ValueError(f"unsupported layer pattern: {twice} reads the channels of {producers[0]} twice (a "
                             "concatenation repeats them); declare the model's channel groups with a channel_groups() "
                             "method instead (see pruning.core.ChannelGroup).")
        # the group's own BatchNorm (bn) is the first that normalises exactly its channels, never one after a
        # concatenation, whose features are only partly this group's
        after_cat = {layer for layer, _, _ in r.offsets}
        norms = sorted(dict.fromkeys(r.norms), key=lambda n: (n in after_cat, order[n]))
        own = norms[0] if norms and norms[0] not in after_cat else None
        groups.append(ChannelGroup(producers[0], own, tuple(dict.fromkeys(r.consumers)),
                                   coupled=tuple(producers[1:]), norms=tuple(n for n in norms if n != own),
                                   depthwise=tuple(dict.fromkeys(r.depthwise)),
                                   offsets=tuple(dict.fromkeys(r.offsets))))
    return sorted(groups, key=lambda g: order[g.conv])


def _flat_args(args):
    out = []
    for a in args:
        if isinstance(a, (tuple, list)):
            out.extend(_flat_args(a))
        elif isinstance(a, dict):
            out.extend(_flat_args(list(a.values())))
        else:
            out.append(a)
    return out


class _Traced:
    """The ``channel_groups()`` that :func:`attach` gives a model: a plain object, so the model still pickles."""

    def __init__(self, groups: list[ChannelGroup]):
        self.groups = list(groups)

    def __call__(self) -> list[ChannelGroup]:
        return list(self.groups)


def attach(model: nn.Module, example_input: torch.Tensor) -> nn.Module:
    """Trace ``model`` once and give it a ``channel_groups()`` method returning the groups found, so that
    selection, masks, surgery and MACs counting (which all ask ``model.channel_groups()``) work on it. The model's
    input size (one image of ``example_input``) is recorded too (:func:`pruning.core.set_input_size`), so no later
    count needs it again. Copies of the model (``surgery.clone``) keep both; the groups' names stay valid after
    surgery. Returns ``model``."""
    groups = channel_groups(model, example_input)
    if not groups:
        raise ValueError(f"tracing found no prunable channel group in {type(model).__name__}")
    model.channel_groups = _Traced(groups)
    set_input_size(model, example_input.shape[1:])
    return model
