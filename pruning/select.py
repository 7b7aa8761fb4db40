"""Selection: from importance scores to the channels each layer keeps.

Every method in the course produces scores, one per output channel of each prunable conv
(``{conv name: tensor}``; higher = more important). Selection turns them into a ``keep``
dict (``{conv name: indices to keep}``) for :func:`pruning.surgery.remove_channels`, by one of
three rules:

* :func:`keep_by_ratio` - remove the same fraction from every layer;
* :func:`keep_by_threshold` - remove the channels scoring below a threshold (one per layer or global);
* :func:`keep_for_macs` - rank all channels globally and remove the weakest until a MACs
  reduction target is met.

No rule ever empties a layer: at least ``min_keep`` channels (the best-scoring) survive.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from .measure import layer_macs, parameters
from .surgery import channel_groups, check_ratio, remove_channels, widths

Scores = Mapping[str, torch.Tensor]
Keep = dict[str, list[int]]


def top_indices(scores: torch.Tensor, n_keep: int) -> list[int]:
    """Indices (sorted) of the ``n_keep`` highest scores; ties go to the lower index."""
    n_keep = max(0, min(int(n_keep), len(scores)))
    order = torch.argsort(-scores.detach().float().flatten(), stable=True)
    return sorted(order[:n_keep].tolist())


def keep_by_ratio(scores: Scores, ratio: float | Mapping[str, float], min_keep: int = 1) -> Keep:
    """Remove ``ratio`` of every layer's channels (the lowest-scoring ones).

    ``ratio`` is one number for all layers, or a dict of per-layer ratios (layers not named
    keep everything). The number removed is ``floor(ratio * channels)``.
    """
    keep = {}
    for name, s in scores.items():
        r = ratio.get(name, 0.0) if isinstance(ratio, Mapping) else ratio
        check_ratio(r, f"ratio for {name}")
        n = len(s)
        keep[name] = top_indices(s, max(min_keep, n - math.floor(r * n)))
    return keep


def keep_by_threshold(scores: Scores, threshold: float | Mapping[str, float], min_keep: int = 1) -> Keep:
    """Keep the channels whose score is >= the threshold (per layer if a dict is given).

    If fewer than ``min_keep`` channels pass, the ``min_keep`` best are kept anyway.
    """
    keep = {}
    for name, s in scores.items():
        t = threshold[name] if isinstance(threshold, Mapping) else threshold
        n_pass = int((s >= t).sum())
        keep[name] = top_indices(s, max(min_keep, n_pass))
    return keep


def macs_after(model: nn.Module, kept: Mapping[str, int], input_size=None,
               base: Mapping[str, int] | None = None) -> int:
    """MACs the model would have after keeping ``kept[conv]`` channels of each named conv.

    No surgery is done: a conv's MACs scale with its kept outputs, and the layer reading it
    scales with its kept inputs, so the count follows from the per-layer MACs of the full model
    (pass them as ``base`` to avoid recounting). Exact for conv and linear layers.
    """
    base = layer_macs(model, input_size) if base is None else base
    return _macs_from(base, channel_groups(model), widths(model), kept)


def _macs_from(base: Mapping[str, int], groups, widths: Mapping[str, int], kept: Mapping[str, int]) -> int:
    """The count behind :func:`macs_after`: every layer in a group's ``members`` (its conv, coupled and depthwise
    convs, and the consumers whose inputs shrink) scales by that group's kept fraction ``kept / width``; a layer in
    two groups (it writes one group's channels and reads another's) by both; a layer reading a concatenation as
    :func:`_scale` says. Groups not in ``kept`` stay whole."""
    return int(round(sum(base[n] * _scale(n, [g for g in groups if n in g.members], kept, widths) for n in base)))


def _scale(layer: str, groups, kept: Mapping[str, int], widths: Mapping[str, int]) -> float:
    """The fraction of ``layer``'s MACs left when every group in ``groups`` (those with ``layer`` among their
    ``members``) keeps ``kept[g.conv]`` of its ``widths[g.conv]`` channels. Writing or reading one group's channels
    scales the layer by that group's kept fraction. Reading a **concatenation** of several groups' channels, its
    input shrinks by what all the segments lose together: ``(width - removed) / width``, a sum over the segments,
    not a product of their fractions. Groups not in ``kept`` stay whole."""
    scale, removed, width = 1.0, 0, 0
    for g in groups:
        if g.conv not in kept:
            continue
        segment = g.segment(layer)
        if segment is None:
            scale *= kept[g.conv] / widths[g.conv]
        else:
            removed += widths[g.conv] - kept[g.conv]
            width = segment[1]
    return scale * (width - removed) / width if width else scale


def normalize_per_layer(scores: Scores, how: str = "max") -> dict[str, torch.Tensor]:
    """Make scores comparable across layers: divide by the layer's max (``"max"``),
    its L2 norm (``"l2"``), or leave them (``"none"``)."""
    out = {}
    for name, s in scores.items():
        s = s.detach().float()
        if how == "max":
            out[name] = s / s.abs().max().clamp_min(1e-12)
        elif how == "l2":
            out[name] = s / s.norm().clamp_min(1e-12)
        elif how == "none":
            out[name] = s
        else:
            raise ValueError(f"normalisation must be 'max', 'l2' or 'none', got {how!r}")
    return out


def keep_for_macs(model: nn.Module, scores: Scores, reduction: float, input_size=None,
                  normalize: str = "max", min_keep: int = 1, per_mac: bool = False) -> Keep:
    """Globally remove the lowest-scoring channels until MACs fall by at least ``reduction``.

    Channels of all layers are ranked together on per-layer-normalised scores, then removed
    one at a time (skipping a layer once only ``min_keep`` channels remain) until the model's
    MACs are at most ``(1 - reduction)`` of the original. Raises ``ValueError`` if the target
    cannot be met with the layers given.

    ``per_mac=True`` makes the ranking **MAC-aware**: each layer's normalised scores are divided by what one of its
    channels costs (:func:`channel_costs`, relative to the mean cost), so of two channels that score alike the one
    that frees more MACs goes first. The plain ranking ignores the cost, and so spends the budget wherever scores are
    low, however little a channel there saves.
    """
    check_ratio(reduction, "reduction")
    base = layer_macs(model, input_size)
    total = sum(base.values())
    target = (1 - reduction) * total
    norm = normalize_per_layer(scores, normalize)
    if per_mac:
        cost = channel_costs(model, base)
        mean = sum(cost[n] for n in norm) / len(norm)
        norm = {n: s / (cost[n] / mean) for n, s in norm.items()}
    kept = {name: len(s) for name, s in norm.items()}
    removed = {name: set() for name in norm}
    ranking = sorted(((float(v), name, i) for name, s in norm.items() for i, v in enumerate(s.tolist())))
    # Incremental count: a removal changes only the layers of its own group (the conv and its consumers). Each such
    # layer's MACs is recomputed as macs_after does (the same _scale, the same groups in the same order), so the
    # running total is exactly macs_after's, without walking the whole model once per removed channel.
    groups = [g for g in channel_groups(model) if g.conv in kept]
    full = widths(model)
    touching = {n: [g for g in groups if n in g.members] for n in base}
    layer_now = {}

    def recount(n):
        layer_now[n] = base[n] * _scale(n, touching[n], kept, full)

    for n in base:
        recount(n)
    members = {g.conv: [n for n in g.members if n in base] for g in groups}
    current = int(round(sum(layer_now.values())))
    for _, name, i in ranking:
        if current <= target:
            break
        if kept[name] <= min_keep:
            continue
        kept[name] -= 1
        removed[name].add(i)
        for n in members.get(name, ()):
            recount(n)
        current = int(round(sum(layer_now[n] for n in base)))
    if current > target:
        raise ValueError(f"cannot remove {reduction:.0%} of MACs by pruning only {list(scores)} "
                         f"(reached {1 - current / total:.1%})")
    return {name: [i for i in range(len(norm[name])) if i not in removed[name]] for name in norm}


def channel_costs(model: nn.Module, base: Mapping[str, int] | None = None, input_size=None) -> dict[str, float]:
    """MACs that one output channel of each prunable conv costs in the full model: the MACs of every layer whose
    count scales with that group's channels (its conv, coupled and depthwise convs, and the consumers), divided by
    the group's width. Removing one channel frees about that much (exactly, for a layer in no other group)."""
    base = layer_macs(model, input_size) if base is None else base
    full = widths(model)
    return {g.conv: sum(base.get(n, 0) for n in g.members) / full[g.conv] for g in channel_groups(model)}


