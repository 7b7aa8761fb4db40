"""The common path of every paper notebook, after the scores and the selection:

    removal (surgery) -> BatchNorm recalibration -> fine-tuning -> measurement

A method produces a ``keep`` dict (``{conv: channel indices}``, see :mod:`pruning.select`);
:func:`prune_and_finetune` takes it the rest of the way and records every number a comparison
needs. A method that changes the model in another way (a decomposition, a searched structure)
hands over the changed model itself to :func:`finetune`, the same path without the surgery.
:func:`compare` runs several selections through *the same* budget, which is how the notebooks
put a method next to its baselines (L1, random) at equal MACs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn

from . import measure
from .data import Data, size
from .surgery import remove_channels
from .train import History, Recipe, correct, evaluate, fit, recalibrate_bn


@dataclass
class Outcome:
    """What happened to one pruned model. Accuracies are fractions (0.8 = 80%)."""

    model: nn.Module
    macs: int
    params: int
    reduction: float              # fraction of the dense model's MACs removed
    params_removed: float         # fraction of the dense model's parameters removed (the storage saved)
    val_after_surgery: float      # validation accuracy right after surgery
    val_after_recal: float        # ... after BatchNorm recalibration
    history: History              # fine-tuning, one entry per epoch (val_acc included)
    test: float                   # test accuracy after fine-tuning
    images_per_epoch: int         # images seen per fine-tuning epoch
    test_correct: torch.Tensor | None = None   # per-test-image correctness after fine-tuning (for paired tests)

    def val_curve(self) -> list[float]:
        """Validation accuracy after recalibration, then after each fine-tuning epoch."""
        return [self.val_after_recal, *self.history.val_acc]


#: The fine-tuning recipe every notebook starts from: a cosine schedule from a tenth of the training rate.
FINETUNE = Recipe(epochs=1, lr=0.01, schedule="cosine")


def prune_and_finetune(model: nn.Module, keep: Mapping[str, Sequence[int]], data: Data,
                       recipe: Recipe | int | None = None, *, recal_batches: int = 20, input_size=None,
                       val_images: int | None = None, progress: bool = True, desc: str = "fine-tune",
                       **settings) -> Outcome:
    """Remove the channels not in ``keep`` (the original model is untouched), recalibrate BN,
    fine-tune by ``recipe`` (a :class:`~pruning.train.Recipe` or a number of epochs; :data:`FINETUNE` when left
    out; ``settings`` such as ``lr=`` or ``samples_per_epoch=`` change it), and measure. ``epochs=0`` skips
    fine-tuning (``test`` is then the accuracy after recalibration)."""
    return finetune(model, remove_channels(model, keep), data, recipe, recal_batches=recal_batches,
                    input_size=input_size, val_images=val_images, progress=progress, desc=desc, **settings)


def finetune(model: nn.Module, compressed: nn.Module, data: Data, recipe: Recipe | int | None = None, *,
             recal_batches: int = 20, input_size=None, val_images: int | None = None, progress: bool = True,
             desc: str = "fine-tune", **settings) -> Outcome:
    """The rest of the path for an already compressed copy of ``model``: recalibrate BN on ``recal_batches``
    training batches, fine-tune ``compressed`` in place by ``recipe`` (as in :func:`prune_and_finetune`), and
    measure it against ``model`` (the dense original). ``eval_val=False`` skips the validation pass after each
    fine-tuning epoch (``history.val_acc`` stays empty), to save time when many models are compared;
    ``val_images=n`` measures the two validation columns (after surgery, after recalibration) on the split's first
    ``n`` images only, for the same reason (the course's validation split is class-interleaved, so a prefix of
    ``10 m`` images holds ``m`` of each class)."""
    recipe = Recipe.of(recipe, base=FINETUNE, **settings)
    after = evaluate(compressed, data, "val", limit=val_images)
    if recal_batches:
        recalibrate_bn(compressed, data, num_batches=recal_batches, seed=recipe.seed)
    recal = evaluate(compressed, data, "val", limit=val_images)
    history = History()
    if recipe.epochs:
        history = fit(compressed, data, recipe, progress=progress, desc=desc)
    compressed.eval()
    macs = measure.macs(compressed, input_size)
    params = measure.parameters(compressed)
    hits = correct(compressed, data, "test")
    return Outcome(model=compressed, macs=macs, params=params,
                   reduction=1 - macs / measure.macs(model, input_size),
                   params_removed=1 - params / measure.parameters(model),
                   val_after_surgery=after, val_after_recal=recal, history=history,
                   test=hits.double().mean().item(), test_correct=hits,
                   images_per_epoch=recipe.samples_per_epoch or size(data, "train"))


def compare(model: nn.Module, keeps: Mapping[str, Mapping[str, Sequence[int]] | nn.Module], data: Data,
            recipe: Recipe | int | None = None, **kw) -> dict[str, Outcome]:
    """The same path with the same recipe and settings (``kw``) for every ``{label: selection}``: a ``keep`` dict
    goes through :func:`prune_and_finetune`, an already compressed model through :func:`finetune`."""
    return {label: (finetune(model, chosen, data, recipe, desc=f"fine-tune {label}", **kw) if isinstance(chosen, nn.Module)
                    else prune_and_finetune(model, chosen, data, recipe, desc=f"fine-tune {label}", **kw))
            for label, chosen in keeps.items()}


def table(outcomes: Mapping[str, Outcome], dense_test: float) -> str:
    """A markdown table of the outcomes: MACs removed, accuracy at each stage, drop from dense. The column of
    validation accuracy after fine-tuning appears only if some outcome measured it (``eval_val=True``)."""
    with_ft = any(o.history.val_acc for o in outcomes.values())
    lines = ["| selection | MACs removed | params (removed) | val: right after surgery | val: after BN recal | "
             + ("val: after fine-tuning | " if with_ft else "") + "**test: after fine-tuning** | accuracy drop (test, points) |",
             "|---|---|---|---|---|" + ("---|" if with_ft else "") + "---|---|"]
    for label, o in outcomes.items():
        ft = (f"{o.history.val_acc[-1]:.1%} | " if o.history.val_acc else "- | ") if with_ft else ""
        lines.append(f"| {label} | {o.reduction:.1%} | {o.params / 1e6:.2f} M ({o.params_removed:.0%}) | {o.val_after_surgery:.1%} | "
                     f"{o.val_after_recal:.1%} | {ft}**{o.test:.1%}** | {100 * (dense_test - o.test):.1f} |")
    return "\n".join(lines)
