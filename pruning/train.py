"""Training, evaluation and BatchNorm recalibration, deterministic on the CPU.

Every loop moves its batches to the model's device (:func:`pruning.models.device_of`): move the model with
``model.to("cuda")`` first to train or evaluate it on a GPU.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .data import Data, batches, num_batches, size
from .core import device_of, eval_mode


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@contextmanager
def fast_layout(model: nn.Module):
    """Run convolutions in the channels-last memory layout, then restore the model's layout.

    On the course's 2-core CPU one measurement gave 0.51 s instead of 0.67 s for a VGG-16 (width 0.5)
    training step of 128 images (``python -m pruning.calibrate`` times steps this way); restoring the
    ordinary layout afterwards keeps latency measurements comparable between models.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # already channels-last (we are nested inside another fast_layout, e.g. evaluate() inside fit()):
    # leave the layout to the outer one
    change = bool(convs) and not (convs[0].weight.is_contiguous(memory_format=torch.channels_last)
                                  and not convs[0].weight.is_contiguous())
    if change:
        model.to(memory_format=torch.channels_last)
    try:
        yield (lambda x: x.contiguous(memory_format=torch.channels_last)) if convs else (lambda x: x)
    finally:
        if change:
            model.to(memory_format=torch.contiguous_format)


@dataclass
class History:
    """What :func:`fit` measured, one entry per epoch."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


SCHEDULES = ("onecycle", "cosine", "constant")


@dataclass(frozen=True)
class Recipe:
    """Every setting of one training or fine-tuning run, in one object that travels whole from
    :func:`pruning.pipeline.compare` to :func:`fit` (and is what a notebook shows as "the recipe").

    Attributes:
        epochs: passes over the training split (or over ``samples_per_epoch`` shuffled images).
        lr: the peak learning rate (one-cycle) or the starting one (cosine / constant).
        schedule: ``"onecycle"`` (warm-up then linear decay), ``"cosine"`` or ``"constant"``.
        weight_decay, momentum, nesterov: SGD's; weight decay spares biases and BatchNorm (1-d parameters).
        batch_size: images per step (a :class:`pruning.data.Loaders` batches by itself).
        samples_per_epoch: shorten each epoch to this many images (a different random subset every epoch),
            which is how the notebooks keep fine-tuning inside their time budget.
        seed: seeds the shuffle and augmentation of every epoch.
        eval_val: measure validation accuracy after each epoch.

    ``Recipe.of(10, lr=0.01)`` or ``recipe.but(lr=0.01)`` make variants; a misspelt setting is an error.
    """

    epochs: int = 1
    lr: float = 0.1
    schedule: str = "onecycle"
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True
    batch_size: int = 128
    samples_per_epoch: int | None = None
    seed: int = 0
    eval_val: bool = True

    def __post_init__(self):
        if int(self.epochs) != self.epochs or self.epochs < 0:
            raise ValueError(f"epochs must be an integer >= 0, got {self.epochs!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be 'onecycle', 'cosine' or 'constant', got {self.schedule!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.samples_per_epoch is not None and self.samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1 or None, got {self.samples_per_epoch}")
        if self.weight_decay < 0 or self.momentum < 0:
            raise ValueError("weight_decay and momentum must be >= 0")

    def but(self, **changes) -> "Recipe":
        """A copy with ``changes``; a name that is not a setting is an error that lists the settings."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown recipe setting(s) {sorted(unknown)}; the settings are "
                            f"{[f.name for f in fields(self)]}")
        return replace(self, **changes)

    @classmethod
    def of(cls, recipe: "Recipe | int | None" = None, base: "Recipe | None" = None, **changes) -> "Recipe":
        """A recipe from what a caller gave: a :class:`Recipe`, a number of epochs, or nothing (then ``base``, by
        default ``Recipe()``), with ``changes`` applied."""
        if isinstance(recipe, Recipe):
            return recipe.but(**changes)
        base = cls() if base is None else base
        return base.but(**({} if recipe is None else {"epochs": recipe}), **changes)


