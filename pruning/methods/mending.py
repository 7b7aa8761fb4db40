"""Automatic mending: pre-prune by a rule, then let a search repair the pruned structure.

Su, Qian, Yuan, Yang & Wang, "Network pruning via automatic mending strategy" (基于自动修补策略的网络剪枝),
*Pattern Recognition and Artificial Intelligence* 35(1), 2022, 62-70 (abstract in ``shared/seeds/003``).

Greedy train-prune-fine-tune fixes each layer's width by a rule and never revisits it. The paper adds a
**mending** stage between pre-pruning and fine-tuning: a neural-architecture search adjusts the pre-pruned
widths, and it evaluates candidates fast by reusing the filter ranking of the pre-pruning stage.

The pieces, in the order the notebook uses them:

1. **Pre-pruning** (:func:`prepruned_widths`): the L1 filter ranking, and a uniform ratio (or PFEC's VGG-16
   layout scaled) that meets the FLOPs target. Result: widths ``c0_l``.
2. **Search space** (:class:`SearchSpace`): per layer ``c_l = c0_l + d_l * step_l`` with ``d_l`` in
   ``-span..+span``, kept within ``[1, full width]``. A candidate is the vector ``d``; its MACs follow from the
   widths without building the model (:func:`pruning.select.macs_after`).
3. **Repair** (:meth:`SearchSpace.repair`): while a candidate is over the MACs budget, lower the ``d`` of a
   randomly chosen layer that can still shrink. The all-``-span`` candidate costs no more than the pre-pruned
   structure, which meets the budget, so repair always ends within budget. Then (``fill=True``) raise the ``d``
   of randomly chosen layers while the budget allows, so that no candidate leaves budget unused: a search that
   compares structures should compare them at (nearly) the same cost.
4. **Fast evaluation** (:class:`Evaluator`): a candidate keeps the top-``c_l`` filters of the pre-pruning
   ranking (inherited, no re-selection and no training), BatchNorm statistics are recalibrated on a few
   batches, and accuracy is measured on the **validation** split (carved from the training data; the test
   split is never touched by the search). Evaluations are cached by widths. :meth:`Evaluator.rescore` scores a
   structure again on the validation images the search did not use, to check the winner against its luck.
5. **Search** (:func:`evolve`, :func:`random_search`): a small (mu + lambda) evolutionary search with
   mutation and uniform crossover, against random search with the same number of evaluations; both seeded.
6. **Fine-tuning** of the best structure: :func:`pruning.pipeline.prune_and_finetune` with :meth:`Evaluator.keep`.

What the abstract does not give and we chose: everything numeric (steps, span, population, generations),
the mutation and crossover operators, the repair rule, and that the fitness is validation accuracy alone
(the budget is a hard constraint, not a penalty).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import select
from ..data import Data
from ..measure import layer_macs
from ..surgery import remove_channels, widths as layer_widths
from ..train import correct, evaluate, recalibrate_bn
from .baselines import l1_scores, pfec_vgg16_keep

Genes = tuple[int, ...]


# --------------------------------------------------------------------------- 1. pre-pruning

def prepruned_widths(model: nn.Module, reduction: float, input_size=None, rule: str = "uniform") -> dict[str, int]:
    """Widths after rule-based pre-pruning to ``reduction`` of the MACs.

    ``"uniform"``: the same fraction of every prunable conv (the smallest that meets the target).
    ``"pfec"``: PFEC's VGG-16 layout (conv 1 and convs 8-13 pruned, 2-7 whole), its common ratio raised
    until the target is met; raises ``ValueError`` if even that cannot reach it.
    """
    if rule == "uniform":
        return select.uniform_ratio_for(model, reduction, input_size)[1]
    if rule != "pfec":
        raise ValueError(f"pre-pruning rule must be 'uniform' or 'pfec', got {rule!r}")
    full = layer_widths(model)
    base = layer_macs(model, input_size)
    total = sum(base.values())
    for step in range(1, 100):   # PFEC's layout (baselines.pfec_vgg16_keep) at a rising ratio
        kept = {**full, **{n: len(k) for n, k in pfec_vgg16_keep(model, step / 100).items()}}
        if 1 - select.macs_after(model, kept, input_size, base) / total >= reduction:
            return kept
    raise ValueError(f"PFEC's layout cannot remove {reduction:.0%} of the MACs (convs 2-7 stay whole)")


# --------------------------------------------------------------------------- 2-3. search space and repair

@dataclass
class SearchSpace:
    """Per-layer widths ``c0 + d * step`` (``d`` in ``-span..span``, clipped to ``[1, full]``) under a MACs budget."""

    model: nn.Module
    base: dict[str, int]                 # pre-pruned widths c0, by conv name (forward order)
    budget: int                          # the most MACs a candidate may cost
    step_fraction: float = 0.0625        # step_l = max(1, round(step_fraction * full width))
    span: int = 2
    input_size: tuple | None = None
    fill: bool = True                    # repair also spends leftover budget (see the module docstring)
    names: list[str] = field(init=False)
    full: dict[str, int] = field(init=False)
    steps: dict[str, int] = field(init=False)

    def __post_init__(self):
        self.full = layer_widths(self.model)
        unknown = set(self.base) - set(self.full)
        if unknown or len(self.base) != len(self.full):
            raise ValueError(f"base must give a width for every prunable conv {list(self.full)}; got {list(self.base)}")
        self.names = list(self.full)
        self.steps = {n: max(1, round(self.step_fraction * self.full[n])) for n in self.names}
        self._layer_macs = layer_macs(self.model, self.input_size)
        if self.macs(self.zero()) > self.budget:
            raise ValueError(f"the pre-pruned widths cost {self.macs(self.zero()):,} MACs, over the budget of {self.budget:,}")

    def zero(self) -> Genes:
        """The pre-pruned structure itself (every ``d = 0``)."""
        return (0,) * len(self.names)

    def widths(self, genes: Sequence[int]) -> dict[str, int]:
        if len(genes) != len(self.names) or any(abs(d) > self.span for d in genes):
            raise ValueError(f"a candidate is {len(self.names)} integers in -{self.span}..{self.span}, got {tuple(genes)}")
        return {n: min(self.full[n], max(1, self.base[n] + d * self.steps[n])) for n, d in zip(self.names, genes)}

    def macs(self, genes: Sequence[int]) -> int:
        """MACs of the candidate, from the full model's per-layer counts (no model is built)."""
        return select.macs_after(self.model, self.widths(genes), self.input_size, self._layer_macs)

    def sample(self, rng: random.Random) -> Genes:
        return tuple(rng.randint(-self.span, self.span) for _ in self.names)

    def mutate(self, genes: Genes, rng: random.Random, rate: float = 0.2) -> Genes:
        """Each ``d`` moves one step up or down with probability ``rate`` (at least one always moves)."""
        out = list(genes)
        moved = [i for i in range(len(out)) if rng.random() < rate] or [rng.randrange(len(out))]
        for i in moved:
            out[i] = min(self.span, max(-self.span, out[i] + rng.choice((-1, 1))))
        return tuple(out)

    @staticmethod
    def crossover(a: Genes, b: Genes, rng: random.Random) -> Genes:
        """Uniform crossover: each layer's ``d`` from one parent or the other."""
        return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b))

    def repair(self, genes: Sequence[int], rng: random.Random) -> Genes:
        """Lower the ``d`` of randomly chosen layers until the candidate is within the budget; then, if
        ``self.fill``, raise the ``d`` of randomly chosen layers for as long as the budget allows."""
        out = list(genes)
        while self.macs(out) > self.budget:
            shrinkable = [i for i, d in enumerate(out) if d > -self.span]
            out[rng.choice(shrinkable)] -= 1   # never empty: the all -span candidate is within budget
        while self.fill:
            growable = [i for i, d in enumerate(out) if d < self.span
                        and self.macs(out[:i] + [d + 1] + out[i + 1:]) <= self.budget]
            if not growable:
                break
            out[rng.choice(growable)] += 1
        return tuple(out)


