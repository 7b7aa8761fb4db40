"""Statistics-based filter pruning: cluster each layer's filters by the mean and variance of their weights.

Gong, Zhang & Zeng, "Convolution neural network model compression method based on pruning and tensor
decomposition", *Journal of Computer Applications* 40(11), 2020, 3146-3151 (abstract in ``shared/seeds/002``).

The idea: a filter whose weights barely vary extracts a weak feature. For filter j of a conv with
weight ``W[j]`` (all its ``in x k x k`` weights),

    mu_j = mean(W[j]),   var_j = var(W[j])                                   (1)

Each layer's points ``(mu_j, var_j)`` are standardised (z-scores per coordinate, so that the mean and
the variance, which live on different scales, count alike),

    z_j = ((mu_j - mean(mu)) / std(mu),  (var_j - mean(var)) / std(var))   (2)

and clustered by k-means (k = 2 by default, several restarts, seeded):

    min over clusters C_1..C_k of  sum_c sum_{j in C_c} ||z_j - centre_c||^2   (3)

The **weak** cluster is the one whose filters have the smallest mean variance (in the original units);
its filters are removed. Removal rebuilds the next layer from the kept inputs: that is exactly what
:func:`pruning.surgery.remove_channels` does, so this file only produces the ``keep`` dict.

What the abstract does not say and we chose: the standardisation (2), k = 2 with 10 restarts, the
"smallest mean variance" rule for picking the weak cluster, and that a layer always keeps
at least ``min_keep`` filters (if the weak cluster would take everything, nothing is removed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn

from ..surgery import channel_groups


def filter_statistics(weight: torch.Tensor) -> torch.Tensor:
    """Eq. (1): ``(n_filters, 2)`` tensor of each filter's weight mean and (population) variance."""
    if weight.ndim < 2:
        raise ValueError(f"expected a conv or linear weight (out, in, ...), got shape {tuple(weight.shape)}")
    flat = weight.detach().double().flatten(1)
    return torch.stack([flat.mean(dim=1), flat.var(dim=1, unbiased=False)], dim=1)


def standardise(points: torch.Tensor) -> torch.Tensor:
    """Eq. (2): z-score every column (a column with no spread becomes zeros)."""
    centred = points - points.mean(dim=0)
    spread = points.std(dim=0, unbiased=False)
    return centred / torch.where(spread > 0, spread, torch.ones_like(spread))


@dataclass
class LayerClusters:
    """The clustering of one layer's filters."""

    name: str
    stats: torch.Tensor      # (n, 2): mean and variance of each filter, eq. (1)
    points: torch.Tensor     # (n, 2): the standardised points that were clustered, eq. (2)
    labels: np.ndarray       # (n,): cluster of each filter
    weak: int                # the cluster with the smallest mean variance
    keep: list[int]          # filters kept (not in the weak cluster, or the best ``min_keep``)

    @property
    def removed(self) -> list[int]:
        return sorted(set(range(len(self.labels))) - set(self.keep))


def cluster_filters(weight: torch.Tensor, k: int = 2, seed: int = 0, n_init: int = 10,
                    min_keep: int = 1, name: str = "") -> LayerClusters:
    """Cluster one layer's filters by (mean, variance) with k-means (eq. 3) and mark the weak cluster.

    ``sklearn.cluster.KMeans`` with ``n_init`` restarts seeded by ``seed``: the same seed always gives the
    same split. Raises ``ValueError`` if ``k`` is not between 2 and the number of filters.
    """
    n = weight.shape[0]
    if not isinstance(k, (int, np.integer)) or not 2 <= k <= n:
        raise ValueError(f"k must be an integer between 2 and the number of filters ({n}), got {k!r}")
    stats = filter_statistics(weight).cpu()             # k-means (scikit-learn) works on the CPU
    points = standardise(stats)
    labels = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(points.numpy())
    mean_var = [stats[labels == c, 1].mean().item() if (labels == c).any() else float("inf") for c in range(k)]
    weak = int(np.argmin(mean_var))
    keep = [j for j in range(n) if labels[j] != weak]
    if len(keep) < min_keep:  # never empty a layer: keep the highest-variance filters instead
        keep = sorted(torch.argsort(-stats[:, 1], stable=True)[:min_keep].tolist())
    return LayerClusters(name, stats.float(), points.float(), labels, weak, keep)


def cluster_model(model: nn.Module, k: int = 2, seed: int = 0, names: Sequence[str] | None = None,
                  n_init: int = 10, min_keep: int = 1) -> dict[str, LayerClusters]:
    """:func:`cluster_filters` for every prunable conv of ``model`` (or only ``names``), by conv name."""
    convs = [g.conv for g in channel_groups(model)]
    if names is not None:
        unknown = set(names) - set(convs)
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not prunable convs of {type(model).__name__}; prunable: {convs}")
        convs = [c for c in convs if c in names]
    return {c: cluster_filters(model.get_submodule(c).weight, k, seed, n_init, min_keep, name=c) for c in convs}


def keep_clusters(model: nn.Module, k: int = 2, seed: int = 0, names: Sequence[str] | None = None,
                  n_init: int = 10, min_keep: int = 1) -> dict[str, list[int]]:
    """The ``keep`` dict for :func:`pruning.surgery.remove_channels`: every weak cluster removed."""
    return {c: lc.keep for c, lc in cluster_model(model, k, seed, names, n_init, min_keep).items()}