def _schedule(kind: str, lr: float, total_steps: int, optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    if kind == "onecycle":
        # warm up for a quarter of the steps; torch divides by (warm-up steps - 1), zero for exactly 4 steps
        warmup = 0.25 if total_steps != 4 else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                                   pct_start=warmup, anneal_strategy="linear")
    if kind == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps)))
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"schedule must be 'onecycle', 'cosine' or 'constant', got {kind!r}")


def fit(model: nn.Module, data: Data, recipe: Recipe | int | None = None, *, progress: bool = True,
        desc: str = "train", after_step: Callable[[nn.Module], None] | None = None, **settings) -> History:
    """Train ``model`` in place with SGD + momentum by ``recipe`` and return the per-epoch :class:`History`.

    ``recipe`` is a :class:`Recipe`, or a number of epochs; ``settings`` (``lr=``, ``schedule=``, ... any field
    of :class:`Recipe`) change it for this call, so ``fit(model, data, 3, lr=0.05)`` trains 3 epochs at 0.05.
    ``data`` is the course's :class:`~pruning.data.Dataset` or your own :class:`~pruning.data.Loaders`.
    ``after_step`` is called with the model after every optimiser step (e.g. a projection onto a constraint
    set, as sparse binary programming needs).

    Masks from ``torch.nn.utils.prune`` stay in force: pruned weights remain zero.
    """
    recipe = Recipe.of(recipe, **settings)
    optimizer = _sgd(model, recipe)
    steps_per_epoch = num_batches(data, "train", recipe.batch_size, recipe.samples_per_epoch)
    scheduler = _schedule(recipe.schedule, recipe.lr, max(1, recipe.epochs * steps_per_epoch), optimizer)
    history = History()
    bar = tqdm(total=recipe.epochs * steps_per_epoch, desc=desc, disable=not progress, leave=False)
    with fast_layout(model) as layout:
        _epochs(model, data, recipe, optimizer, scheduler, history, bar, layout, after_step)
    bar.close()
    return history


