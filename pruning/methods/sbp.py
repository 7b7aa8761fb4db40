"""Sparse binary programming: learn a binary mask over a frozen random network as a constrained problem.

Lu, Ji & Yuan, "Sparse binary programming method for pruning of randomly initialized neural networks"
(随机初始化神经网络剪枝的稀疏二值规划方法), *Computer Engineering and Applications* 59(8), 2023, 138-147
(abstract in ``shared/seeds/004``).

The problem, per layer with frozen random weights ``W0`` (signed Kaiming constant, as in edge-popup); the
numbers (4)-(5) continue those of :mod:`pruning.methods.supermask` and :mod:`pruning.methods.edge_popup`, and notebook 05
writes the same two equations as its (1) and (4):

    minimise  L(W0 * m)   subject to   m in {0,1}^n,   ||m||_0 = k                          (4)

What we reconstructed (the abstract gives the problem, not the algorithm):

* a relaxed variable ``z in [0,1]^n`` per weight, initialised uniformly at random;
* the mask is the **exact projection** of ``z`` onto the sparse binary set (4): ones at the ``k`` largest
  ``z_i`` (:func:`pruning.methods.supermask.topk_mask`, deterministic ties);
* the gradient with respect to ``m`` is passed straight through to ``z`` (``dL/dz = dL/dW_eff * W0``), and
  after each step ``z`` is projected back onto ``[0,1]^n`` (clipped):

      z  <-  clip(z - lr * dL/dW_eff * W0,  0, 1)                                         (5)

The difference from edge-popup, stated plainly: edge-popup ranks **unbounded** scores by **magnitude**;
here a **bounded** variable is ranked by value and kept in the box by projection, so a weight that is
pushed out saturates at 0 and one pulled in at 1; the intent is a ranking that stays responsive to the
latest gradients instead of to scores that grew large early.

**Scale-matched variant** (``build("sbp-matched", ...)``, our reconstruction, not in the paper). In (5) the step
that reaches ``z`` carries the factor ``W0``, whose magnitude is the layer's ``sigma_l = sqrt(2 / fan_in)``: a wide
layer's ``z`` moves an order of magnitude more slowly than the first conv's, inside the same box [0, 1]. Edge-popup's
scores start at the same scale as the weights, which cancels that factor. The matched variant divides it out:

    z  <-  clip(z - lr * dL/dW_eff * W0 / sigma_l,  0, 1)  =  clip(z - lr * dL/dW_eff * sign(W0),  0, 1)      (7)

so that the weight scale no longer sets how fast a layer's ``z`` moves (the gradient itself still differs by layer).

**ADMM variant** (``build("sbp-admm", ...)``, optional in the notes of paper 5). The alternating direction method
of multipliers splits (4) into the relaxed ``z`` and a copy ``v`` that must lie in the sparse binary set, tied by
``z = v`` with a scaled dual ``u`` and a penalty ``rho``:

    z  <-  clip(z - lr * (dL/dW_eff * W0  +  rho * (z - v + u)),  0, 1)                  (6a)
    v  <-  P_k(z + u)            (the exact projection: a binary vector with k ones)           (6b)
    u  <-  u + z - v,            rho  <-  min(rho_max, rho * growth)                          (6c)

The forward pass still uses the mask ``P_k(z)``; the penalty pulls ``z`` towards a binary point, harder as
``rho`` rises, so that the relaxed variable and the mask agree by the end of training. The penalty's
gradient is added to ``z``'s gradient by a hook; (6b)-(6c) run after every optimiser step.
"""

from __future__ import annotations

import torch
from torch import nn

from .supermask import SupermaskConv, SupermaskLinear, network, topk_mask
from .edge_popup import edge_popup_network


class _SBP:
    method = "sbp"

    def init_scores_(self) -> None:
        nn.init.uniform_(self.scores, 0.0, 1.0)

    def ranking(self):
        return self.scores

    @torch.no_grad()
    def project_(self) -> None:
        self.scores.clamp_(0.0, 1.0)     # eq. (5): back onto the box [0, 1]


