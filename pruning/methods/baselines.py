"""Baselines every paper is compared against: PFEC's L1-norm filter ranking, and random ranking.

PFEC: H. Li, A. Kadav, I. Durdanovic, H. Samet, H. P. Graf. *Pruning Filters for Efficient
ConvNets*. ICLR 2017. A filter's importance is the sum of its absolute weights,

    s_j = sum_{c, k1, k2} |W[j, c, k1, k2]|                                  (PFEC, Sec. 3.1)

and the filters with the smallest s_j are removed together with their feature maps and the
kernels of the next layer that read them. To decide how much each layer can lose, PFEC prunes
one layer at a time at rising ratios and measures accuracy with no retraining: its
*sensitivity scan* (PFEC, Sec. 3.2 and Fig. 2). Sensitive layers are spared or pruned less.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import Data
from ..select import keep_by_ratio
from ..surgery import channel_groups, remove_channels
from ..train import evaluate, recalibrate_bn


def l1_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    """PFEC's score: the L1 norm of each output filter of every prunable conv."""
    modules = dict(model.named_modules())
    return {g.conv: modules[g.conv].weight.detach().abs().sum(dim=(1, 2, 3)) for g in channel_groups(model)}


def random_scores(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random scores (a seeded permutation per layer): the control any criterion must beat."""
    gen = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    return {g.conv: torch.randperm(modules[g.conv].out_channels, generator=gen).float()
            for g in channel_groups(model)}


def sensitivity_scan(model: nn.Module, data: Data, ratios: Sequence[float] = (0.2, 0.4, 0.6, 0.8),
                     layers: Sequence[str] | None = None, split: str = "val", limit: int | None = 1000,
                     recalibrate: int = 0, progress: bool = True) -> dict[str, list[float]]:
    """PFEC's per-layer sensitivity scan: prune one layer alone by L1 at each ratio, no retraining.

    Args:
        ratios: fractions of the layer's filters to remove.
        layers: which prunable convs to scan (default: all).
        split, limit: accuracy is measured on the first ``limit`` images of ``split``
            (the validation split: choices are made there, never on the test split).
        recalibrate: if > 0, recompute BatchNorm statistics on that many training batches
            before measuring (PFEC did not; see the basics notebook for what it changes).

    Returns ``{layer: [accuracy at each ratio]}``; the unpruned accuracy is not repeated per layer.
    """
    scores = l1_scores(model)
    layers = list(scores) if layers is None else list(layers)
    result = {name: [] for name in layers}
    bar = tqdm(total=len(layers) * len(ratios), desc="sensitivity scan", disable=not progress, leave=False)
    for name in layers:
        for r in ratios:
            pruned = remove_channels(model, keep_by_ratio({name: scores[name]}, r))
            if recalibrate:
                recalibrate_bn(pruned, data, num_batches=recalibrate)
            result[name].append(evaluate(pruned, data, split, limit=limit))
            bar.update(1)
    bar.close()
    return result


def pfec_keep(model: nn.Module, ratio: float, skip: Sequence[str] = (),
              scores: dict[str, torch.Tensor] | None = None) -> dict[str, list[int]]:
    """PFEC's selection: remove ``ratio`` of the lowest-L1 filters of every layer not in ``skip``."""
    scores = l1_scores(model) if scores is None else scores
    return keep_by_ratio({k: v for k, v in scores.items() if k not in skip}, ratio)


def pfec_vgg16_keep(model: nn.Module, ratio: float = 0.5, scores: dict[str, torch.Tensor] | None = None) -> dict[str, list[int]]:
    """PFEC's VGG-16 recipe ("VGG-16-pruned-A", PFEC Sec. 4.1): remove ``ratio`` of the lowest-L1
    filters of conv 1 and convs 8-13, and leave convs 2-7 whole. PFEC chose these layers from its
    sensitivity scan; at 50% it reports 34.2% fewer FLOPs on CIFAR-10."""
    convs = [g.conv for g in channel_groups(model)]
    if len(convs) != 13:
        raise ValueError(f"the PFEC VGG-16 recipe needs a 13-conv VGG-16, this model has {len(convs)} prunable convs")
    return pfec_keep(model, ratio, skip=convs[1:7], scores=scores)
