"""What does removing a channel cost, and which form of the sum rule predicts it? (paper 2, issue 17)

    .venv/bin/python benchmarks/removal_sensitivity.py --seeds 0 1 2   # each seed alone on 2 cores: see its results file

Paper 2 scores a channel by the sum rule over its filter's weights, eq. (4): S_c = 1/2 sum_{i in W_c} h_ii w_i^2,
the second-order loss change of setting the filter W_c to zero. With a BatchNorm after the conv, a zeroed filter
does not silence the channel: the BN still sends its constant ReLU(beta_c - gamma_c mu_c / sigma_c) to the next
layer. Surgery removes the channel, which is the same as zeroing what the *next* layers read from it, so the sum
rule can also be taken over those weights, eq. (4'): S'_c = 1/2 sum over the consumers' inputs from c of h_ii w_i^2
(``sensitivity.input_sensitivity``, ours). This script measures, on the shipped VGG-16 (width 0.5), for every
filter of four layers from shallow to deep:

* the loss change of **zeroing the filter** and of **removing the channel** (filter, bias and BN scale and shift
  zeroed: what surgery computes), on 1,024 training images, and the removal again on 1,024 other images (no image
  in both sets) to show the measurement's own noise;
* S_c and S'_c from the empirical Fisher diagonal of 1,024 training images (four times notebook 02's 256), twice,
  from two independent draws of images, to show the estimate's own noise; and the first-order term g . (-W_c).

It reports Spearman rank correlations over each layer's filters. Nothing is chosen here and the test split is never
read. Each seed (it draws the Fisher's and the measurement's images) writes
``results/runs/removal_sensitivity/lab-seed<N>.json`` in the reference runs' format; notebook 02 reads it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pruning import bench, report, select, train, zoo  # noqa: E402
from pruning.methods import sensitivity as sens  # noqa: E402

NAME = "removal_sensitivity"
LAYERS = ("features.3", "features.10", "features.20", "features.27")   # 32, 64, 128 and 256 filters
FISHER = dict(num_batches=16, batch_size=64)                           # 1,024 images per estimate
MEASURE_IMAGES = 1024                                                  # per measurement set (was 256: too noisy in deep layers)

# what is correlated with what: (row label, prediction or measurement, measurement)
PAIRS = (
    ("S_c (eq. 4, the filter's weights) vs removal", "S", "removed"),
    ("S'_c (eq. 4', the readers' inputs) vs removal", "S_in", "removed"),
    ("first order g . (-W_c) vs removal", "first_order", "removed"),
    ("first order g . (-W_c) vs removal on the other images", "first_order", "removed_again"),
    ("S_c (eq. 4) vs zeroing the filter", "S", "zeroed"),
    ("S'_c (eq. 4') vs zeroing the filter", "S_in", "zeroed"),
    ("zeroing the filter vs removal, both measured", "zeroed", "removed"),
    ("removal measured on two image sets (the measurement's noise)", "removed", "removed_again"),
    ("S_c from two Fisher estimates (the estimate's noise)", "S", "S_again"),
    ("S'_c from two Fisher estimates (the estimate's noise)", "S_in", "S_in_again"),
)


def quantity(layer: str, label: str) -> str:
    return f"VGG-16 w0.5, {layer}: rank correlation, {label}"


def run(seed: int) -> Path:
    start = time.perf_counter()
    train.seed_everything(seed)
    vgg = zoo.pretrained("vgg16-cifar10").eval()
    data = zoo.dataset("vgg16-cifar10")
    names = list(dict.fromkeys([*LAYERS, *sens.consumer_layers(vgg)]))
    fisher = [sens.fisher_diagonal(vgg, data, names=names, seed=1000 * seed + k, **FISHER) for k in (1, 2)]
    x, y = sens.first_batch(data, 2 * MEASURE_IMAGES, seed=1000 * seed + 3)     # one draw, split: disjoint sets
    (x, x2), (y, y2) = x.split(MEASURE_IMAGES), y.split(MEASURE_IMAGES)
    rows, data_out = [], {}
    for layer in LAYERS:
        check = sens.removal_check(vgg, x, y, layer, remove=True)
        values = {"zeroed": check["actual"], "removed": check["removed"],
                  "removed_again": sens.removal_losses(vgg, x2, y2, layer),
                  "first_order": check["first_order"]}
        for key, f in zip(("", "_again"), fisher):
            values["S" + key] = sens.channel_sensitivity(vgg, {n: f[n] for n in LAYERS})[layer]
            values["S_in" + key] = sens.input_sensitivity(vgg, f)[layer]
        rhos = {label: select.rank_correlation(values[a], values[b]) for label, a, b in PAIRS}
        rows += [report.number(quantity(layer, label), rho, unit="", digits=2) for label, rho in rhos.items()]
        data_out[layer] = {k: [float(f"{float(v):.7g}") for v in t] for k, t in values.items()}   # 7 significant digits
        print(f"seed {seed}, {layer}: " + "; ".join(f"{label} {rho:+.2f}" for label, rho in rhos.items()), flush=True)
    return bench.save(NAME, rows, seed, start, f"benchmarks/removal_sensitivity.py --seeds {seed}", data=data_out,
                      fisher=FISHER, measure_images=MEASURE_IMAGES)


def main(argv=None) -> int:
    return bench.main(NAME, run, __doc__.split("\n\n")[0], argv, seeds=(0,))


if __name__ == "__main__":
    raise SystemExit(main())
