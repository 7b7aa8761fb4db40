"""Is it the criterion or the allocation? Paper 1's comparison asked apart from our allocation choice.

    .venv/bin/python benchmarks/criterion_allocation.py --seeds 0 1 2   # about 12 minutes per seed on 2 cores, alone
    .venv/bin/python benchmarks/criterion_allocation.py --scale full --seeds 0   # 73 minutes on 2 cores (AVX-512)
    .venv/bin/python -m pruning.report --write                          # the README's criterion x allocation table

A pruning method is two choices: a **criterion** scores every filter, an **allocation** turns the scores into how many
filters each layer keeps. GDP (paper 1) pairs its gradient score with one global threshold on scores divided by each
layer's maximum (eq. 3b); notebook 01 shows that this normalisation, not the gradient, strips some layers almost bare.
So "GDP against L1" compares two criteria only when both get the same allocation. Here every criterion meets every
allocation:

* criteria: L1 norm of the filter (PFEC), random, GDP's accumulated gradient (eq. 1-2), OBD's second-order channel
  sensitivity from the empirical Fisher (paper 2);
* allocations: **uniform** (the same fraction of every layer, found by bisection: PFEC's kind of rule), **global, max**
  (one ranking of per-layer max-normalised scores: GDP's eq. 3b), **global, L2** (the same with each layer's scores
  divided by their L2 norm), **global, MAC-aware** (max-normalised scores divided by what one channel of the layer
  costs in MACs, ``select.keep_for_macs(per_mac=True)``);

at -35% and -70% MACs of the shipped VGG-16 (width 0.5). Every selection gets the same repair: surgery, BN
recalibration on 10 batches, then at lab scale 2 epochs x 1,000 images of fine-tuning at lr 0.01, cosine (the
capstone's lab recipe when these runs were made; the capstone now fine-tunes 2 x 768 images to fit its 4-minute
budget). ``--scale full`` gives every selection five epochs over the whole training split instead (notebook 01's full
repair, same rate and schedule) and computes the scores from more batches (GDP's gradients from 50, notebook 01's full
scale; the Fisher from 8, the capstone's): a short repair favours the selections that lose least at the cut, a long
one tests whether their ranking survives. Every selection is tested on all 5,000 test images, so two selections
of one run are compared by the exact McNemar test on the same images. No choice is made here (every pair is
reported), so no validation split is needed beyond the one BN recalibration and the scores never see. Each seed
(it sets the random scores, GDP's and the Fisher's batches and the fine-tuning order) writes
``results/runs/criterion_allocation/<scale>-seed<N>.json`` in the reference runs' format, so ``pruning.report``
aggregates them over seeds with the same intervals.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pruning import bench, budget, pipeline, report, select, train, zoo  # noqa: E402
from pruning.methods import baselines  # noqa: E402

NAME = "criterion_allocation"
NET = "VGG-16 w0.5"
BUDGETS = (0.35, 0.7)
CRITERIA = ("L1", "random", "GDP", "OBD")
ALLOCATIONS = ("uniform", "global, max", "global, L2", "global, MAC-aware")
PAIRS = [("GDP", "L1"), ("OBD", "L1"), ("L1", "random")]        # criteria compared under each allocation
SCALES = {   # the repair every selection gets, and the batches its scores are computed from
    "lab": dict(recipe=dict(epochs=2, samples_per_epoch=1000, lr=0.01, recal_batches=10), grad_batches=10,
                fisher_batches=4),
    "full": dict(recipe=dict(epochs=5, samples_per_epoch=None, lr=0.01, recal_batches=10), grad_batches=50,
                 fisher_batches=8),
}


def accuracy_quantity(b: float, criterion: str, allocation: str) -> str:
    return f"{NET} at -{b:.0%} MACs, {criterion} scores, {allocation} allocation: test accuracy after the same fine-tuning"


def criteria_quantity(b: float, allocation: str, a: str, ref: str) -> str:
    return f"{NET} at -{b:.0%} MACs, {allocation} allocation: {a} vs {ref} scores"


def allocation_quantity(b: float, criterion: str, allocation: str) -> str:
    return f"{NET} at -{b:.0%} MACs, {criterion} scores: {allocation} vs uniform allocation"


def allocate(model, scores, reduction: float, allocation: str) -> dict[str, list[int]]:
    """The keep dict of one allocation rule for one set of scores."""
    if allocation == "uniform":
        ratio, _ = select.uniform_ratio_for(model, reduction)
        return select.keep_by_ratio(scores, ratio)
    normalize = "l2" if allocation == "global, L2" else "max"
    return select.keep_for_macs(model, scores, reduction, normalize=normalize, per_mac=allocation.endswith("MAC-aware"))


def run(seed: int, scale: str = "lab") -> Path:
    start = time.perf_counter()
    cfg = SCALES[scale]
    train.seed_everything(seed)
    vgg = zoo.pretrained("vgg16-cifar10").eval()
    data = zoo.dataset("vgg16-cifar10")
    sel = budget.Selectors(vgg, data, seed=seed, grad_batches=cfg["grad_batches"],
                           fisher_batches=cfg["fisher_batches"])
    scores = {"L1": sel.l1_scores, "random": baselines.random_scores(vgg, seed), "GDP": sel.gdp_scores,
              "OBD": sel.obd_scores}
    rows, data_out = [], {}
    for b in BUDGETS:
        keeps = {(c, a): allocate(vgg, scores[c], b, a) for c in CRITERIA for a in ALLOCATIONS}
        outcomes = pipeline.compare(vgg, {f"{c} | {a}": k for (c, a), k in keeps.items()}, data, seed=seed,
                                    progress=False, eval_val=False, **cfg["recipe"])
        out = {key: outcomes[f"{key[0]} | {key[1]}"] for key in keeps}
        for (c, a), o in out.items():
            rows.append(report.number(accuracy_quantity(b, c, a), o.test))
        for a in ALLOCATIONS:
            rows += [report.paired(criteria_quantity(b, a, x, ref), x, ref, out[(x, a)].test_correct,
                                   out[(ref, a)].test_correct) for x, ref in PAIRS]
        for c in CRITERIA:
            rows += [report.paired(allocation_quantity(b, c, a), a, "uniform", out[(c, a)].test_correct,
                                   out[(c, "uniform")].test_correct) for a in ALLOCATIONS[1:]]
        data_out[f"{b:g}"] = {f"{c} | {a}": {"test": o.test, "val_after_recal": o.val_after_recal,
                                             "macs_removed": o.reduction,
                                             "widths": {n: len(v) for n, v in keeps[(c, a)].items()}}
                              for (c, a), o in out.items()}
        print(f"{scale} seed {seed}, -{b:.0%}: " + ", ".join(f"{c}/{a} {o.test:.1%}" for (c, a), o in out.items()),
              flush=True)
    return bench.save(NAME, rows, seed, start, f"benchmarks/criterion_allocation.py --scale {scale} --seeds {seed}",
                      data=data_out, scale=scale, recipe=cfg["recipe"], grad_batches=cfg["grad_batches"],
                      fisher_batches=cfg["fisher_batches"])


def main(argv=None) -> int:
    return bench.main(NAME, run, __doc__.split("\n\n")[0], argv, seeds=(0, 1, 2), scales=tuple(SCALES))


if __name__ == "__main__":
    raise SystemExit(main())
