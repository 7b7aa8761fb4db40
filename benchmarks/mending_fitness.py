"""Is the mending search's fast score a signal or noise? Notebook 04's search, re-scored and fine-tuned (paper 4).

    .venv/bin/python benchmarks/mending_fitness.py --seeds 0                # 5 to 9 minutes per seed on 2 cores, alone
    .venv/bin/python benchmarks/mending_fitness.py --scale full --seeds 0   # notebook 04's full search and repair

Notebook 04's search scores each candidate structure on the first 500 validation images (inherited filters, BN
recalibrated, no training) and reports its best against the pre-pruned structure. With about 2 points of standard
error per score, the best of some 20 candidates is partly the luckiest one: the **winner's curse**. This script runs
the notebook's lab search at both FLOPs targets and measures three things:

1. **Re-scoring.** Every distinct candidate is scored again on the other 500 validation images, which the search
   never used. The rank correlation between the two scores says how much of the search's ranking is signal; the
   winner's lead over the pre-pruned structure on the unseen images is an estimate its selection did not inflate
   (with McNemar's test on those 500 images).
2. **Fast score against fine-tuned accuracy.** Six candidates per target (the pre-pruned structure, the winner and
   four more evenly spread over the search's ranking) get 3 epochs of 2,000 images of fine-tuning (lr 0.01, BN
   recalibrated on 10 batches first; notebook 04's lab recipe is the same with 2 epochs). The rank correlation between each fast score and the accuracy
   after fine-tuning says whether the fast score predicts what the paper cares about.
3. **The paper's claim, as notebook 04 tests it.** Winner against pre-pruned after the same fine-tuning, on the test
   images.

``--scale full`` runs notebook 04's full search instead (population 12, 8 generations, 4 parents, BN recalibrated
on 8 batches; the same 500 + 500 validation images) and fine-tunes the six candidates for five epochs over the whole
training split (notebook 04's full repair).

Both halves hold 50 images of every class: ``data.load`` orders the validation split so that every prefix is
class-balanced (runs before that change scored the search on classes 0-4 and re-scored on classes 5-9).

Nothing is chosen here: the search's winner is the one notebook 04 would take. Accuracies after fine-tuning are
measured on the validation split (all 1,000 images, which fine-tuning never trains on) and on the test split; the
test numbers judge the outcome and choose nothing. Each seed (recalibration batches, candidates, fine-tuning order)
writes ``results/runs/mending_fitness/<scale>-seed<N>.json``; notebook 04 reads them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from scipy import stats as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pruning import bench, measure, pipeline, report, train, zoo  # noqa: E402
from pruning.methods import mending  # noqa: E402

NAME = "mending_fitness"
RATES = (0.5, 0.7)
SCALES = {   # notebook 04's search and its fast evaluation at each scale, and the fine-tuning of the candidates
    "lab": dict(search=dict(population=6, generations=3, parents=3), evaluation=dict(recal_batches=4, limit=500),
                recipe=dict(epochs=3, samples_per_epoch=2000, lr=0.01, recal_batches=10)),   # notebook 04: 2 epochs
    "full": dict(search=dict(population=12, generations=8, parents=4), evaluation=dict(recal_batches=8, limit=500),
                 recipe=dict(epochs=5, samples_per_epoch=None, lr=0.01, recal_batches=10)),
}
FINETUNED = 6                                                 # candidates fine-tuned per target


def spearman(a, b) -> float:
    """Spearman's rank correlation with tied values given their average rank (accuracies on 500 images tie often);
    0 when one side is constant."""
    rho = st.spearmanr(a, b).statistic
    return 0.0 if rho != rho else float(rho)


def spread(ranked: list, k: int) -> list:
    """``k`` items evenly spaced over a ranked list, its first and last included (all of it when it is short)."""
    if len(ranked) <= k:
        return list(ranked)
    return [ranked[round(i * (len(ranked) - 1) / (k - 1))] for i in range(k)]


def quantity(rate: float, what: str) -> str:
    return f"VGG-16 w0.5 at {rate:.0%} fewer FLOPs: {what}"


def run(seed: int, scale: str = "lab") -> Path:
    start = time.perf_counter()
    cfg = SCALES[scale]
    train.seed_everything(seed)
    vgg = zoo.pretrained("vgg16-cifar10").eval()
    data = zoo.dataset("vgg16-cifar10")
    dense = measure.macs(vgg)
    rows, out = [], {}
    for rate in RATES:
        space = mending.SearchSpace(vgg, mending.prepruned_widths(vgg, rate), budget=int((1 - rate) * dense))
        ev = mending.Evaluator(vgg, data, seed=seed, **cfg["evaluation"])
        search = mending.evolve(space, ev, seed=seed, progress=False, **cfg["search"])
        key = lambda c: tuple(c.widths.values())
        # every distinct structure once, best search score first (ties: fewer MACs first, as SearchResult.best)
        distinct = {}
        for c in (c for g in search.generations for c in g):
            distinct.setdefault(key(c), c)
        ranked = sorted(distinct.values(), key=lambda c: (-c.fitness, c.macs))
        pre = search.generations[0][0]
        winner = search.best
        assert ranked[0].widths == winner.widths and pre.genes == space.zero()

        # 1. re-scoring on the validation images the search never used
        held = {key(c): ev.rescore(c.widths) for c in ranked}
        score = {k: h.double().mean().item() for k, h in held.items()}
        rho_rescore = spearman([c.fitness for c in ranked], [score[key(c)] for c in ranked])
        rows += [
            report.number(quantity(rate, "rank correlation, search score vs re-score on unseen validation images "
                                         "(all distinct candidates)"), rho_rescore, unit="", digits=2),
            report.difference(quantity(rate, "search score, winner vs pre-pruned (on the images it searched with)"),
                              "winner", "pre-pruned", winner.fitness, pre.fitness),
            report.paired(quantity(rate, "re-score on unseen validation images, winner vs pre-pruned"),
                          "winner", "pre-pruned", held[key(winner)], held[key(pre)]),
        ]

        # 2. fast scores against accuracy after the same fine-tuning
        others = [c for c in ranked if key(c) != key(pre)]
        chosen = spread(others, FINETUNED - 1) + [pre]          # the pre-pruned structure is always among them
        if len(chosen) != FINETUNED:
            raise RuntimeError(f"the search found only {len(ranked)} distinct structures, fewer than {FINETUNED}")
        tuned = {}
        for i, c in enumerate(chosen):
            o = pipeline.prune_and_finetune(vgg, ev.keep(c.widths), data, seed=seed, progress=False, eval_val=True,
                                            desc=f"candidate {i}", **cfg["recipe"])
            tuned[key(c)] = o
            print(f"{scale} seed {seed}, {rate:.0%}: candidate {i}: search {c.fitness:.1%}, "
                  f"re-score {score[key(c)]:.1%}, "
                  f"fine-tuned val {o.history.val_acc[-1]:.1%}, test {o.test:.1%}", flush=True)
        fast = [c.fitness for c in chosen]
        fresh = [score[key(c)] for c in chosen]
        val_ft = [tuned[key(c)].history.val_acc[-1] for c in chosen]
        test_ft = [tuned[key(c)].test for c in chosen]
        rows += [
            report.number(quantity(rate, f"rank correlation, search score vs test after fine-tuning ({FINETUNED} "
                                         "candidates)"), spearman(fast, test_ft), unit="", digits=2),
            report.number(quantity(rate, f"rank correlation, re-score vs test after fine-tuning ({FINETUNED} "
                                         "candidates)"), spearman(fresh, test_ft), unit="", digits=2),
            report.number(quantity(rate, f"rank correlation, val vs test after fine-tuning ({FINETUNED} "
                                         "candidates)"), spearman(val_ft, test_ft), unit="", digits=2),
            # 3. the claim, as notebook 04 measures it
            report.paired(quantity(rate, "test after the same fine-tuning, winner vs pre-pruned"),
                          "winner", "pre-pruned", tuned[key(winner)].test_correct, tuned[key(pre)].test_correct),
        ]
        out[f"{rate:.2f}"] = {
            "candidates": [{"widths": c.widths, "macs": c.macs, "search": c.fitness, "rescore": score[key(c)],
                            "winner": key(c) == key(winner), "pre_pruned": key(c) == key(pre),
                            **({"val_finetuned": tuned[key(c)].history.val_acc[-1], "test_finetuned": tuned[key(c)].test}
                               if key(c) in tuned else {})}
                           for c in ranked],
            "evaluations": search.evaluations, "budget": space.budget,
        }
        print(f"{scale} seed {seed}, {rate:.0%}: search vs re-score rho {rho_rescore:+.2f}; winner - pre-pruned: "
              "search "
              f"{100 * (winner.fitness - pre.fitness):+.1f}, re-score {100 * (score[key(winner)] - score[key(pre)]):+.1f}, "
              f"fine-tuned test {100 * (tuned[key(winner)].test - tuned[key(pre)].test):+.1f} pts", flush=True)
    return bench.save(NAME, rows, seed, start, f"benchmarks/mending_fitness.py --scale {scale} --seeds {seed}",
                      data=out, scale=scale, search=cfg["search"], evaluation=cfg["evaluation"], recipe=cfg["recipe"])


def main(argv=None) -> int:
    return bench.main(NAME, run, __doc__.split("\n\n")[0], argv, seeds=(0,), scales=tuple(SCALES))


if __name__ == "__main__":
    raise SystemExit(main())
