"""Removing weights: masks (unstructured) and channel surgery (structured).

Two ways to prune, and why the course needs both:

* **Masks** (:func:`mask_weights`) zero individual weights through ``torch.nn.utils.prune``.
  The tensors keep their shape, so a dense kernel does exactly the same work: no FLOPs and no
  time are saved until the mask is exploited by sparse hardware or kernels.
* **Surgery** (:func:`remove_channels`) builds a smaller model: a conv loses output channels,
  the BatchNorm after it loses the same features, and every layer that reads those channels
  (the next conv, or the linear layer after a flatten) loses the matching inputs. The result
  is a genuinely smaller dense network, so FLOPs, parameters and latency all drop.

Which channels a model allows to remove is described by ``model.channel_groups()``
(:class:`pruning.models.ChannelGroup`); :func:`channel_groups` also understands any model
built from residual basic blocks, such as torchvision's ResNet-34.
"""

from __future__ import annotations

import copy
from typing import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import prune

from .core import ChannelGroup
from .models import block_channel_groups


# --------------------------------------------------------------------------- masks

def clone(model: nn.Module) -> nn.Module:
    """A deep copy that also works for models carrying ``torch.nn.utils.prune`` masks.

    (A masked ``weight`` is recomputed from ``weight_orig * weight_mask`` on every forward pass;
    after a forward pass with gradients on, it is a non-leaf tensor that ``copy.deepcopy``
    refuses. Recomputing it without gradients first makes the copy possible and changes nothing.)
    """
    with torch.no_grad():
        for m in model.modules():
            for hook in m._forward_pre_hooks.values():
                if isinstance(hook, prune.BasePruningMethod):
                    setattr(m, hook._tensor_name, hook.apply_mask(m))
    return copy.deepcopy(model)


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(module, "weight")`` for every conv and linear layer, the form ``prune`` expects."""
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def check_ratio(ratio: float, what: str = "ratio") -> float:
    """Raise a ``ValueError`` unless ``0 <= ratio < 1`` (pruning everything is never allowed)."""
    if not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise ValueError(f"{what} must be in [0, 1) (a fraction of weights or channels to remove), got {ratio!r}")
    return float(ratio)


def mask_weights(model: nn.Module, ratio: float, scope: str = "global", inplace: bool = False) -> nn.Module:
    """Zero the ``ratio`` smallest-magnitude weights with ``torch.nn.utils.prune`` (L1 criterion).

    Args:
        ratio: fraction of weights to remove, in [0, 1).
        scope: ``"global"`` ranks all conv and linear weights together
            (``prune.global_unstructured``); ``"layer"`` removes ``ratio`` of every layer.
        inplace: modify ``model`` itself instead of a copy.

    The masks are kept as forward pre-hooks (``weight = weight_orig * weight_mask``), so they
    stay in force during fine-tuning; :func:`make_permanent` folds them into the weights.
    """
    check_ratio(ratio)
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    model = model if inplace else clone(model)
    params = prunable_weights(model)
    if scope == "global":
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=ratio)
    else:
        for m, name in params:
            prune.l1_unstructured(m, name, amount=ratio)
    return model


def mask_with_scores(model: nn.Module, scores: Mapping[str, torch.Tensor], ratio: float,
                     inplace: bool = False) -> nn.Module:
    """Zero the ``ratio`` lowest-scoring weights of every named layer, using your own scores.

    ``scores`` maps a module name to a tensor of the weight's shape (e.g. gradient magnitudes);
    ``prune.custom_from_mask`` installs the resulting masks.
    """
    check_ratio(ratio)
    model = model if inplace else clone(model)
    modules = dict(model.named_modules())
    for name, s in scores.items():
        m = _module(modules, name)
        if s.shape != m.weight.shape:
            raise ValueError(f"scores for {name!r} have shape {tuple(s.shape)}, weight has {tuple(m.weight.shape)}")
        k = int(round(ratio * s.numel()))
        mask = torch.ones_like(s)
        if k:
            mask.view(-1)[torch.argsort(s.flatten(), stable=True)[:k]] = 0
        prune.custom_from_mask(m, "weight", mask.to(m.weight.device))
    return model


def mask_channels(model: nn.Module, keep: Mapping[str, Sequence[int]], inplace: bool = False) -> nn.Module:
    """Silence whole output channels with masks, leaving every tensor its shape.

    A channel is silent only if nothing of it reaches the next layer: its filter, its bias and,
    where a BatchNorm follows, the BN's scale and shift are all masked (a BN shift alone would
    still send a constant). The masked model computes exactly what :func:`remove_channels` with
    the same ``keep`` computes, at the full model's cost: that is the point of the comparison.
    """
    groups = _groups_for(model, keep)
    model = model if inplace else clone(model)
    modules = dict(model.named_modules())
    for name, idx in keep.items():
        g = groups[name]
        idx = _check_keep(name, idx, _module(modules, name).out_channels)
        alive = torch.zeros(_module(modules, name).out_channels)
        alive[idx] = 1.0
        for conv_name in (g.conv, *g.coupled, *g.depthwise):   # every conv that writes these channels
            conv = _module(modules, conv_name)
            prune.custom_from_mask(conv, "weight", alive.view(-1, 1, 1, 1).to(conv.weight.device).expand_as(conv.weight))
            if conv.bias is not None:
                prune.custom_from_mask(conv, "bias", alive.to(conv.bias.device))
        for bn_name in g.all_norms:
            bn = _module(modules, bn_name)
            features = _features_alive(bn_name, g, alive, bn.num_features)
            if prune.is_pruned(bn):      # a norm after a concatenation: another group masked its other segments
                features = features.to(bn.weight_mask.device) * bn.weight_mask
                prune.remove(bn, "weight")
                prune.remove(bn, "bias")
            prune.custom_from_mask(bn, "weight", features.to(bn.weight.device))
            prune.custom_from_mask(bn, "bias", features.to(bn.bias.device))
    return model


def _features_alive(layer: str, group: ChannelGroup, alive: torch.Tensor, width: int) -> torch.Tensor:
    """``alive`` (one entry per channel of ``group``) placed where those channels sit among ``layer``'s ``width``
    input channels: everywhere when the layer reads exactly the group's channels, at the group's segment when it
    reads a concatenation (the other segments stay 1 here)."""
    segment = group.segment(layer)
    if segment is None:
        return alive
    offset, _ = segment
    full = torch.ones(width)
    full[offset:offset + len(alive)] = alive
    return full


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every ``torch.nn.utils.prune`` mask into its weight and drop the hooks (in place)."""
    for m in model.modules():
        for hook in list(m._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(m, hook._tensor_name)
    return model


# --------------------------------------------------------------------------- surgery

def channel_groups(model: nn.Module, example_input: torch.Tensor | None = None) -> list[ChannelGroup]:
    """The channel groups of ``model``: its own ``channel_groups()``; else, given an ``example_input`` batch, the
    groups found by tracing it (:func:`pruning.tracing.attach`, which also gives the model its
    ``channel_groups()`` and its input size from then on); else the inner channels of its residual blocks."""
    if hasattr(model, "channel_groups"):
        return model.channel_groups()
    if example_input is not None:
        from .tracing import attach      # tracing needs torch.fx; imported only for a model that declares nothing
        return attach(model, example_input).channel_groups()
    groups = block_channel_groups(model)
    if not groups:
        raise ValueError(f"unsupported layer pattern: {type(model).__name__} has no channel_groups() "
                         f"and no residual basic blocks (conv1, bn1, conv2); surgery cannot tell which "
                         f"layers read a conv's output channels. Trace them once: "
                         f"pruning.tracing.attach(model, example_input)")
    return groups


def _groups_for(model: nn.Module, names) -> dict[str, ChannelGroup]:
    """The model's channel groups by conv name, after checking that every name in ``names`` is one."""
    groups = {g.conv: g for g in channel_groups(model)}
    for name in names:
        if name not in groups:
            raise ValueError(f"{name!r} is not a prunable conv of {type(model).__name__}; prunable: {list(groups)}")
    return groups


def _module(modules: dict[str, nn.Module], name: str) -> nn.Module:
    if name not in modules:
        raise ValueError(f"no layer named {name!r} in the model")
    return modules[name]


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _check_keep(name: str, keep: Sequence[int], n: int) -> torch.Tensor:
    idx = torch.as_tensor(list(keep), dtype=torch.long)
    if idx.ndim != 1:
        raise ValueError(f"{name}: channel indices must be a flat list")
    if len(idx) == 0:
        raise ValueError(f"{name}: cannot remove every channel of a layer ({n} of {n}); keep at least one")
    if idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"{name}: channel index out of range; the layer has channels 0..{n - 1}, "
                         f"got {sorted(set(idx.tolist()) - set(range(n)))}")
    if len(set(idx.tolist())) != len(idx):
        raise ValueError(f"{name}: channel indices are repeated")
    return idx.sort().values


