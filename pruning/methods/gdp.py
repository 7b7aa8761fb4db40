"""GDP: gradient-based filter pruning with an adaptive threshold.

Wang Zhongfeng, Xu Zhiyuan, Song Chunhe, Zhang Hongyu, Cai Yingkai. *Gradient-based deep network
pruning algorithm*. Journal of Computer Applications, 2020, 40(5): 1253-1259.

Stated in the abstract: the gradient is the criterion of a weight's importance; an adaptive method
finds a threshold; weights below it are removed; the network is retrained. Reconstructed here
(see the notebook's "stated / reconstructed" box), in four steps:

1. Accumulate, without optimizer steps, the gradient magnitude of every weight over B batches

       A_w = sum_{b=1..B} |dL_b / dw|                                                  (1)

2. Weight level: mask the weights with the smallest A_w (``weight_scores``).
   Filter level: the importance of filter j of layer l is the mean over its weights

       I_{l,j} = mean_{w in filter j} A_w                                              (2)

   Ablation: the first-order Taylor score |g * w|, accumulated the same way, which for a fixed w is
   sum_b |g_b| |w| = A_w |w|                                                           (2')

3. Adaptive thresholds, two variants:
   (a) per layer, tau_l = mean(I_l) - alpha * std(I_l); filters with I_{l,j} < tau_l go    (3a)
   (b) one global threshold t on layer-normalised scores I_l / max(I_l), found by bisection so
       that the MACs reduction meets a target                                         (3b)

4. Remove the filters (channel surgery), never a layer's last one; fine-tune.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import Data, batches
from ..measure import layer_macs
from ..core import device_of, eval_mode
from ..select import keep_by_threshold, macs_removed, normalize_per_layer
from ..surgery import channel_groups, check_ratio

Scores = dict[str, torch.Tensor]


def accumulate_gradients(model: nn.Module, data: Data, num_batches: int = 20, batch_size: int = 128,
                         split: str = "train", seed: int = 0, progress: bool = True) -> Scores:
    """Eq. (1): sum over ``num_batches`` mini-batches of |dL/dw| for every conv and linear weight.

    The model is run in eval mode (BatchNorm uses its running statistics, so the scores describe
    the trained network as it is, and no statistic changes) and no optimizer step is taken.
    Returns ``{module name: tensor shaped like its weight}``.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    acc = {n: torch.zeros_like(m.weight) for n, m in layers.items()}
    loss_fn = nn.CrossEntropyLoss()
    it = batches(data, split, batch_size, train=False, shuffle=True, augmentation=False,
                 limit=num_batches * batch_size, seed=seed)
    device = device_of(model)
    with eval_mode(model):
        for x, y in tqdm(it, total=num_batches, desc="accumulate |grad|", disable=not progress, leave=False):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            model.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            for n, m in layers.items():
                acc[n] += m.weight.grad.detach().abs()
    model.zero_grad(set_to_none=True)
    return acc


def weight_scores(model: nn.Module, grads: Scores, criterion: str = "grad") -> Scores:
    """Per-weight scores: A_w (``"grad"``, eq. 1) or A_w |w| (``"taylor"``, eq. 2')."""
    if criterion == "grad":
        return {n: a.clone() for n, a in grads.items()}
    if criterion == "taylor":
        modules = dict(model.named_modules())
        return {n: a.to(modules[n].weight.device) * modules[n].weight.detach().abs() for n, a in grads.items()}
    raise ValueError(f"criterion must be 'grad' or 'taylor', got {criterion!r}")


def filter_scores(model: nn.Module, grads: Scores, criterion: str = "grad") -> Scores:
    """Eq. (2): the mean per-weight score over each output filter of every prunable conv."""
    per_weight = weight_scores(model, grads, criterion)
    return {g.conv: per_weight[g.conv].flatten(1).mean(dim=1) for g in channel_groups(model)}


def layer_thresholds(scores: Mapping[str, torch.Tensor], alpha: float) -> dict[str, float]:
    """Eq. (3a): tau_l = mean(I_l) - alpha * std(I_l) for every layer (population std)."""
    return {n: float(s.mean() - alpha * s.std(unbiased=False)) for n, s in scores.items()}


def keep_alpha(scores: Mapping[str, torch.Tensor], alpha: float, min_keep: int = 1) -> dict[str, list[int]]:
    """Keep the filters at or above their layer's threshold (eq. 3a); at least ``min_keep`` per layer."""
    return keep_by_threshold(scores, layer_thresholds(scores, alpha), min_keep)


def keep_global(model: nn.Module, scores: Mapping[str, torch.Tensor], reduction: float,
                input_size=None, min_keep: int = 1, iterations: int = 60,
                normalize: str = "max") -> tuple[dict[str, list[int]], float]:
    """Eq. (3b): one threshold t on I_l / max(I_l), found by bisection, removing >= ``reduction`` of MACs.

    ``normalize`` picks the per-layer normalisation (``"max"`` as in eq. 3b, or ``"l2"``, see
    :func:`pruning.select.normalize_per_layer`). Returns ``(keep, t)``. The MACs reduction grows monotonically with t, so bisection finds the
    smallest t (to numerical precision) that meets the target: the result overshoots the target by
    less than the filters sharing the critical score, usually one filter's MACs.
    """
    check_ratio(reduction, "reduction")
    norm = normalize_per_layer(scores, normalize)
    base = layer_macs(model, input_size)

    def keep_at(t: float) -> dict[str, list[int]]:
        return keep_by_threshold(norm, t, min_keep)

    def reduced(keep) -> float:
        return macs_removed(model, keep, input_size, base)

    lo, hi = 0.0, max(float(v.max()) for v in norm.values()) + 1e-6  # t = 0: none go; above every score: all but min_keep
    if reduced(keep_at(hi)) < reduction:
        raise ValueError(f"cannot reach a {reduction:.0%} MACs reduction with these layers "
                         f"(at most {reduced(keep_at(hi)):.1%} keeping {min_keep} filter(s) per layer)")
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if reduced(keep_at(mid)) >= reduction:
            hi = mid
        else:
            lo = mid
    return keep_at(hi), hi