# --------------------------------------------------------------------------- 4. fast evaluation

class Evaluator:
    """Validation accuracy of a candidate structure with inherited filters and recalibrated BN, cached.

    ``scores`` is the pre-pruning ranking (L1 by default): a layer of width ``c`` keeps its top-``c``
    filters by that ranking, so candidates differ only in how many filters each layer keeps.
    """

    def __init__(self, model: nn.Module, data: Data, scores: Mapping[str, torch.Tensor] | None = None,
                 recal_batches: int = 4, limit: int = 500, seed: int = 0):
        self.model, self.data, self.recal_batches, self.limit, self.seed = model, data, recal_batches, limit, seed
        self.scores = l1_scores(model) if scores is None else scores
        self.cache: dict[tuple[int, ...], float] = {}
        self.calls = self.hits = 0

    def keep(self, widths: Mapping[str, int]) -> dict[str, list[int]]:
        """The inherited filters: the top ``widths[l]`` of layer ``l`` by the pre-pruning ranking."""
        return {n: select.top_indices(self.scores[n], w) for n, w in widths.items()}

    def build(self, widths: Mapping[str, int]) -> nn.Module:
        """The candidate as a model: surgery with the inherited filters, then BN recalibrated (seeded, so every
        call builds the same model)."""
        pruned = remove_channels(self.model, self.keep(widths))
        if self.recal_batches:
            recalibrate_bn(pruned, self.data, num_batches=self.recal_batches, seed=self.seed)
        return pruned

    def __call__(self, widths: Mapping[str, int]) -> float:
        self.calls += 1
        key = tuple(widths.values())
        if key in self.cache:
            self.hits += 1
            return self.cache[key]
        self.cache[key] = acc = evaluate(self.build(widths), self.data, "val", limit=self.limit)
        return acc

    def rescore(self, widths: Mapping[str, int]) -> torch.Tensor:
        """Per-image correctness of the same candidate on the validation images the search never scored (those
        after the first ``limit``). The best of many candidates scored on the same images is lucky on those
        images (the winner's curse); its score on images nobody chose it by is an honest estimate."""
        if self.limit is None:
            raise ValueError("this evaluator scores every validation image (limit=None): none is left to re-score on")
        hits = correct(self.build(widths), self.data, "val")[self.limit:]
        if not len(hits):
            raise ValueError(f"the validation split has no images after the first {self.limit} the search scores")
        return hits