def macs_removed(model: nn.Module, keep: Mapping[str, list[int]], input_size=None,
              base: Mapping[str, int] | None = None) -> float:
    """Fraction of MACs that ``keep`` removes (predicted, without surgery). Pass the full model's
    ``layer_macs`` as ``base`` when calling this many times (a search, a widget)."""
    base = layer_macs(model, input_size) if base is None else base
    return 1 - macs_after(model, {k: len(v) for k, v in keep.items()}, input_size, base) / sum(base.values())


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two score vectors (Pearson correlation of their ranks).

    1 = the same ranking, 0 = unrelated, -1 = reversed. Ties are ranked by position (scores of
    real criteria are floats and rarely tie).
    """
    if a.shape != b.shape or a.numel() < 2:
        raise ValueError(f"need two score vectors of the same length >= 2, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.detach().flatten().double().cpu(), b.detach().flatten().double().cpu()   # scores may live on a GPU
    ra = torch.argsort(torch.argsort(a, stable=True)).double()
    rb = torch.argsort(torch.argsort(b, stable=True)).double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def uniform_ratio_for(model: nn.Module, reduction: float, input_size=None, min_keep: int = 1,
                      iterations: int = 40, metric: str = "macs") -> tuple[float, dict[str, int]]:
    """The smallest ratio r that, removed from every prunable conv alike, cuts ``metric`` by ``reduction``.

    ``metric`` is ``"macs"`` (predicted from the per-layer counts, no surgery) or ``"params"`` (counted on
    the model after surgery, keeping the first channels: only the widths matter). Needs no trained
    weights: only the architecture (e.g. torchvision's ``resnet34()`` at 224x224, to see what a paper's
    FLOPs figure means in channels). Returns ``(r, {conv: channels kept})``.
    """
    check_ratio(reduction, "reduction")
    if metric not in ("macs", "params"):
        raise ValueError(f"metric must be 'macs' or 'params', got {metric!r}")
    base = layer_macs(model, input_size)
    total = sum(base.values()) if metric == "macs" else parameters(model)
    full = widths(model)

    def kept_at(r: float) -> dict[str, int]:
        return {n: max(min_keep, w - math.floor(r * w)) for n, w in full.items()}

    def reduced(r: float) -> float:
        kept = kept_at(r)
        if metric == "macs":
            return 1 - macs_after(model, kept, input_size, base) / total
        return 1 - parameters(remove_channels(model, {n: list(range(k)) for n, k in kept.items()})) / total

    if reduced(1.0) < reduction:
        raise ValueError(f"removing channels of {len(full)} convs can cut at most {reduced(1.0):.1%} of {metric}")
    lo, hi = 0.0, 1.0
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if reduced(mid) >= reduction else (mid, hi)
    return hi, kept_at(hi)


def keep_like(scores: Scores, keep: Mapping[str, list[int]]) -> Keep:
    """Keep as many channels in every layer as ``keep`` does, chosen by ``scores`` instead: a baseline
    at exactly the same per-layer widths (so the same MACs and parameters) as another method's selection."""
    missing = set(keep) - set(scores)
    if missing:
        raise ValueError(f"no scores for {sorted(missing)}")
    return {name: top_indices(scores[name], len(k)) for name, k in keep.items()}


def round_widths(scores: Scores, keep: Mapping[str, list[int]], multiple: int) -> Keep:
    """``keep`` with every layer's count of kept channels rounded **up** to a multiple of ``multiple`` (at most the
    layer's width), the extra channels chosen by ``scores``. Vector units and matrix kernels work in blocks (8
    floats per AVX2 register; 16 or 32 elsewhere), so a width of 58 can cost about as much time as 64: rounding
    buys back accuracy for MACs that may cost no time. The MACs grow; count them again after rounding."""
    if not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
    missing = set(keep) - set(scores)
    if missing:
        raise ValueError(f"no scores for {sorted(missing)}")
    out = {}
    for name, k in keep.items():
        s = scores[name].detach().float().flatten().clone()
        target = min(len(s), math.ceil(len(k) / multiple) * multiple)
        s[list(k)] = float("inf")                     # what keep kept stays; the extras are the best of the rest
        out[name] = top_indices(s, target)
    return out
