"""Edge-popup: find a good subnetwork inside a random network by learning a score per weight.

Ramanujan, Wortsman, Kembhavi, Farhadi & Rastegari, "What's hidden in a randomly weighted neural network?",
CVPR 2020. The baseline of paper 5.

Every weight ``w_i`` of a layer keeps its random value (signed Kaiming constant) and gets a score ``s_i``
(initialised like a Kaiming-uniform weight). The forward pass uses the ``k`` weights with the largest
``|s_i|`` (:mod:`pruning.methods.supermask`, eq. 1), and the backward pass hands the mask's gradient straight to
the scores (eq. 2):

    s_i  <-  s_i - lr * dL/dW_eff,i * w_i * sign(s_i)                                   (3)

(the ``sign`` because the ranking is by ``|s_i|``, as in the authors' code), so a weight's score grows in
magnitude when using it would lower the loss. The scores are **unbounded**: nothing stops them from growing.
"""

from __future__ import annotations

import math

from torch import nn

from .supermask import SupermaskConv, SupermaskLinear, network


class _EdgePopup:
    method = "edge-popup"

    def init_scores_(self) -> None:
        nn.init.kaiming_uniform_(self.scores, a=math.sqrt(5))

    def ranking(self):
        return self.scores.abs()


class EdgePopupConv(_EdgePopup, SupermaskConv):
    """A conv layer with frozen random weights and edge-popup scores."""


class EdgePopupLinear(_EdgePopup, SupermaskLinear):
    """A linear layer with frozen random weights and edge-popup scores."""


def edge_popup_network(depth: int | str = 2, sparsity: float = 0.5, width: float = 1.0, seed: int = 0, **kw):
    """Conv-2/4/6 made of edge-popup layers (``sparsity`` = fraction of weights masked in every layer)."""
    return network(depth, EdgePopupConv, EdgePopupLinear, sparsity, width, seed, **kw)