def _plain(module: nn.Module, name: str) -> None:
    if prune.is_pruned(module):
        raise ValueError(f"{name} carries a torch.nn.utils.prune mask; call make_permanent() before surgery")


def _slice_conv(conv: nn.Conv2d, out_idx=None, in_idx=None) -> nn.Conv2d:
    if conv.groups != 1:
        raise ValueError(f"unsupported layer pattern: grouped/depthwise conv (groups={conv.groups})")
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else None
    out_idx = out_idx.to(w.device) if out_idx is not None else None
    in_idx = in_idx.to(w.device) if in_idx is not None else None
    if out_idx is not None:
        w = w[out_idx]
        b = b[out_idx] if b is not None else None
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Conv2d(w.shape[1], w.shape[0], conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=b is not None, padding_mode=conv.padding_mode, device=w.device, dtype=w.dtype)
    new.weight.data.copy_(w)
    if b is not None:
        new.bias.data.copy_(b)
    return new.train(conv.training)


def _slice_depthwise(conv: nn.Conv2d, idx: torch.Tensor) -> nn.Conv2d:
    """A depthwise conv (one filter per channel) keeping channels ``idx``, in and out."""
    w = conv.weight.detach()
    idx = idx.to(w.device)
    new = nn.Conv2d(len(idx), len(idx), conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups=len(idx),
                    bias=conv.bias is not None, padding_mode=conv.padding_mode, device=w.device, dtype=w.dtype)
    new.weight.data.copy_(w[idx])
    if conv.bias is not None:
        new.bias.data.copy_(conv.bias.detach()[idx])
    return new.train(conv.training)


