"""Wilson intervals, McNemar's exact test and the paired bootstrap against known values and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from sparkle_vlm.eval.stats import mcnemar_exact, paired_bootstrap_ci, paired_compare, wilson_interval


@pytest.mark.parametrize(
    ("k", "n"), [(0, 1), (1, 1), (0, 10), (3, 10), (8, 10), (10, 10), (57, 200), (199, 200)]
)
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(ci.low, abs=1e-9)
    assert hi == pytest.approx(ci.high, abs=1e-9)


def test_wilson_known_value_and_edges() -> None:
    # Textbook value: 8/10 -> (0.4902, 0.9433).
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


@pytest.mark.parametrize(("b", "c"), [(0, 0), (0, 1), (1, 9), (5, 5), (3, 12), (40, 25), (0, 30)])
def test_mcnemar_matches_scipy_binomtest(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else sps.binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


def test_mcnemar_known_value() -> None:
    # 1 vs 9 discordant pairs: 2 * (1 + 10) / 2**10.
    assert mcnemar_exact(1, 9) == 22 / 1024


def test_bootstrap_is_seeded_and_covers_the_difference() -> None:
    rng = np.random.default_rng(7)
    a = rng.random(300) < 0.4
    b = rng.random(300) < 0.6
    one = paired_bootstrap_ci(a, b, n_boot=2000, seed=3)
    assert one == paired_bootstrap_ci(a, b, n_boot=2000, seed=3)
    assert one != paired_bootstrap_ci(a, b, n_boot=2000, seed=4)
    diff, lo, hi = one
    assert diff == pytest.approx(b.mean() - a.mean())
    assert lo < diff < hi
    # The width is close to the normal approximation of a paired difference.
    d = b.astype(float) - a.astype(float)
    half = 1.96 * d.std(ddof=1) / np.sqrt(d.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)


def test_bootstrap_degenerate_inputs() -> None:
    assert paired_bootstrap_ci([1, 1, 0], [1, 1, 0], n_boot=100) == (0.0, 0.0, 0.0)
    assert paired_bootstrap_ci([], []) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1, 0], [1])


def test_paired_compare_counts_discordant_pairs() -> None:
    a = [True, True, False, False, True, False]
    b = [True, False, True, True, True, True]
    r = paired_compare(a, b, n_boot=500, seed=0)
    assert (r.n, r.a_only, r.b_only) == (6, 1, 3)
    assert r.acc_a == pytest.approx(0.5) and r.acc_b == pytest.approx(5 / 6)
    assert r.p_value == pytest.approx(mcnemar_exact(1, 3))
    assert r.ci_low <= r.diff <= r.ci_high
