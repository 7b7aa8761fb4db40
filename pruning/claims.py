"""Each paper's headline claims, each tested against the reference runs: supported, contradicted or not resolved.

A claim is tested through one key number of the reference runs (``report.evidence``) and a bound in that number's
own unit. Over the seeds of one scale the 95% interval of the mean (Student t, ``stats.paired_interval``) decides:

* ``above`` a bound: **supported** when the whole interval lies above it, **contradicted** when it lies below;
* ``at most`` a bound: **supported** when the interval lies at or below it, **contradicted** when above;
* otherwise, or with one seed (no interval), **not resolved**.

The bounds are the papers' figures where the abstract gives one, else our reading of its words, stated in the
table (for example "slight" read as at most 1 point). A claim measured on another dataset, network or metric than
the paper's is tested in kind, and the table says so. ``python -m pruning.report --write`` fills the README's
``claims`` block from :data:`CLAIMS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import stats
from .report import UNITS, Evidence, evidence

SUPPORTED, CONTRADICTED, NOT_RESOLVED = "supported", "contradicted", "not resolved"


@dataclass(frozen=True)
class Claim:
    paper: str        # which paper (as the course numbers them)
    claim: str        # the paper's claim, in the abstract's terms
    notebook: str     # where the reference runs live (a notebook, or a benchmark's results folder)
    quantity: str     # the key number that tests it
    rule: str         # "above" or "at most"
    bound: float      # in the quantity's shown unit: points for accuracy gaps and drops, percent, or x
    reading: str      # how the claim is read here: the bound and what differs from the paper's setting


CLAIMS = (
    Claim("1 GDP", "35.3% of VGG-16's FLOPs removed for a 0.14-point accuracy drop (CIFAR-10)",
          "01_gdp_gradient_pruning", "GDP: accuracy drop after fine-tuning (test)", "at most", 0.14,
          "drop at most 0.14 pts at -35% (VGG-16 at half width, reduced CIFAR-10)"),
    Claim("1 GDP", "more accurate than PFEC (+0.13 pts), removing 1.1 pts more FLOPs",
          "01_gdp_gradient_pruning", "test after the same fine-tuning: GDP vs PFEC's selection", "above", 0.0,
          "GDP - PFEC's selection > 0, same fine-tuning (ours, not PFEC's 40 epochs)"),
    Claim("1 GDP", "the gradient criterion (implied: it is the contribution)",
          "criterion_allocation", "VGG-16 w0.5 at -35% MACs, uniform allocation: GDP vs L1 scores", "above", 0.0,
          "GDP - L1 > 0 under the same (uniform) allocation and the same fine-tuning (lab: 2 x 1,000 images; full: "
          "five whole epochs)"),
    Claim("2 sensitivity", "over 60% of the FLOPs removed on CIFAR-10 with a slight accuracy loss",
          "02_sensitivity_channel_pruning", "accuracy drop after fine-tuning at 60% (test), sensitivity at a uniform ratio",
          "at most", 1.0, "drop at most 1 pt at -60% (\"slight\" read as 1 pt)"),
    Claim("2 sensitivity", "the second-order criterion (implied: it is the contribution)",
          "02_sensitivity_channel_pruning",
          "test after the same fine-tuning at 60% fewer FLOPs, uniform ratio: sensitivity vs L1", "above", 0.0,
          "sensitivity - L1 > 0 at the same per-layer counts"),
    Claim("3 statistics + Tucker-2", "storage cut by 54%",
          "03_statistics_pruning_tucker", "hybrid: storage removed", "above", 54.0,
          "parameters removed above 54% (the VGG on CIFAR-10, not a Faster R-CNN; met by construction: only "
          "structures that remove at least 54% are admitted)"),
    Claim("3 statistics + Tucker-2", "for a 0.58% loss of accuracy",
          "03_statistics_pruning_tucker", "hybrid: accuracy drop after fine-tuning (test)", "at most", 0.58,
          "drop at most 0.58 pts (CIFAR-10 accuracy; the paper's is VOC mAP)"),
    Claim("3 statistics + Tucker-2", "the same on a Faster R-CNN: storage -54%, 0.58% mAP lost",
          "07_detection_compression", "hybrid on a Faster R-CNN: mAP@0.5 drop after fine-tuning", "at most", 0.58,
          "mAP@0.5 drop at most 0.58 pts (a small detector on digit canvases, not VOC)"),
    Claim("4 mending", "accuracy holds at high pruning rates after automatic mending",
          "04_automatic_mending", "VGG-16 w0.5 at 70% fewer FLOPs: test after the same fine-tuning, mended vs pre-pruned",
          "above", 0.0, "mended - pre-pruned > 0 at -70%, same fine-tuning"),
    Claim("4 mending", "the search mends the pre-pruned structure (implied: its winner is better)",
          "mending_fitness", "VGG-16 w0.5 at 70% fewer FLOPs: re-score on unseen validation images, winner vs pre-pruned",
          "above", 0.0, "winner - pre-pruned > 0 at -70% on validation images the search never saw, before fine-tuning"),
    Claim("5 SBP", "better than edge-popup, +2.48 pts on CIFAR-10 at 50% sparsity",
          "05_sparse_binary_programming", "Conv-2 w0.25 at 50% sparsity: SBP - edge-popup, test, mean over the inner seeds",
          "above", 0.0, "SBP - edge-popup > 0 at 50% (a quarter-width Conv-2, reduced CIFAR-10)"),
    Claim("5 SBP", "better than edge-popup at 70% (+7.98 pts on ImageNet)",
          "05_sparse_binary_programming", "Conv-2 w0.25 at 70% sparsity: SBP - edge-popup, test, mean over the inner seeds",
          "above", 0.0, "SBP - edge-popup > 0 at 70% (CIFAR-10 instead of ImageNet)"),
    Claim("5 SBP", "better than edge-popup at 50% sparsity, in a fairer fight",
          "sbp_fair", "Conv-2 w0.25 at 50% sparsity: SBP, scale-matched vs edge-popup (weight decay 1e-4), test, mean "
          "over the inner seeds", "above", 0.0,
          "scale-matched SBP (ours) - edge-popup with its weight decay > 0 at 50%, each rate chosen on validation"),
)


def shown_values(ev: Evidence) -> list[float]:
    """The seeds' values in the unit the README shows (points for accuracy gaps, percent for fractions)."""
    return [v * UNITS[ev.row["unit"]] for v in ev.values.values()]


