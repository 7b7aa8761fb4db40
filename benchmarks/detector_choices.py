"""Notebook 07's choices, made on the validation canvases: the hybrid's structure and the fine-tuning rate (paper 3).

    .venv/bin/python benchmarks/detector_choices.py --seeds 0 1 2   # each seed alone on 2 cores: see its results file

Paper 3 compresses a Faster R-CNN by clustering-pruning its low layers and Tucker-2-decomposing the rest, but its
abstract gives no split between the two, no k for the clustering and no rank rule. Notebook 07 needs all three,
and a fine-tuning rate. Here each is chosen on the detection set's **200 validation canvases** (mAP@0.5), after
notebook 07's lab repair (BN recalibration, then one epoch of fine-tuning over the 3,000 training canvases), in two
steps:

1. **Structure.** The first ``split`` backbone convs cluster-pruned (2 or 4: the two 16-filter convs, or those and
   the two 32-filter ones), k-means with ``k`` clusters (2 or 3; the weakest cluster goes), every later conv
   decomposed either at the one rank ratio that removes the paper's 54% of the stored numbers
   (``hybrid.compress_to_budget``) or with VBMF's ranks. A structure qualifies when it removes at least 54% of the
   detector's storage; each is fine-tuned at notebook 07's former rate, 0.005, and the best validation mAP wins.
2. **Learning rate.** The winning hybrid and notebook 07's baseline, L1 channels at a uniform ratio removing as much
   storage as the hybrid, each get the rate of the grid that gives it the best validation mAP.

The test canvases are never read. Each seed (k-means starts, fine-tuning order) writes
``results/runs/detector_choices/lab-seed<N>.json``; notebook 07 reads the winners and shows the grid.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pruning import bench, detector, report, select, surgery, train  # noqa: E402
from pruning.methods import baselines, hybrid  # noqa: E402

NAME = "detector_choices"
STORAGE_TARGET = 0.54
RATES = (0.002, 0.005, 0.0125, 0.03, 0.075)   # each 2.5 times the one before; 0.03 added when seed 0 chose 0.0125
# for both, 0.075 when 0.03, then the top, won for L1 on seed 0 and for the hybrid on seed 2
STRUCTURE_LR = 0.005                      # the structures are compared at notebook 07's former rate (a quarter of training's)
STRUCTURES = [dict(split=s, k=k, ranks=r) for s in (2, 4) for k in (2, 3) for r in ("storage target", "VBMF")]
EPOCHS = 1                                # notebook 07's lab fine-tuning
INPUT = (1, 64, 64)


def label(structure: dict) -> str:
    return f"split {structure['split']}, k = {structure['k']}, {structure['ranks']} ranks"


def build(model, structure: dict, seed: int):
    if structure["ranks"] == "VBMF":
        return hybrid.compress(model, structure["split"], k=structure["k"], seed=seed, rule="vbmf")[0]
    return hybrid.compress_to_budget(model, STORAGE_TARGET, "params", split=structure["split"], k=structure["k"],
                                     seed=seed, input_size=INPUT)[0]


def run(seed: int) -> Path:
    start = time.perf_counter()
    train.seed_everything(seed)
    model = detector.pretrained()
    data = detector.dataset()
    original = detector.storage(model)
    def val_after(small, lr, name):
        # torchvision's RPN and box-head samplers draw from torch's global generator: reseed it, so that every
        # measurement sees the same draws whatever ran before it (the grid's order then changes no score)
        train.seed_everything(seed)
        detector.recalibrate_bn(small, data.train)
        detector.train_detector(small, data.train, EPOCHS, lr=lr, seed=seed, progress=False, desc=name)
        return detector.evaluate(small, data.val)["map50"]

    # 1. structure, at one rate
    mid = STRUCTURE_LR

    def built(structure):
        small = build(model, structure, seed)
        return small, 1 - detector.storage(small) / original

    grid, rows, winner = bench.choose_structure(STRUCTURES, label, built, lambda m, name: val_after(m, mid, name),
                                                STORAGE_TARGET, "detector hybrid",
                                                f"val mAP@0.5 after the lab fine-tuning at lr {mid}", seed, unit="", digits=3)
    best = winner["structure"]

    # 2. a learning rate for the winning hybrid and for L1 channels at the hybrid's storage, each rate on a fresh copy
    storage = winner["storage_removed"]
    ratio, _ = select.uniform_ratio_for(model, storage, input_size=INPUT, metric="params")
    l1_keep = select.keep_by_ratio(baselines.l1_scores(model), ratio)
    candidates = {"hybrid": lambda: build(model, best, seed),
                  "L1 channels": lambda: surgery.remove_channels(model, l1_keep)}
    rates, rate_rows, chosen_lr = bench.choose_rates(
        candidates, RATES, val_after,
        lambda m, lr: f"detector {m} (chosen structure): val mAP@0.5 after the lab fine-tuning at lr {lr}",
        known={"hybrid": {mid: winner["val"]}}, unit="", digits=3)
    rows += rate_rows
    print(f"seed {seed}: structure {label(best)}; rates {chosen_lr}", flush=True)

    out = {"grid": grid, "structure": best, "chosen_lr": chosen_lr, "l1_ratio": ratio,
           "rates": {m: {str(lr): v for lr, v in by_lr.items()} for m, by_lr in rates.items()}}
    return bench.save(NAME, rows, seed, start, f"benchmarks/detector_choices.py --seeds {seed}", data=out,
                      epochs=EPOCHS, rates=RATES, structure_lr=STRUCTURE_LR)


def main(argv=None) -> int:
    return bench.main(NAME, run, __doc__.split("\n\n")[0], argv, seeds=(0,))


if __name__ == "__main__":
    raise SystemExit(main())
