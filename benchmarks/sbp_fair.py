"""SBP against edge-popup, a fair fight: scale-matched SBP, edge-popup with its weight decay, a converged dense net.

    .venv/bin/python benchmarks/sbp_fair.py --seeds 0 1 2   # each seed alone on 2 cores: its time is in its results file
    .venv/bin/python benchmarks/sbp_fair.py --scale full --seeds 0   # 20 whole epochs per mask: see below

Notebook 05 compares SBP (paper 5) with edge-popup at its lab recipe. A review found three ways in
which that comparison was not fair to one side or the other, and this script settles each on validation data:

1. **Scale.** The step that reaches SBP's ``z`` carries the frozen weight, whose magnitude ``sqrt(2 / fan_in)`` is
   about 12 times smaller in ``classifier.0`` than in the first conv, while every ``z`` lives in the same box
   [0, 1]; edge-popup's scores start at the weights' scale, which cancels the factor. ``sbp-matched``
   (:mod:`pruning.methods.sbp`, eq. 7, our reconstruction) divides it out.
2. **Weight decay.** The edge-popup authors decay the scores by 1e-4 (and train 100 epochs; we cannot). Here
   edge-popup gets its decay; both SBP variants get none (their box needs none).
3. **The dense reference.** Notebook 05 trains the dense Conv-2 for the masks' 5 short epochs. Here it trains with
   a budget of its own: the whole training split per epoch at a constant rate until validation accuracy has not
   improved for 4 epochs (:func:`pruning.train.fit_until_plateau`), each rate of a small grid, the best on
   validation kept.

Each method gets the learning rate of its grid with the best validation accuracy at 50% sparsity (first inner
seed; at full scale edge-popup's grid starts one step lower); then every method trains at 50% and 70% sparsity
with two inner seeds (the same random weights for every method at one inner seed), 5 epochs of 5,000 images otherwise (cosine, Nesterov SGD; notebook 05's lab recipe is the
same with 4,000 images per epoch). ``--scale full`` trains every mask, in the rate sweep too, for 20 epochs over the
whole training split (notebook 05's full recipe; it keeps two inner seeds, not the notebook's four); the dense net's
own budget is the same at both scales.
Each outer seed (``--seeds``) uses its own inner seeds and data split and writes
``results/runs/sbp_fair/<scale>-seed<N>.json``; notebook 05 reads them. Test accuracies judge, they choose nothing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pruning import bench, data, models, report, train  # noqa: E402
from pruning.methods import sbp, supermask  # noqa: E402

NAME = "sbp_fair"
NET = dict(depth=2, width=0.25)
SCALES = {"lab": dict(epochs=5, samples_per_epoch=5000),          # notebook 05's lab recipe trains 4,000 per epoch
          "full": dict(epochs=20, samples_per_epoch=None)}          # notebook 05's full recipe
SPARSITIES = (0.5, 0.7)
INNER = 2                                                            # inner seeds per outer seed
LR_GRIDS = {"sbp": (1.0, 3.0, 9.0, 27.0), "sbp-matched": (0.1, 0.3, 1.0, 3.0), "edge-popup": (0.1, 0.3, 0.9)}   # SBP: one step up
# since the 3-rate grids, where seed 2 chose the top rate of both SBP variants
# at full scale edge-popup's grid reaches one step lower: its first full run (commit fdf225f) chose 0.1, then the bottom
GRIDS = {"lab": LR_GRIDS, "full": {**LR_GRIDS, "edge-popup": (0.03, 0.1, 0.3, 0.9)}}
WEIGHT_DECAY = {"edge-popup": 1e-4}
DENSE = dict(lrs=(0.003, 0.01, 0.03, 0.1), patience=4, max_epochs=40)   # 0.003 added: 0.01, the low edge, won on seeds 0 and 2
PAIRS = (("sbp", "edge-popup"), ("sbp-matched", "edge-popup"), ("sbp-matched", "sbp"))
NAMES = {"sbp": "SBP", "sbp-matched": "SBP, scale-matched", "edge-popup": "edge-popup (weight decay 1e-4)"}


def net_label() -> str:
    return f"Conv-{NET['depth']} w{NET['width']:g}"


def run(seed: int, scale: str = "lab") -> Path:
    start = time.perf_counter()
    recipe = SCALES[scale]
    train.seed_everything(seed)
    cifar = data.load("cifar10", val_per_class=100, seed=seed)
    inner = tuple(INNER * seed + i for i in range(INNER))
    exp = supermask.Experiment(sbp.build, cifar, weight_decay=WEIGHT_DECAY, **NET, **recipe)
    sweep = exp.lr_sweep(GRIDS[scale], sparsity=0.5, seed=inner[0])
    lr = {m: max(v, key=v.get) for m, v in sweep.items()}
    print(f"{scale} seed {seed}: rates chosen on validation {lr} from {sweep}", flush=True)
    runs = exp.grid(lr, SPARSITIES, inner)
    acc = supermask.accuracies(runs)
    rows = [report.number(f"{NAMES[m]}: val accuracy at 50% sparsity, lr {r:g} (first inner seed)", v)
            for m, by_lr in sweep.items() for r, v in by_lr.items()]
    for s in SPARSITIES:
        rows += [report.number(f"{net_label()} at {s:.0%} sparsity: {NAMES[m]}, test, mean over the inner seeds",
                               sum(acc[m][s]) / len(acc[m][s])) for m in LR_GRIDS]
        # the mean over the inner seeds of each method; their difference is the mean paired difference (same seeds)
        rows += [report.difference(f"{net_label()} at {s:.0%} sparsity: {NAMES[a]} vs {NAMES[b]}, test, mean over the "
                                   "inner seeds", NAMES[a], NAMES[b], sum(acc[a][s]) / len(acc[a][s]),
                                   sum(acc[b][s]) / len(acc[b][s])) for a, b in PAIRS]
        first = {r.method: r for r in runs if r.sparsity == s and r.seed == inner[0]}
        rows += [report.paired(f"{net_label()} at {s:.0%} sparsity: test, {NAMES[a]} vs {NAMES[b]} (first inner seed)",
                               NAMES[a], NAMES[b], first[a].test_correct, first[b].test_correct) for a, b in PAIRS]
    # how far each method moved classifier.0's mask (the layer whose weights are smallest), first inner seed, 50%
    moved = {r.method: r.flipped() for r in runs if r.sparsity == 0.5 and r.seed == inner[0]}
    rows += [report.number(f"{NAMES[m]}: fraction of classifier.0's start mask dropped (50%, first inner seed)",
                           f["classifier.0"]) for m, f in moved.items()]

    # the dense Conv-2, trained until it stops improving on validation, at each rate of a small grid
    dense = {}
    for r in DENSE["lrs"]:
        torch.manual_seed(inner[0])
        net = models.ConvNet(NET["depth"], width=NET["width"])
        hist, best = train.fit_until_plateau(net, cifar, lr=r, seed=inner[0], patience=DENSE["patience"],
                                             max_epochs=DENSE["max_epochs"], progress=False, desc=f"dense lr {r}")
        dense[r] = {"val": hist.val_acc[best - 1], "best_epoch": best, "epochs": len(hist.val_acc),
                    "test": train.evaluate(net, cifar, "test"), "val_curve": hist.val_acc}
        print(f"{scale} seed {seed}: dense lr {r}: best val {dense[r]['val']:.1%} at epoch {best} of "
              f"{len(hist.val_acc)}, "
              f"test {dense[r]['test']:.1%}", flush=True)
        rows.append(report.number(f"dense {net_label()} trained to a plateau: val accuracy at lr {r:g}", dense[r]["val"]))
    chosen = max(dense, key=lambda r: dense[r]["val"])
    rows += [report.number(f"dense {net_label()} trained to a plateau: test accuracy (rate chosen on validation)",
                           dense[chosen]["test"]),
             report.number(f"dense {net_label()} trained to a plateau: epochs to its best validation accuracy",
                           dense[chosen]["best_epoch"], unit="", digits=0)]
    rows += [report.difference(f"{net_label()} at {s:.0%} sparsity: {NAMES[m]} - the converged dense net, test",
                               NAMES[m], "dense, converged", sum(acc[m][s]) / len(acc[m][s]), dense[chosen]["test"])
             for s in SPARSITIES for m in LR_GRIDS]
    out = {"names": NAMES, "sweep": {m: {str(r): v for r, v in by_lr.items()} for m, by_lr in sweep.items()}, "lr": lr,
           "inner_seeds": list(inner), "test": {m: {str(s): v for s, v in d.items()} for m, d in acc.items()},
           "moved": moved, "dense": {str(r): v for r, v in dense.items()}, "dense_lr": chosen}
    return bench.save(NAME, rows, seed, start, f"benchmarks/sbp_fair.py --scale {scale} --seeds {seed}", data=out,
                      scale=scale, recipe=recipe, weight_decay=WEIGHT_DECAY, dense=DENSE)


def main(argv=None) -> int:
    return bench.main(NAME, run, __doc__.split("\n\n")[0], argv, seeds=(0,), scales=tuple(SCALES))


if __name__ == "__main__":
    raise SystemExit(main())
