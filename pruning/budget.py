"""Every structured method of the course as one selection at a FLOPs budget: the capstone's common interface.

``Selectors(model, data)`` scores a pretrained model once per method (on first use) and answers
``select(method, reduction)`` with what :func:`pruning.pipeline.compare` accepts: the channels to keep per conv,
or an already compressed model (the hybrid, whose decomposed layers are not a channel selection). Every
answer removes at least ``reduction`` of the model's MACs, so that after the same fine-tuning the methods are
compared at (nearly) the same cost:

=========================  ===========================================================================
method                     selection at the budget
=========================  ===========================================================================
``L1``                     PFEC's criterion; the same ratio in every conv, the smallest meeting the target
``random``                 random ranking, the same uniform ratio (the baseline a criterion must beat; not every one does)
``GDP``                    paper 1: accumulated gradient magnitudes, one global threshold by bisection
``OBD``                    paper 2: empirical-Fisher channel sensitivity inside the uniform ratio (the
                           literal global ranking collapses on this network: notebook 02, section 5)
``hybrid``                 paper 3: cluster-prune the first convs, Tucker-2 the rest at the rank ratio
                           that meets the budget
``mending``                paper 4: uniform L1 pre-pruning, then a small evolutionary search of the widths
=========================  ===========================================================================

Paper 5 (a mask over a *random* network) has no place here: it does not start from the pretrained model and
removes individual weights, which saves no FLOPs on dense hardware.
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import Mapping

import torch
from torch import nn

from . import select
from .data import Dataset
from .measure import macs
from .methods import baselines, gdp, hybrid, mending
from .methods import sensitivity as obd
from .surgery import remove_channels

METHODS = ("L1", "random", "GDP", "OBD", "hybrid", "mending")


class Selectors:
    """Scores computed once per method, selections at any budget. ``seconds[method]`` accumulates the time
    spent scoring and selecting (not fine-tuning), so the capstone can report what each method costs."""

    def __init__(self, model: nn.Module, data: Dataset, seed: int = 0, grad_batches: int = 10,
                 fisher_batches: int = 2, split: int = 2, search: Mapping | None = None,
                 input_size=None):
        self.model, self.data, self.seed, self.input_size = model, data, seed, input_size
        self.grad_batches, self.fisher_batches, self.split = grad_batches, fisher_batches, split
        self.search = {"generations": 2, "population": 4, "parents": 2, "eval_images": 500, "recal_batches": 4,
                       **(search or {})}
        self.seconds = {m: 0.0 for m in METHODS}

    # scores, each computed on first use ---------------------------------------------
    @cached_property
    def l1_scores(self):
        return baselines.l1_scores(self.model)

    @cached_property
    def gdp_scores(self):
        grads = gdp.accumulate_gradients(self.model, self.data, num_batches=self.grad_batches, seed=self.seed,
                                         progress=False)
        return gdp.filter_scores(self.model, grads, "grad")

    @cached_property
    def obd_scores(self):
        fisher = obd.fisher_diagonal(self.model, self.data, num_batches=self.fisher_batches, seed=self.seed,
                                     progress=False)
        return obd.channel_sensitivity(self.model, fisher)

    # selections ----------------------------------------------------------------------
    def select(self, method: str, reduction: float) -> dict[str, list[int]] | nn.Module:
        """The selection of ``method`` that removes at least ``reduction`` of the MACs."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        start = time.perf_counter()
        out = getattr(self, "_" + method.lower())(reduction)
        self.seconds[method] += time.perf_counter() - start
        return out

    def _uniform(self, scores, reduction):
        ratio, _ = select.uniform_ratio_for(self.model, reduction, self.input_size)
        return select.keep_by_ratio(scores, ratio)

    def _l1(self, reduction):
        return self._uniform(self.l1_scores, reduction)

    def _random(self, reduction):
        return self._uniform(baselines.random_scores(self.model, self.seed), reduction)

    def _gdp(self, reduction):
        return gdp.keep_global(self.model, self.gdp_scores, reduction, self.input_size)[0]

    def _obd(self, reduction):
        return self._uniform(self.obd_scores, reduction)

    def _hybrid(self, reduction):
        return hybrid.compress_to_macs(self.model, reduction, split=self.split, seed=self.seed,
                                       input_size=self.input_size)[0]

    def _mending(self, reduction):
        s = self.search
        space = mending.SearchSpace(self.model, mending.prepruned_widths(self.model, reduction, self.input_size),
                                    budget=int((1 - reduction) * macs(self.model, self.input_size)))
        evaluator = mending.Evaluator(self.model, self.data, self.l1_scores, recal_batches=s["recal_batches"],
                                      limit=s["eval_images"], seed=self.seed)
        best = mending.evolve(space, evaluator, generations=s["generations"], population=s["population"],
                              parents=s["parents"], seed=self.seed, progress=False).best
        return evaluator.keep(best.widths)


def achieved(model: nn.Module, selection, input_size=None) -> float:
    """The MACs reduction a selection (keep dict or compressed model) actually achieves, counted."""
    small = selection if isinstance(selection, nn.Module) else remove_channels(model, selection)
    with torch.no_grad():
        return 1 - macs(small, input_size) / macs(model, input_size)


def pareto_front(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """The labels of the points no other point beats: ``points[label] = (cost, accuracy)``, lower cost and
    higher accuracy being better. A point is dominated if another is at least as good in both and better in
    one. Returned in order of increasing cost."""
    front = [a for a, (ca, qa) in points.items()
             if not any((cb <= ca and qb >= qa) and (cb < ca or qb > qa) for b, (cb, qb) in points.items() if b != a)]
    return sorted(front, key=lambda a: points[a][0])