# --------------------------------------------------------------------------- 5. search

@dataclass
class Candidate:
    genes: Genes
    widths: dict[str, int]
    macs: int
    fitness: float                       # validation accuracy after inheritance and BN recalibration


@dataclass
class SearchResult:
    """Every candidate evaluated, generation by generation (generation 0 is the initial population)."""

    method: str
    generations: list[list[Candidate]]

    @property
    def best(self) -> Candidate:
        return max((c for g in self.generations for c in g), key=lambda c: (c.fitness, -c.macs))

    def best_so_far(self) -> list[float]:
        out, best = [], -1.0
        for g in self.generations:
            best = max(best, max(c.fitness for c in g))
            out.append(best)
        return out

    def mean(self) -> list[float]:
        return [sum(c.fitness for c in g) / len(g) for g in self.generations]

    @property
    def evaluations(self) -> int:
        return sum(len(g) for g in self.generations)


def _candidate(space: SearchSpace, evaluator: Callable, genes: Genes) -> Candidate:
    w = space.widths(genes)
    return Candidate(genes, w, space.macs(genes), evaluator(w))


def evolve(space: SearchSpace, evaluator: Callable[[Mapping[str, int]], float], generations: int = 4,
           population: int = 8, parents: int = 4, mutation_rate: float = 0.2, seed: int = 0,
           progress: bool = True) -> SearchResult:
    """(mu + lambda) evolution: the initial population is the pre-pruned structure plus random repaired
    candidates; each generation breeds ``population`` children (uniform crossover of two of the best
    ``parents``, then mutation, then repair) and keeps the best ``population`` of parents and children."""
    if generations < 0 or population < 2 or not 1 <= parents <= population:
        raise ValueError("need generations >= 0, population >= 2 and 1 <= parents <= population")
    rng = random.Random(seed)
    bar = tqdm(total=population * (generations + 1), desc="evolutionary search", disable=not progress, leave=False)

    def make(genes):
        bar.update(1)
        return _candidate(space, evaluator, genes)

    pool = [make(space.zero())] + [make(space.repair(space.sample(rng), rng)) for _ in range(population - 1)]
    history = [pool]
    for _ in range(generations):
        elite = sorted(pool, key=lambda c: -c.fitness)[:parents]
        children = []
        for _ in range(population):
            a, b = rng.choice(elite), rng.choice(elite)
            genes = space.mutate(space.crossover(a.genes, b.genes, rng), rng, mutation_rate)
            children.append(make(space.repair(genes, rng)))
        history.append(children)
        pool = sorted(pool + children, key=lambda c: -c.fitness)[:population]
    bar.close()
    return SearchResult("evolutionary", history)


