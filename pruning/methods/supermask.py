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
through to the ranking (the scores themselves for SBP, ``|scores|`` for edge-popup, which adds a sign):

    dL/d ranking  :=  dL/dm  =  dL/dW_eff * W0                                           (2)

A method is a subclass that says how scores start, how they are ranked, and what happens after each
optimiser step (``project_``). The network is the course's Conv-2/4/6 (:class:`pruning.models.ConvNet`)
built with these layers: :func:`network`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data import Data
from ..models import ConvNet
from ..train import History, correct, fit


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
    a, b = a.detach(), b.detach()
    return float((a * b).sum() / a.sum().clamp_min(1))


def network(depth: int | str, conv_layer: type, linear_layer: type, sparsity: float, width: float = 1.0,
            seed: int = 0, **kw) -> ConvNet:
    """Conv-``depth`` (2, 4 or 6) built from the given supermask layer classes at ``sparsity``; the random
    weights and the initial scores are drawn from ``seed``."""
    torch.manual_seed(seed)
    return ConvNet(depth, width=width, conv_layer=partial(conv_layer, sparsity=sparsity),
                   linear_layer=partial(linear_layer, sparsity=sparsity), **kw)


def one_step(layer: Supermask, x: torch.Tensor, target: torch.Tensor, lr: float) -> dict[str, torch.Tensor]:
    """One plain gradient step (no momentum) on ``layer``'s scores for the squared error
    ``0.5 * ||layer(x) - target||^2``, followed by the layer's projection: a single update of eq. (2), small
    enough to print. Returns the ranking and the mask before and after, and the step's gradient."""
    before = {"ranking": layer.ranking().detach().clone(), "mask": layer.mask().detach().clone()}
    layer.scores.grad = None
    loss = 0.5 * (layer(x) - target).pow(2).sum()
    loss.backward()
    with torch.no_grad():
        layer.scores -= lr * layer.scores.grad
    layer.project_()
    return {"ranking_before": before["ranking"], "mask_before": before["mask"], "grad": layer.scores.grad.clone(),
            "ranking": layer.ranking().detach().clone(), "mask": layer.mask().detach().clone()}


# --------------------------------------------------------------------------- training and experiments

def train_mask(model: nn.Module, data: Data, epochs: int, lr: float, samples_per_epoch: int | None = None,
               seed: int = 0, progress: bool = False, desc: str = "mask", weight_decay: float = 0.0) -> History:
    """Learn only the masks of ``model``: SGD (Nesterov momentum 0.9) on the scores with a cosine learning rate, no
    weight decay unless given, and every layer's ``project_`` after each step. The same recipe for every method, so
    that a comparison differs only in the method (and in the learning rate each one is given). Edge-popup's authors
    decay the scores by 1e-4; the course gives SBP none (its variable is kept in [0, 1] by projection)."""
    return fit(model, data, epochs, lr=lr, schedule="cosine", weight_decay=weight_decay,
               samples_per_epoch=samples_per_epoch, seed=seed, progress=progress, desc=desc, after_step=project_)


@dataclass
class Run:
    """One trained supermask network: its settings, validation curve, test accuracy (and which test images it gets
    right, for a paired test of two methods on the same images) and the model itself."""

    method: str
    sparsity: float
    seed: int
    lr: float
    history: History
    test: float
    model: nn.Module = field(repr=False)
    initial_masks: dict[str, torch.Tensor] = field(repr=False)
    test_correct: torch.Tensor | None = field(default=None, repr=False)   # per test image, for paired tests

    def flipped(self) -> dict[str, float]:
        """Per layer, the fraction of the initially kept weights that the final mask no longer keeps: how far
        training moved the mask from its random start."""
        final = masks(self.model)
        return {n: 1 - overlap(self.initial_masks[n], final[n]) for n in final}


class Experiment:
    """Train supermask networks with one recipe and keep every run, so that nothing is trained twice.

    ``build(method, depth, sparsity, width, seed)`` makes a network (:func:`pruning.methods.sbp.build`);
    runs with the same (method, sparsity, seed, lr) come from the cache. ``weight_decay`` maps a method to the
    decay of its scores (none for a method it does not name). Each network is built on the CPU, so that a seed
    gives the same frozen weights everywhere, then moved to ``device`` to be trained.
    """

    def __init__(self, build: Callable[..., nn.Module], data: Data, depth: int | str = 2, width: float = 1.0,
                 epochs: int = 6, samples_per_epoch: int | None = None,
                 weight_decay: Mapping[str, float] | None = None, device: torch.device | str = "cpu", **build_kw):
        self.build, self.data, self.depth, self.width, self.device = build, data, depth, width, device
        self.epochs, self.samples_per_epoch, self.build_kw = epochs, samples_per_epoch, build_kw
        self.weight_decay = dict(weight_decay or {})
        self.runs: dict[tuple[str, float, int, float], Run] = {}

    def run(self, method: str, sparsity: float, seed: int, lr: float) -> Run:
        key = (method, float(sparsity), int(seed), float(lr))
        if key not in self.runs:
            model = self.build(method, self.depth, sparsity=sparsity, width=self.width, seed=seed,
                               **self.build_kw).to(self.device)
            start = masks(model)
            history = train_mask(model, self.data, self.epochs, lr, self.samples_per_epoch, seed=seed,
                                 weight_decay=self.weight_decay.get(method, 0.0))
            hits = correct(model, self.data, "test")     # per-image correctness; its mean is the test accuracy
            self.runs[key] = Run(method, float(sparsity), int(seed), float(lr), history,
                                 hits.double().mean().item(), model, start, hits)
        return self.runs[key]

    def lr_sweep(self, grids: Mapping[str, Sequence[float]], sparsity: float, seed: int = 0) -> dict[str, dict[float, float]]:
        """Each method's final validation accuracy at each learning rate of its grid (one seed)."""
        jobs = [(m, lr) for m, lrs in grids.items() for lr in lrs]
        out: dict[str, dict[float, float]] = {m: {} for m in grids}
        for m, lr in tqdm(jobs, desc="learning rates", leave=False):
            out[m][lr] = self.run(m, sparsity, seed, lr).history.val_acc[-1]
        return out

    def grid(self, lrs: Mapping[str, float], sparsities: Sequence[float], seeds: Sequence[int]) -> list[Run]:
        """Every method (at its own learning rate) at every sparsity and seed."""
        jobs = [(m, s, seed) for s in sparsities for seed in seeds for m in lrs]
        return [self.run(m, s, seed, lrs[m]) for m, s, seed in tqdm(jobs, desc="runs", leave=False)]


def accuracies(runs: Sequence[Run]) -> dict[str, dict[float, list[float]]]:
    """``{method: {sparsity: [test accuracy of each seed]}}`` (seeds in increasing order)."""
    out: dict[str, dict[float, list[float]]] = {}
    for r in sorted(runs, key=lambda r: r.seed):
        out.setdefault(r.method, {}).setdefault(r.sparsity, []).append(r.test)
    return out


def paired_differences(runs: Sequence[Run], a: str, b: str) -> dict[float, list[float]]:
    """Per sparsity, method ``a``'s test accuracy minus method ``b``'s, seed by seed (same seed = same random
    weights and the same data order, so each difference is a paired comparison)."""
    by = {(r.method, r.sparsity, r.seed): r.test for r in runs}
    out: dict[float, list[float]] = {}
    for (m, s, seed), acc in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if m == a and (b, s, seed) in by:
            out.setdefault(s, []).append(acc - by[(b, s, seed)])
    return out
