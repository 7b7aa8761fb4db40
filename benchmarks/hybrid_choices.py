"""Notebook 03's choices, made on validation data: the hybrid's knobs and each model's fine-tuning rate (paper 3).

    .venv/bin/python benchmarks/hybrid_choices.py --seeds 0     # 5 minutes per seed on 2 cores alone (AVX-512; AVX2 ~12)

Paper 3's abstract gives no clustering k, no split between pruned and decomposed layers and no Tucker rank rule,
so notebook 03 has to choose them, and a fine-tuning learning rate too. Chosen on test numbers they would flatter
the hybrid. Here every choice is made on the **validation** split after notebook 03's lab fine-tuning (3 epochs of
2,000 images, BN recalibration first), in two steps:

1. **Structure.** The hybrid's knobs over a small grid: the first ``split`` convs cluster-pruned (2 or 4), k-means
   with ``k`` clusters (the weakest cluster goes), the later convs decomposed at a rank ratio of 0.4 or 0.5 (k 2 or
   3), with VBMF's ranks, or at the one rank ratio that removes exactly the paper's 54% of the parameters (k 2, 3
   or 4; ``rule="storage"``). Only structures that remove at least 54% qualify; each is fine-tuned at the middle
   rate of the grid below, and the best validation accuracy wins. Until commit e763ce3 the grid had no storage
   rule and no k = 4: its winner, rank ratio 0.5 with k = 3, was the top of both ranges and removed 63% of the
   parameters, a harsher cut than the paper's.
2. **Learning rate.** The winning hybrid and notebook 03's baseline, L1 channels at a uniform ratio removing as many
   parameters as the hybrid, each get the rate of {0.0003, 0.001, 0.003, 0.01, 0.03} that gives it the best validation
   accuracy, each rate from a fresh copy (``bench.choose_rates``; runs before commit 98d1e45 fine-tuned one copy at
   every rate in turn, so a later rate started from the earlier rates' training).

The shared pipeline also evaluates the test split after each fine-tuning; this script neither stores nor uses it.
Each seed (k-means starts, fine-tuning order) writes ``results/runs/hybrid_choices/lab-seed<N>.json``; notebook 03
reads its winners and shows the grid.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pruning import bench, measure, pipeline, report, select, surgery, train, zoo  # noqa: E402
from pruning.methods import baselines, hybrid  # noqa: E402

NAME = "hybrid_choices"
STORAGE_TARGET = 0.54
# five rates, each about 3 times the one before. Until commit 597b240 the grid was 0.001-0.01, and L1's best was its
# top edge (0.01) on all three seeds, the hybrid's its bottom edge (0.001) on two: so the grid grew a step each way
RATES = (0.0003, 0.001, 0.003, 0.01, 0.03)
STRUCTURES = [dict(split=s, k=k, rule="ratio", value=v) for s in (2, 4) for k in (2, 3) for v in (0.4, 0.5)]
STRUCTURES += [dict(split=2, k=3, rule="vbmf", value=None)]
STRUCTURES += [dict(split=s, k=k, rule="storage", value=STORAGE_TARGET) for s in (2, 4) for k in (2, 3, 4)]
RECIPE = dict(epochs=3, samples_per_epoch=2000, recal_batches=10)


def label(structure: dict) -> str:
    if structure["rule"] == "vbmf":
        ranks = "VBMF ranks"
    elif structure["rule"] == "storage":
        ranks = f"ranks for {structure['value']:.0%} storage"
    else:
        ranks = f"rank ratio {structure['value']}"
    return f"split {structure['split']}, k = {structure['k']}, {ranks}"


def run(seed: int) -> Path:
    start = time.perf_counter()
    train.seed_everything(seed)
    vgg = zoo.pretrained("vgg16-cifar10").eval()
    data = zoo.dataset("vgg16-cifar10")
    dense_params = measure.parameters(vgg)
    def val_after(model, lr, name):
        o = pipeline.finetune(vgg, model, data, lr=lr, seed=seed, progress=False, eval_val=True, desc=name, **RECIPE)
        return o.history.val_acc[-1]

    # 1. structure, at the middle rate
    mid = RATES[len(RATES) // 2]

    def built(structure):
        small, _ = hybrid.compress(vgg, seed=seed, **structure)
        return small, 1 - measure.parameters(small) / dense_params

    grid, rows, winner = bench.choose_structure(STRUCTURES, label, built, lambda m, name: val_after(m, mid, name),
                                                STORAGE_TARGET, "hybrid", f"val accuracy after the lab fine-tuning at lr {mid}", seed)
    best = winner["structure"]

    # 2. a learning rate for the winning hybrid and for L1 at the hybrid's storage, each rate on a fresh copy
    storage = winner["storage_removed"]
    ratio, _ = select.uniform_ratio_for(vgg, storage, metric="params")
    l1_keep = select.keep_by_ratio(baselines.l1_scores(vgg), ratio)
    candidates = {"hybrid": lambda: hybrid.compress(vgg, seed=seed, **best)[0],
                  "L1 channels": lambda: surgery.remove_channels(vgg, l1_keep)}
    rates, rate_rows, chosen_lr = bench.choose_rates(
        candidates, RATES, val_after,
        lambda m, lr: f"{m} (chosen structure): val accuracy after the lab fine-tuning at lr {lr}",
        known={"hybrid": {mid: winner["val"]}})
    rows += rate_rows
    print(f"seed {seed}: structure {label(best)}; rates {chosen_lr}", flush=True)

    data = {"grid": grid, "structure": best, "chosen_lr": chosen_lr, "l1_ratio": ratio,
            "rates": {m: {str(lr): v for lr, v in by_lr.items()} for m, by_lr in rates.items()}}
    return bench.save(NAME, rows, seed, start, f"benchmarks/hybrid_choices.py --seeds {seed}", data=data, recipe=RECIPE,
                      rates=RATES, structure_lr=mid)


def main(argv=None) -> int:
    return bench.main(NAME, run, __doc__.split("\n\n")[0], argv, seeds=(0,))


if __name__ == "__main__":
    raise SystemExit(main())