def _slice_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    ref = next(iter([*bn.parameters(), *bn.buffers()]), torch.empty(0))  # where the BN lives
    idx = idx.to(ref.device)
    new = nn.BatchNorm2d(len(idx), bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                         device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
    if bn.affine:
        new.weight.data.copy_(bn.weight.detach()[idx])
        new.bias.data.copy_(bn.bias.detach()[idx])
    if bn.track_running_stats:
        new.running_mean.copy_(bn.running_mean[idx])
        new.running_var.copy_(bn.running_var[idx])
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.train(bn.training)


def _slice_linear_inputs(lin: nn.Linear, idx: torch.Tensor, channels: int) -> nn.Linear:
    """Keep the inputs of ``lin`` that come from channels ``idx`` of a flattened (C, H, W) map."""
    if lin.in_features % channels:
        raise ValueError(f"unsupported layer pattern: linear layer with {lin.in_features} inputs "
                         f"cannot follow a conv with {channels} channels")
    spatial = lin.in_features // channels  # H * W positions per channel, channel-major after flatten
    cols = (idx.view(-1, 1) * spatial + torch.arange(spatial).view(1, -1)).flatten().to(lin.weight.device)
    new = nn.Linear(len(cols), lin.out_features, bias=lin.bias is not None,
                    device=lin.weight.device, dtype=lin.weight.dtype)
    new.weight.data.copy_(lin.weight.detach()[:, cols])
    if lin.bias is not None:
        new.bias.data.copy_(lin.bias.detach())
    return new.train(lin.training)


def remove_channels(model: nn.Module, keep: Mapping[str, Sequence[int]], inplace: bool = False) -> nn.Module:
    """Physically remove output channels of convs, with their BN features and the next layers' inputs.

    A layer that reads a concatenation of several groups (``ChannelGroup.offsets``) loses, in each group's segment,
    the inputs that group removes, and keeps the rest of its inputs in order.

    Args:
        keep: maps a prunable conv's name (a ``ChannelGroup.conv``) to the indices of the
            channels to **keep**. Convs not named stay as they are.
        inplace: modify ``model`` itself; by default a deep copy is changed and returned.

    Raises:
        ValueError: an unknown or non-prunable layer, an empty keep list (a layer with no
            channels), an index out of range or repeated, a masked layer, or a layer pattern
            the surgery does not support (grouped convs, a consumer that is not conv/linear).
    """
    groups = _groups_for(model, keep)
    modules = dict(model.named_modules())
    plans = []
    for name, idx in keep.items():  # validate everything before changing anything
        conv = _module(modules, name)
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"unsupported layer pattern: {name} is a {type(conv).__name__}, not a Conv2d")
        g = groups[name]
        for member in (name, *g.coupled, *g.depthwise, *g.all_norms, *g.consumers):
            _plain(_module(modules, member), member)
        for other in (*g.coupled, *g.depthwise):
            if _module(modules, other).out_channels != conv.out_channels:
                raise ValueError(f"unsupported layer pattern: {other} does not write {conv.out_channels} channels "
                                 f"like {name}, with which it is coupled")
        plans.append((g, _check_keep(name, idx, conv.out_channels), conv.out_channels))
    model = model if inplace else clone(model)
    # A layer that reads a concatenation keeps a mask over all its input channels; each pruned group clears what it
    # removes from its own segment, and the layer is sliced once, after every group has marked it (slicing it group
    # by group would shift the offsets of the segments after the first).
    segments: dict[str, torch.Tensor] = {}
    for group, idx, n_out in plans:
        modules = dict(model.named_modules())
        for producer in (group.conv, *group.coupled):
            _set_module(model, producer, _slice_conv(modules[producer], out_idx=idx))
        for dw in group.depthwise:
            _set_module(model, dw, _slice_depthwise(modules[dw], idx))
        for layer in (*group.all_norms, *group.consumers):
            if (segment := group.segment(layer)) is not None:
                alive = torch.zeros(n_out, dtype=torch.bool)
                alive[idx] = True
                placed = _features_alive(layer, group, alive, segment[1]).bool()
                segments[layer] = segments[layer] & placed if layer in segments else placed
            elif layer in group.all_norms:
                _set_module(model, layer, _slice_norm(_module(modules, layer), layer, group, idx, n_out))
            else:
                _set_module(model, layer, _slice_consumer(_module(modules, layer), layer, idx, n_out))
    modules = dict(model.named_modules())
    for layer, kept in segments.items():
        idx, width = kept.nonzero().flatten(), len(kept)
        is_norm = any(layer in g.all_norms for g, _, _ in plans)
        _set_module(model, layer, _slice_norm(modules[layer], layer, None, idx, width) if is_norm
                    else _slice_consumer(modules[layer], layer, idx, width))
    return model


def _slice_norm(bn: nn.Module, name: str, group: ChannelGroup | None, idx: torch.Tensor, n_out: int) -> nn.Module:
    if not isinstance(bn, nn.BatchNorm2d) or bn.num_features != n_out:
        writer = f"{group.conv}'s output" if group is not None else f"the {n_out} channels it reads"
        raise ValueError(f"unsupported layer pattern: {name} does not normalise {writer}")
    return _slice_bn(bn, idx)


def _slice_consumer(consumer: nn.Module, name: str, idx: torch.Tensor, channels: int) -> nn.Module:
    """``consumer`` reading only input channels ``idx`` of the ``channels`` it read."""
    if isinstance(consumer, nn.Conv2d):
        return _slice_conv(consumer, in_idx=idx)
    if isinstance(consumer, nn.Linear):
        return _slice_linear_inputs(consumer, idx, channels)
    raise ValueError(f"unsupported layer pattern: {name} is a {type(consumer).__name__}; "
                     f"surgery handles Conv2d and Linear consumers")


def widths(model: nn.Module) -> dict[str, int]:
    """Output channels of every prunable conv, by name."""
    modules = dict(model.named_modules())
    return {g.conv: modules[g.conv].out_channels for g in channel_groups(model)}
