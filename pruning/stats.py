"""Uncertainty for the course's comparisons: how far apart two methods are, and whether that is more than noise.

Two kinds of noise decide whether "method A beats method B" is a finding:

* **between runs** (another seed draws other fine-tuning batches, other random channels): each seed gives one
  paired difference ``d_s = acc_A(s) - acc_B(s)``, and :func:`paired_interval` puts a Student-t 95% interval
  around their mean (eq. S1 below);
* **within a run** (a finite test set): both models saw the same test images, so only the images on which they
  *disagree* carry information; :func:`mcnemar` is the exact test on those (eq. S2), :func:`paired_bootstrap`
  an interval for the accuracy difference from resampling the images.

A comparison is **resolved** when its interval excludes zero (:func:`verdict`), otherwise it is
"not resolved at this budget". This module uses numpy and scipy only, so it serves notebooks, tools and tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as st

RESOLVED = "resolved"
NOT_RESOLVED = "not resolved at this budget"


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (ddof = 1; ``nan`` for one value) and the number of values."""

    mean: float
    sd: float
    n: int

    def format(self, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
        """``"79.4 +- 0.6 (n = 3)"``, with every number multiplied by ``scale`` (100 for fractions shown in %)."""
        sd = "" if self.n < 2 else f" +- {self.sd * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f}{unit}{sd} (n = {self.n})"


def summary(values: Sequence[float]) -> Summary:
    """Mean +- sd over seeds, with n."""
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        raise ValueError("summary() needs at least one value")
    return Summary(float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan, int(x.size))


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence interval ``[low, high]`` over ``n`` values."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    @property
    def resolved(self) -> bool:
        """True when the interval excludes zero."""
        return self.low > 0 or self.high < 0

    def format(self, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
        """``"+1.2 [-0.3, +2.7] (n = 3)"``; an interval that cannot be computed (one value) prints as ``[n/a]``."""
        bounds = (f"[{self.low * scale:+.{digits}f}, {self.high * scale:+.{digits}f}]" if math.isfinite(self.low)
                  else "[n/a]")
        return f"{self.mean * scale:+.{digits}f}{unit} {bounds} (n = {self.n})"


def paired_interval(differences: Sequence[float], confidence: float = 0.95) -> Interval:
    """Student-t interval for the mean of paired differences ``d_s`` (one per seed):

        mean(d) +- t_{n-1, (1+confidence)/2} * sd(d) / sqrt(n)                      (S1)

    With one difference there is no spread to estimate: the interval is infinite (never resolved). With zero spread
    (a deterministic quantity) it shrinks to the mean."""
    d = np.asarray(list(differences), dtype=float)
    if d.size == 0:
        raise ValueError("paired_interval() needs at least one difference")
    mean = float(d.mean())
    if d.size < 2:
        return Interval(mean, -math.inf, math.inf, 1, confidence)
    half = float(st.t.ppf((1 + confidence) / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return Interval(mean, mean - half, mean + half, int(d.size), confidence)


@dataclass(frozen=True)
class McNemar:
    """The exact McNemar test on per-image correctness of two models on the same images.

    ``only_a``: images A gets right and B wrong; ``only_b``: the reverse; ``p``: two-sided exact p-value."""

    only_a: int
    only_b: int
    n: int
    p: float

    @property
    def difference(self) -> float:
        """acc_A - acc_B, which only the discordant images decide: (only_a - only_b) / n."""
        return (self.only_a - self.only_b) / self.n

    def as_dict(self) -> dict:
        return {"only_a": self.only_a, "only_b": self.only_b, "n": self.n, "p": self.p}


def mcnemar(correct_a, correct_b) -> McNemar:
    """Exact McNemar test (S2). Images both models get right, or both wrong, say nothing about which is better; among
    the ``b + c`` discordant images, under "equally accurate" each is A's with probability 1/2, so

        p = P(|Binomial(b + c, 1/2) - (b + c)/2| >= |b - (b + c)/2|)                (S2)

    (``scipy.stats.binomtest``, two-sided). ``correct_a`` and ``correct_b`` are boolean sequences over the same
    images, in the same order."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"mcnemar() needs two 1-D correctness vectors over the same images, got {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if only_a + only_b == 0 else float(st.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return McNemar(only_a, only_b, int(a.size), p)


def paired_bootstrap(correct_a, correct_b, resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap interval for acc_A - acc_B, resampling the *images* (both models keep their pairing)."""
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_bootstrap() needs two 1-D vectors over the same images, got {a.shape} and {b.shape}")
    d = a - b
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(float(d.mean()), float(low), float(high), int(d.size), confidence)


def verdict(interval: Interval) -> str:
    """``"resolved"`` when the interval excludes zero, else ``"not resolved at this budget"``."""
    return RESOLVED if interval.resolved else NOT_RESOLVED
