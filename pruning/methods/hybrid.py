"""Paper 3's hybrid compressor: prune the low-dimensional convolutions, decompose the high-dimensional ones.

Gong, Zhang & Zeng (2020) prune the low-dimensional layers of Faster R-CNN by statistics clustering
(:mod:`.mean_variance`) and split the high-dimensional ones into three cascaded convolutions (Tucker-2,
:mod:`.tucker`), then fine-tune. Where "low" ends and "high" begins is not given in the abstract, so it is
a parameter here: ``split`` = how many of the model's prunable convs, in forward order, are pruned; every
later conv is decomposed. Pruning comes first (it changes the input channels of the layer after it), then
the decomposition runs on the pruned weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..measure import example_input, layer_macs, macs, parameters
from ..core import eval_mode
from ..surgery import channel_groups, check_ratio, remove_channels, widths
from . import mean_variance, tucker


@dataclass
class Plan:
    """What the hybrid compressor did to each conv (by name)."""

    pruned: dict[str, tuple[int, int]]           # conv -> (filters before, filters kept)
    decomposed: dict[str, tucker.Ranks]          # conv -> (R_out, R_in)


def compress(model: nn.Module, split: int, k: int = 2, seed: int = 0, rule: str = "vbmf",
             value: float | None = None) -> tuple[nn.Module, Plan]:
    """Cluster-prune the first ``split`` prunable convs, Tucker-2-decompose the rest.

    Args:
        split: 0 decomposes every conv, ``len(convs)`` prunes every conv.
        k, seed: the k-means of :func:`mean_variance.keep_clusters`.
        rule, value: the rank rule of :func:`tucker.choose_ranks` (``"vbmf"``, ``"energy"``, ``"ratio"``), or
            ``"storage"``: one rank ratio for every decomposed conv, bisected so that the whole model loses
            ``value`` of its parameters (:func:`compress_to_budget` with ``metric="params"``).

    Returns the compressed copy (``model`` is untouched) and the :class:`Plan`.
    """
    if rule == "storage":
        if value is None:
            raise ValueError("rule='storage' needs value, the fraction of the parameters to remove")
        return compress_to_budget(model, value, "params", split=split, k=k, seed=seed)
    pruned, keep, high = _prune_low(model, split, k, seed)
    ranks = tucker.model_ranks(pruned, high, rule, value)
    return tucker.decompose(pruned, ranks), _plan(model, keep, ranks)


def _prune_low(model: nn.Module, split: int, k: int, seed: int):
    """The first step of both compressors: cluster-prune the first ``split`` convs. Returns the pruned copy (or
    ``model`` itself if nothing is pruned), what was kept, and the names of the convs left to decompose."""
    convs = [g.conv for g in channel_groups(model)]
    if not isinstance(split, int) or not 0 <= split <= len(convs):
        raise ValueError(f"split must be an integer from 0 to {len(convs)} (the number of prunable convs), got {split!r}")
    low, high = convs[:split], convs[split:]
    keep = mean_variance.keep_clusters(model, k=k, seed=seed, names=low) if low else {}
    return (remove_channels(model, keep) if keep else model), keep, high


def _plan(model: nn.Module, keep, ranks) -> Plan:
    before = widths(model)
    return Plan({n: (before[n], len(v)) for n, v in keep.items()}, ranks)


def input_sizes(model: nn.Module, names, input_size=None) -> dict[str, tuple[int, int]]:
    """The spatial size of each named conv's input, from one forward pass (what eq. 6 needs)."""
    sizes, handles = {}, []
    for n in names:
        handles.append(model.get_submodule(n).register_forward_pre_hook(
            lambda m, args, n=n: sizes.__setitem__(n, tuple(args[0].shape[-2:]))))
    try:
        with eval_mode(model), torch.no_grad():
            model(example_input(model, input_size))
    finally:
        for h in handles:
            h.remove()
    return sizes


def compress_to_budget(model: nn.Module, reduction: float, metric: str = "macs", split: int = 2, k: int = 2,
                       seed: int = 0, input_size=None, iterations: int = 30) -> tuple[nn.Module, Plan]:
    """The hybrid at a budget: cluster-prune the first ``split`` convs as :func:`compress` does, then give every
    later conv the same Tucker rank ratio, the largest whose cost (eq. 6 of :mod:`.tucker`, no decomposition
    needed) removes at least ``reduction`` of the original model's ``metric``: ``"macs"`` (compute) or
    ``"params"`` (storage); decompose once at it. Raises ``ValueError`` if even rank 1 everywhere cannot meet
    the target."""
    check_ratio(reduction, "reduction")
    if metric not in ("macs", "params"):
        raise ValueError(f"metric must be 'macs' or 'params', got {metric!r}")
    pruned, keep, high = _prune_low(model, split, k, seed)
    modules = {n: pruned.get_submodule(n) for n in high}
    hw = input_sizes(pruned, high, input_size)
    if metric == "macs":
        target, per_layer = (1 - reduction) * macs(model, input_size), layer_macs(pruned, input_size)
        rest = sum(per_layer.values()) - sum(per_layer[n] for n in high)
    else:
        target = (1 - reduction) * parameters(model)
        rest = parameters(pruned) - sum(parameters(m) for m in modules.values())

    def cost_at(ratio: float) -> int:
        return rest + sum(tucker.cost(m, tucker.ranks_ratio(m.weight, ratio), hw[n])[metric] for n, m in modules.items())

    lo, hi = 0.0, 1.0                          # cost_at grows with the ratio; find the largest ratio within budget
    if cost_at(1e-9) > target:
        raise ValueError(f"the hybrid (split {split}) cannot remove {reduction:.0%} of the {metric} even at rank 1")
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost_at(mid) <= target else (lo, mid)
    ranks = {n: tucker.ranks_ratio(m.weight, max(lo, 1e-9)) for n, m in modules.items()}
    return tucker.decompose(pruned, ranks), _plan(model, keep, ranks)


def compress_to_macs(model: nn.Module, reduction: float, **kw) -> tuple[nn.Module, Plan]:
    """:func:`compress_to_budget` for a MACs (FLOPs) budget, as the capstone uses it."""
    return compress_to_budget(model, reduction, "macs", **kw)