def fit_until_plateau(model: nn.Module, data: Data, recipe: Recipe | None = None, *, patience: int = 4,
                      max_epochs: int = 60, progress: bool = True, desc: str = "train", **settings) -> tuple[History, int]:
    """Train ``model`` in place at a constant learning rate until its validation accuracy has not improved for
    ``patience`` epochs in a row (or after ``max_epochs``), then restore the weights of the best validation epoch:
    early stopping, for a model that is to be trained "until it stops improving" with a budget of its own rather
    than a fixed one. ``recipe`` / ``settings`` as in :func:`fit` (its ``epochs`` and ``schedule`` are ignored).
    Returns the history of every epoch trained and the best epoch (1-based)."""
    if patience < 1 or max_epochs < 1:
        raise ValueError(f"patience and max_epochs must be >= 1, got {patience} and {max_epochs}")
    if size(data, "val") == 0:
        raise ValueError("early stopping needs a validation split, and this data has none")
    recipe = Recipe.of(recipe, **settings).but(epochs=1, schedule="constant", eval_val=True)
    optimizer = _sgd(model, recipe)
    scheduler = _schedule("constant", recipe.lr, 1, optimizer)
    history, best, best_state = History(), 0, None
    steps_per_epoch = num_batches(data, "train", recipe.batch_size, recipe.samples_per_epoch)
    bar = tqdm(total=max_epochs * steps_per_epoch, desc=desc, disable=not progress, leave=False)
    with fast_layout(model) as layout:
        for epoch in range(max_epochs):
            _epochs(model, data, recipe, optimizer, scheduler, history, bar, layout, first_epoch=epoch)
            if best_state is None or history.val_acc[-1] > history.val_acc[best - 1]:
                best, best_state = epoch + 1, {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif epoch + 1 - best >= patience:
                break
    bar.close()
    model.load_state_dict(best_state)
    return history, best


def _sgd(model: nn.Module, recipe: Recipe) -> torch.optim.SGD:
    """SGD with momentum by ``recipe``; weight decay spares 1-d parameters (biases, BatchNorm)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.SGD([{"params": decay, "weight_decay": recipe.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov and recipe.momentum > 0)


def _epochs(model, data, recipe: Recipe, optimizer, scheduler, history, bar, layout, after_step=None,
            first_epoch: int = 0):
    device = device_of(model)
    loss_fn = nn.CrossEntropyLoss()
    validate = recipe.eval_val and size(data, "val") != 0
    for epoch in range(first_epoch, first_epoch + recipe.epochs):
        start = time.perf_counter()
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        history.lr.append(optimizer.param_groups[0]["lr"])
        for x, y in batches(data, "train", recipe.batch_size, limit=recipe.samples_per_epoch,
                            seed=recipe.seed * 1000 + epoch):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(layout(x))
            loss = loss_fn(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step(model)
            scheduler.step()
            total_loss += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
            bar.update(1)
        if not seen:
            raise ValueError("the training split gave no batch: an empty split or loader cannot be trained on")
        history.train_loss.append(total_loss / seen)
        history.train_acc.append(correct / seen)
        history.seconds.append(time.perf_counter() - start)
        if validate:
            history.val_acc.append(evaluate(model, data, "val"))
        bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}",
                        val=f"{history.val_acc[-1]:.3f}" if history.val_acc else "-")


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, split: str = "test", batch_size: int = 500,
             limit: int | None = None) -> float:
    """Top-1 accuracy (a fraction in [0, 1]) of ``model`` on a split, in eval mode.

    ``limit`` evaluates only the first ``limit`` images of the split (in stored order).
    The model's train/eval mode is restored afterwards.
    """
    hits = correct(model, data, split, batch_size, limit)
    return hits.double().mean().item() if len(hits) else 0.0


@torch.no_grad()
def correct(model: nn.Module, data: Data, split: str = "test", batch_size: int = 500,
            limit: int | None = None) -> torch.Tensor:
    """Per-image correctness (a bool tensor, in the split's stored order) of ``model``'s top-1 prediction: what a
    paired test of two models on the same images needs (:func:`pruning.stats.mcnemar`)."""
    hits = []
    device = device_of(model)
    with eval_mode(model), fast_layout(model) as layout:
        for x, y in batches(data, split, batch_size, train=False, limit=limit):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            hits.append((model(layout(x)).argmax(1) == y).cpu())
    return torch.cat(hits) if hits else torch.zeros(0, dtype=torch.bool)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: Data, num_batches: int = 20, batch_size: int = 128,
                   seed: int = 0) -> nn.Module:
    """Recompute every BatchNorm's running mean and variance on a few training batches.

    After pruning, the next layer sees different inputs than the ones its BatchNorm statistics
    were measured on; without this step accuracy before fine-tuning collapses to near chance
    whatever the criterion, and criteria cannot be compared. Only BN statistics change: no
    weight is trained. Uses a cumulative average over ``num_batches`` batches (momentum=None).
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1 (statistics from no batch would erase the BN layers), got {num_batches}")
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    device = device_of(model)
    with bn_statistics(model), fast_layout(model) as layout:
        for x, _ in batches(data, "train", batch_size, train=False, shuffle=True, augmentation=False,
                            limit=num_batches * batch_size, seed=seed):
            model(layout(x.to(device, non_blocking=True)))
    return model


@contextmanager
def bn_statistics(model: nn.Module):
    """Inside the block, every BatchNorm of ``model`` forgets its running statistics and measures them anew as a
    cumulative average (momentum=None, every batch counts equally) of the batches the block feeds it; all other
    layers are in eval mode. Afterwards each BatchNorm gets its momentum back and the model its train/eval mode.
    The one mechanism behind :func:`recalibrate_bn` and the detector's :func:`pruning.detector.recalibrate_bn`."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    was_training = model.training
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        yield model
    finally:
        for m, (momentum, training) in zip(bns, saved):
            m.momentum = momentum
            m.train(training)
        model.train(was_training)