def verdict(values: list[float], rule: str, bound: float) -> str:
    """Supported, contradicted or not resolved, from the 95% interval of the seeds' mean against ``bound``."""
    return _verdict(stats.paired_interval(values), rule, bound)


def _verdict(iv: stats.Interval, rule: str, bound: float) -> str:
    if rule not in ("above", "at most"):
        raise ValueError(f"rule must be 'above' or 'at most', got {rule!r}")
    if not math.isfinite(iv.low):
        return NOT_RESOLVED
    above, below = iv.low > bound, iv.high < bound
    if rule == "above":
        return SUPPORTED if above else CONTRADICTED if below else NOT_RESOLVED
    return SUPPORTED if iv.high <= bound else CONTRADICTED if above else NOT_RESOLVED


def cell(claim: Claim, scale: str) -> str:
    """One scale's verdict with the evidence it rests on: mean, interval and n, or why there is none."""
    ev = evidence(claim.notebook, scale).get(claim.quantity)
    if ev is None:
        return "no reference run"
    values = shown_values(ev)
    iv = stats.paired_interval(values)
    digits = ev.row.get("digits", 1)
    interval = f"[{iv.low:.{digits}f}, {iv.high:.{digits}f}]" if math.isfinite(iv.low) else "no interval"
    return f"**{_verdict(iv, claim.rule, claim.bound)}**: {iv.mean:.{digits}f}, {interval} (n = {len(values)})"


def claims_table() -> str:
    lines = ["| paper | claim (abstract) | tested here as | lab scale | full scale |", "|---|---|---|---|---|"]
    lines += [f"| {c.paper} | {c.claim} | {c.reading} | {cell(c, 'lab')} | {cell(c, 'full')} |" for c in CLAIMS]
    lines += ["", "Mean over the reference seeds in the tested quantity's unit (points, or percent), its 95% interval "
              "(Student t), n seeds. One seed gives no interval and so never a verdict. Each quantity's row in the key "
              "numbers below has the per-seed values and tests."]
    return "\n".join(lines)