def random_search(space: SearchSpace, evaluator: Callable[[Mapping[str, int]], float], generations: int = 4,
                  population: int = 8, seed: int = 0, progress: bool = True) -> SearchResult:
    """The control: the same number of evaluations, every candidate sampled uniformly and repaired.
    Generation 0 also contains the pre-pruned structure, as in :func:`evolve`."""
    rng = random.Random(seed)
    bar = tqdm(total=population * (generations + 1), desc="random search", disable=not progress, leave=False)
    history = []
    for g in range(generations + 1):
        gen = []
        for i in range(population):
            genes = space.zero() if g == 0 and i == 0 else space.repair(space.sample(rng), rng)
            gen.append(_candidate(space, evaluator, genes))
            bar.update(1)
        history.append(gen)
    bar.close()
    return SearchResult("random", history)


# --------------------------------------------------------------------------- why greedy is not enough

def greedy(model: nn.Module, evaluator: Callable[[Mapping[str, int]], float], budget: int,
           input_size=None, progress: bool = True) -> list[Candidate]:
    """The greedy baseline the paper argues against: from the full widths, repeatedly remove one filter from
    the layer where that hurts validation accuracy least (ties: the larger MACs saving), until the budget is met.
    Returns the path, one :class:`Candidate` per step (``genes`` are empty: no search space is involved)."""
    base = layer_macs(model, input_size)
    current = layer_widths(model)
    path = [Candidate((), dict(current), select.macs_after(model, current, input_size, base), evaluator(current))]
    bar = tqdm(desc="greedy", disable=not progress, leave=False)
    while path[-1].macs > budget:
        options = []
        for n in current:
            if current[n] > 1:
                trial = {**current, n: current[n] - 1}
                options.append((evaluator(trial), -select.macs_after(model, trial, input_size, base), n, trial))
                bar.update(1)
        if not options:
            raise ValueError(f"the budget of {budget:,} MACs cannot be met with one filter per layer")
        acc, neg_macs, _, current = max(options, key=lambda o: (o[0], o[1]))
        path.append(Candidate((), dict(current), -neg_macs, acc))
    bar.close()
    return path


def grid(model: nn.Module, evaluator: Callable[[Mapping[str, int]], float], input_size=None,
         max_candidates: int = 400) -> dict[tuple[int, ...], Candidate]:
    """Every width combination of a small model (e.g. LeNet-5's 6 x 16), evaluated: the ground truth a
    search can be checked against. Refuses more than ``max_candidates`` combinations."""
    import itertools

    full = layer_widths(model)
    count = math.prod(full.values())
    if count > max_candidates:
        raise ValueError(f"{count:,} width combinations; grid() is for tiny models (at most {max_candidates})")
    base = layer_macs(model, input_size)
    out = {}
    for combo in itertools.product(*(range(1, w + 1) for w in full.values())):
        w = dict(zip(full, combo))
        out[combo] = Candidate((), w, select.macs_after(model, w, input_size, base), evaluator(w))
    return out
