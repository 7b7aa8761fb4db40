"""Calibrate the course's CIFAR VGG: cost per width, and whether the ranking matters.

    python -m pruning.calibrate                 # prints the two markdown tables of the README

Part 1 times a training step (batch 128, as ``fit`` runs it) for each width and reports MACs,
parameters and the implied seconds per epoch. Part 2 takes the shipped pretrained VGG, removes
the same fraction of filters from every conv but the first by L1 and by random ranking, and
measures validation accuracy right after surgery, after BN recalibration, and after a short
fine-tuning: a width is worth teaching with only if L1 beats random there.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from . import select, surgery, zoo
from .measure import macs, parameters
from .methods.baselines import l1_scores, random_scores
from .models import VGG
from .train import evaluate, fast_layout, fit, recalibrate_bn, seed_everything


def step_seconds(model: torch.nn.Module, steps: int = 8, batch_size: int = 128) -> float:
    """Median seconds of one SGD training step on a random batch, in the layout ``fit`` uses."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    times = []
    with fast_layout(model) as layout:
        x = layout(x)
        for i in range(steps + 2):
            start = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def cost_table(widths=(0.25, 0.5), train_images: int = 19000) -> str:
    rows = ["| width | MACs | params | s / step (batch 128) | s / epoch (19k images) |", "|---|---|---|---|---|"]
    for w in widths:
        m = VGG(16, width=w)
        s = step_seconds(m)
        rows.append(f"| {w} | {macs(m) / 1e6:.1f} M | {parameters(m) / 1e6:.2f} M | {s:.2f} | "
                    f"{s * train_images / 128:.0f} |")
    return "\n".join(rows)


def ranking_table(ratios=(0.2, 0.4), finetune_images: int = 5000, seed: int = 0) -> str:
    model = zoo.pretrained("vgg16-cifar10")
    data = zoo.dataset("vgg16-cifar10")
    first = model.conv_names()[0]
    rows = ["| ratio | MACs removed | ranking | val acc. after surgery | after BN recal | "
            f"after 1 fine-tune epoch ({finetune_images} images) |", "|---|---|---|---|---|---|"]
    for r in ratios:
        for label, scores in (("L1", l1_scores(model)), ("random", random_scores(model, seed))):
            keep = select.keep_by_ratio({k: v for k, v in scores.items() if k != first}, r)
            pruned = surgery.remove_channels(model, keep)
            after = evaluate(pruned, data, "val")
            recalibrate_bn(pruned, data, num_batches=20, seed=seed)
            recal = evaluate(pruned, data, "val")
            seed_everything(seed)
            fit(pruned, data, 1, lr=0.01, schedule="cosine", samples_per_epoch=finetune_images, seed=seed,
                eval_val=False, progress=False)
            tuned = evaluate(pruned, data, "val")
            rows.append(f"| {r} | {select.macs_removed(model, keep):.1%} | {label} | {after:.1%} | {recal:.1%} | {tuned:.1%} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pruning.calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-ranking", action="store_true", help="only time the widths")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(cost_table())
    if not args.skip_ranking:
        print()
        print(ranking_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
