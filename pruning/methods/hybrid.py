"""Paper 3's hybrid compressor: prune the low-dimensional convolutions, decompose the high-dimensional ones.

Gong, Zhang & Zeng (2020) prune the low-dimensional layers of Faster R-CNN by statistics clustering
(:mod:`.statistics`) and split the high-dimensional ones into three cascaded convolutions (Tucker-2,
:mod:`.tucker`), then fine-tune. Where "low" ends and "high" begins is not given in the abstract, so it is
a parameter here: ``split`` = how many of the model's prunable convs, in forward order, are pruned; every
later conv is decomposed. Pruning comes first (it changes the input channels of the layer after it), then
the decomposition runs on the pruned weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..surgery import channel_groups, remove_channels, widths
from . import statistics, tucker


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
        k, seed: the k-means of :func:`statistics.keep_clusters`.
        rule, value: the rank rule of :func:`tucker.choose_ranks` (``"vbmf"``, ``"energy"``, ``"ratio"``).

    Returns the compressed copy (``model`` is untouched) and the :class:`Plan`.
    """
    convs = [g.conv for g in channel_groups(model)]
    if not isinstance(split, int) or not 0 <= split <= len(convs):
        raise ValueError(f"split must be an integer from 0 to {len(convs)} (the number of prunable convs), got {split!r}")
    low, high = convs[:split], convs[split:]
    keep = statistics.keep_clusters(model, k=k, seed=seed, names=low) if low else {}
    pruned = remove_channels(model, keep) if keep else model
    ranks = tucker.model_ranks(pruned, high, rule, value)
    out = tucker.decompose(pruned, ranks)
    before = widths(model)
    return out, Plan({n: (before[n], len(keep[n])) for n in low}, ranks)
