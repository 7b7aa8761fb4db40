"""Supermasks: layers whose random weights stay frozen and whose only learned quantity is a binary mask.

The common ground of edge-popup (:mod:`pruning.methods.edge_popup`) and sparse binary programming
(:mod:`pruning.methods.sbp`). A supermask layer holds

* ``weight`` - random and **frozen** (``requires_grad=False``), set once to edge-popup's signed Kaiming
  constant: every weight is ``+sigma`` or ``-sigma`` with ``sigma = gain / sqrt(fan_in)``;
* ``scores`` - one learned number per weight (what the methods differ in);

and computes with ``weight * m`` where ``m`` is the binary mask keeping the ``k`` best-ranked weights of the
layer (``k = round((1 - sparsity) * n)``):

    m = top_k(rank(scores)),      y = layer(x; W0 * m)                                   (1)

The top-k has zero gradient almost everywhere, so both methods pass the gradient of the mask straight
through to the scores:

    dL/dscores  :=  dL/dm  =  dL/dW_eff * W0                                             (2)

A method is a subclass that says how scores start, how they are ranked, and what happens after each
optimiser step (``project_``). The network is the course's Conv-2/4/6 (:class:`pruning.models.ConvNet`)
built with these layers: :func:`network`.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .models import ConvNet


class TopK(torch.autograd.Function):
    """Eq. (1)-(2): forward, the binary mask of the ``k`` largest entries; backward, the identity
    (straight-through)."""

    @staticmethod
    def forward(ctx, ranking: torch.Tensor, k: int) -> torch.Tensor:
        return topk_mask(ranking, k)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def topk_mask(ranking: torch.Tensor, k: int) -> torch.Tensor:
    """A 0/1 tensor shaped like ``ranking`` with ones at its ``k`` largest entries. Ties go to the lower
    flat index (a stable sort), so the mask is deterministic. This is the exact projection of ``ranking``
    onto the sparse binary set ``{m in {0,1}^n : sum(m) = k}`` (for a ranking in [0, 1] it is the binary
    vector closest to it in the Euclidean norm)."""
    n = ranking.numel()
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and {n}, got {k}")
    flat = ranking.detach().flatten()
    if k == 0:
        return torch.zeros_like(ranking)
    # the k-th largest value by selection (linear time; a full sort of a million scores every step is slow)
    threshold = flat.kthvalue(n - k + 1).values
    above = flat > threshold
    tied = flat == threshold
    # of the entries equal to the threshold, take the lowest-indexed ones until there are k in all
    take = tied & (torch.cumsum(tied, 0) <= k - int(above.sum()))
    return (above | take).to(ranking.dtype).view_as(ranking)


def signed_constant_(weight: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Edge-popup's "signed Kaiming constant" in place: each entry ``+-gain/sqrt(fan_in)`` (ReLU gain),
    with a random sign."""
    fan_in = weight[0].numel()
    sigma = nn.init.calculate_gain("relu") / math.sqrt(fan_in)
    signs = torch.randint(0, 2, weight.shape, generator=generator).to(weight.dtype) * 2 - 1
    with torch.no_grad():
        weight.copy_(signs * sigma)
    return weight


class Supermask:
    """Mixin for a conv or linear layer: frozen random weights, learned scores, a top-k mask (eq. 1)."""

    method = "base"

    def _setup(self, sparsity: float) -> None:
        if not 0 <= sparsity < 1:
            raise ValueError(f"sparsity must be in [0, 1) (the fraction of weights masked), got {sparsity!r}")
        self.sparsity = float(sparsity)
        self.k = max(1, round((1 - sparsity) * self.weight.numel()))
        signed_constant_(self.weight)
        self.weight.requires_grad_(False)
        if getattr(self, "bias", None) is not None:
            raise ValueError("supermask layers have no bias (as in edge-popup)")
        self.scores = nn.Parameter(torch.empty_like(self.weight))
        self.init_scores_()

    # what a method defines --------------------------------------------------------------
    def init_scores_(self) -> None:
        raise NotImplementedError

    def ranking(self) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def project_(self) -> None:
        """Called after every optimiser step; nothing by default."""

    # shared ---------------------------------------------------------------------------
    def mask(self) -> torch.Tensor:
        return TopK.apply(self.ranking(), self.k)

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.mask()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, method={self.method}, sparsity={self.sparsity}"


class SupermaskConv(Supermask, nn.Conv2d):
    def __init__(self, *args, sparsity: float = 0.5, **kw):
        nn.Conv2d.__init__(self, *args, **kw)
        self._setup(sparsity)

    def forward(self, x):
        return F.conv2d(x, self.effective_weight(), None, self.stride, self.padding, self.dilation, self.groups)


class SupermaskLinear(Supermask, nn.Linear):
    def __init__(self, *args, sparsity: float = 0.5, **kw):
        nn.Linear.__init__(self, *args, **kw)
        self._setup(sparsity)

    def forward(self, x):
        return F.linear(x, self.effective_weight())


def layers(model: nn.Module) -> dict[str, Supermask]:
    """The supermask layers of ``model``, by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, Supermask)}


def project_(model: nn.Module) -> None:
    """Apply every supermask layer's ``project_`` (pass this to ``train.fit(after_step=...)``)."""
    for m in layers(model).values():
        m.project_()


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The current binary masks, detached, by layer name."""
    with torch.no_grad():
        return {n: m.mask().detach().clone() for n, m in layers(model).items()}


def frozen_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the frozen random weights, to check that training never changes them."""
    return {n: m.weight.detach().clone() for n, m in layers(model).items()}


def overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of the weights kept by mask ``a`` that mask ``b`` keeps too (1 = the same weights)."""
    return float((a * b).sum() / a.sum().clamp_min(1))


def network(depth: int | str, conv_layer: type, linear_layer: type, sparsity: float, width: float = 1.0,
            seed: int = 0, **kw) -> ConvNet:
    """Conv-``depth`` (2, 4 or 6) built from the given supermask layer classes at ``sparsity``; the random
    weights and the initial scores are drawn from ``seed``."""
    torch.manual_seed(seed)
    return ConvNet(depth, width=width, conv_layer=partial(conv_layer, sparsity=sparsity),
                   linear_layer=partial(linear_layer, sparsity=sparsity), **kw)