class SBPConv(_SBP, SupermaskConv):
    """A conv layer with frozen random weights and a relaxed mask variable in [0, 1]."""


class SBPLinear(_SBP, SupermaskLinear):
    """A linear layer with frozen random weights and a relaxed mask variable in [0, 1]."""


class _ScaleGradient(torch.autograd.Function):
    """The identity forward; backward, the gradient times ``scale``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


class _SBPMatched(_SBP):
    method = "sbp-matched"

    def init_scores_(self) -> None:
        super().init_scores_()
        self.sigma = float(self.weight.detach().abs().max())      # the signed constant's magnitude, sqrt(2 / fan_in)

    def ranking(self):
        # eq. (7): z ranks as itself, but the step that reaches it is divided by the layer's weight scale (part of the
        # forward graph, so a copied or pickled model keeps it, unlike a tensor hook)
        return _ScaleGradient.apply(self.scores, 1.0 / self.sigma)


class SBPMatchedConv(_SBPMatched, SupermaskConv):
    """An SBP conv layer whose step is divided by its weights' scale (eq. 7)."""


class SBPMatchedLinear(_SBPMatched, SupermaskLinear):
    """An SBP linear layer whose step is divided by its weights' scale (eq. 7)."""


class _SBPADMM(_SBP):
    method = "sbp-admm"
    rho0, growth, rho_max = 1e-4, 1.01, 1e-1

    def init_scores_(self) -> None:
        super().init_scores_()
        self.register_buffer("v", self.mask().detach().clone())       # (6b) at the start, with u = 0
        self.register_buffer("u", torch.zeros_like(self.scores))
        self.rho = self.rho0
        self.scores.register_hook(self._penalty)

    def _penalty(self, grad):
        return grad + self.rho * (self.scores.detach() - self.v + self.u)     # (6a): the augmented term's gradient

    @torch.no_grad()
    def project_(self) -> None:
        super().project_()                                                   # (6a): clip z to [0, 1]
        self.v.copy_(topk_mask(self.scores + self.u, self.k))               # (6b)
        self.u.add_(self.scores - self.v)                                   # (6c)
        self.rho = min(self.rho_max, self.rho * self.growth)


class SBPADMMConv(_SBPADMM, SupermaskConv):
    """An SBP conv layer trained by ADMM (eq. 6)."""


class SBPADMMLinear(_SBPADMM, SupermaskLinear):
    """An SBP linear layer trained by ADMM (eq. 6)."""


def sbp_network(depth: int | str = 2, sparsity: float = 0.5, width: float = 1.0, seed: int = 0, **kw):
    """Conv-2/4/6 made of SBP layers (``sparsity`` = fraction of weights masked in every layer)."""
    return network(depth, SBPConv, SBPLinear, sparsity, width, seed, **kw)




def build(method: str, depth: int | str = 2, sparsity: float = 0.5, width: float = 1.0, seed: int = 0, **kw):
    """The one argument that swaps the methods: ``build("sbp", ...)``, ``build("sbp-matched", ...)``,
    ``build("sbp-admm", ...)`` or ``build("edge-popup", ...)`` give the same Conv-``depth`` with the same random
    weights (same ``seed``), differing only in how the mask is learned."""
    if method == "sbp":
        return sbp_network(depth, sparsity, width, seed, **kw)
    if method == "sbp-matched":
        return network(depth, SBPMatchedConv, SBPMatchedLinear, sparsity, width, seed, **kw)
    if method == "sbp-admm":
        return network(depth, SBPADMMConv, SBPADMMLinear, sparsity, width, seed, **kw)
    if method == "edge-popup":
        return edge_popup_network(depth, sparsity, width, seed, **kw)
    raise ValueError(f"method must be 'sbp', 'sbp-matched', 'sbp-admm' or 'edge-popup', got {method!r}")
