"""Sparse binary programming: learn a binary mask over a frozen random network as a constrained problem.

Lu, Ji & Yuan, "Sparse binary programming method for pruning of randomly initialized neural networks"
(随机初始化神经网络剪枝的稀疏二值规划方法), *Computer Engineering and Applications* 59(8), 2023, 138-147
(abstract in ``shared/seeds/004``).

The problem, per layer with frozen random weights ``W0`` (signed Kaiming constant, as in edge-popup):

    minimise  L(W0 * m)   subject to   m in {0,1}^n,   ||m||_0 = k                          (4)

What we reconstructed (the abstract gives the problem, not the algorithm):

* a relaxed variable ``z in [0,1]^n`` per weight, initialised uniformly at random;
* the mask is the **exact projection** of ``z`` onto the sparse binary set (4): ones at the ``k`` largest
  ``z_i`` (:func:`pruning.supermask.topk_mask`, deterministic ties);
* the gradient with respect to ``m`` is passed straight through to ``z`` (``dL/dz = dL/dW_eff * W0``), and
  after each step ``z`` is projected back onto ``[0,1]^n`` (clipped):

      z  <-  clip(z - lr * dL/dW_eff * W0,  0, 1)                                         (5)

The difference from edge-popup, stated plainly: edge-popup ranks **unbounded** scores by **magnitude**;
here a **bounded** variable is ranked by value and kept in the box by projection, so a weight that is
pushed out saturates at 0 and one pulled in at 1, and the ranking stays responsive to the latest
gradients instead of to scores that grew large early. An ADMM variant (a split variable ``v = P(z + u)``,
a dual ``u += z - v`` and a rising penalty) is described in the notes of paper 5 and is not implemented here.
"""

from __future__ import annotations

import torch
from torch import nn

from ..supermask import SupermaskConv, SupermaskLinear, network
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


def sbp_network(depth: int | str = 2, sparsity: float = 0.5, width: float = 1.0, seed: int = 0, **kw):
    """Conv-2/4/6 made of SBP layers (``sparsity`` = fraction of weights masked in every layer)."""
    return network(depth, SBPConv, SBPLinear, sparsity, width, seed, **kw)




def build(method: str, depth: int | str = 2, sparsity: float = 0.5, width: float = 1.0, seed: int = 0, **kw):
    """The one argument that swaps the methods: ``build("sbp", ...)`` or ``build("edge-popup", ...)``
    give the same Conv-``depth`` with the same random weights (same ``seed``), differing only in the mask."""
    if method == "sbp":
        return sbp_network(depth, sparsity, width, seed, **kw)
    if method == "edge-popup":
        return edge_popup_network(depth, sparsity, width, seed, **kw)
    raise ValueError(f"method must be 'sbp' or 'edge-popup', got {method!r}")
