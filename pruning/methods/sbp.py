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
    """The one argument that swaps the methods: ``build("sbp", ...)``, ``build("sbp-admm", ...)`` or
    ``build("edge-popup", ...)`` give the same Conv-``depth`` with the same random weights (same ``seed``),
    differing only in how the mask is learned."""
    if method == "sbp":
        return sbp_network(depth, sparsity, width, seed, **kw)
    if method == "sbp-admm":
        return network(depth, SBPADMMConv, SBPADMMLinear, sparsity, width, seed, **kw)
    if method == "edge-popup":
        return edge_popup_network(depth, sparsity, width, seed, **kw)
    raise ValueError(f"method must be 'sbp', 'sbp-admm' or 'edge-popup', got {method!r}")
