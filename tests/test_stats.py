import math

import numpy as np
import pytest
from scipy import stats as st

from pruning import stats


def test_summary_is_mean_sample_sd_and_n():
    s = stats.summary([0.70, 0.72, 0.74])
    assert s.mean == pytest.approx(0.72) and s.sd == pytest.approx(0.02) and s.n == 3
    assert math.isnan(stats.summary([0.5]).sd)
    assert s.format(scale=100) == "72.0 +- 2.0 (n = 3)"
    with pytest.raises(ValueError):
        stats.summary([])


def test_paired_interval_matches_a_hand_computed_t_interval():
    d = [0.02, 0.03, 0.025]           # mean 0.025, sd 0.005, t(2, 0.975) = 4.3027
    iv = stats.paired_interval(d)
    half = 4.302652729911275 * 0.005 / math.sqrt(3)
    assert iv.mean == pytest.approx(0.025) and iv.low == pytest.approx(0.025 - half) and iv.high == pytest.approx(0.025 + half)
    assert iv.resolved and stats.verdict(iv) == "resolved"
    noisy = stats.paired_interval([0.02, -0.01, 0.01])
    assert noisy.low < 0 < noisy.high and stats.verdict(noisy) == "not resolved at this budget"


def test_one_seed_is_never_resolved_and_a_constant_is():
    one = stats.paired_interval([0.05])
    assert one.n == 1 and math.isinf(one.low) and not one.resolved and "[n/a]" in one.format()
    const = stats.paired_interval([0.01, 0.01, 0.01])
    assert const.low == pytest.approx(0.01) and const.resolved


def test_mcnemar_on_a_known_table():
    # 2x2 table: both right 80, A only 15, B only 5, both wrong 0 -> exact two-sided p = P(|X - 10| >= 5), X ~ B(20, 1/2)
    a = np.array([True] * 80 + [True] * 15 + [False] * 5)
    b = np.array([True] * 80 + [False] * 15 + [True] * 5)
    test = stats.mcnemar(a, b)
    assert (test.only_a, test.only_b, test.n) == (15, 5, 100)
    assert test.p == pytest.approx(0.04138946533203125)   # 2 * sum_{k<=5} C(20,k) / 2^20
    assert test.difference == pytest.approx(0.10)
    assert stats.mcnemar(a, a).p == 1.0                     # no discordant image: no evidence either way
    assert stats.mcnemar(b, a).p == pytest.approx(test.p)   # symmetric
    with pytest.raises(ValueError, match="same images"):
        stats.mcnemar(a, b[:50])


def test_paired_bootstrap_centres_on_the_difference_and_shrinks_with_agreement():
    rng = np.random.default_rng(0)
    a = rng.random(2000) < 0.8
    b = a.copy()
    flip = rng.choice(2000, 100, replace=False)
    b[flip] = ~b[flip]
    iv = stats.paired_bootstrap(a, b, seed=1)
    assert iv.low <= iv.mean <= iv.high and iv.mean == pytest.approx(a.mean() - b.mean())
    # the bootstrap sd agrees with the analytic one, sqrt(p_disc / n) approximately
    assert (iv.high - iv.low) / 3.92 == pytest.approx(math.sqrt(100 / 2000) / math.sqrt(2000), rel=0.2)
    same = stats.paired_bootstrap(a, a)
    assert same.low == same.high == 0.0


def test_scipy_binomtest_is_what_mcnemar_uses():
    assert stats.mcnemar([True] * 9 + [False], [False] * 9 + [True]).p == pytest.approx(st.binomtest(9, 10).pvalue)
