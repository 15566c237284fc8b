"""Small, dependency-free statistics for accuracy: Wilson intervals and paired comparisons.

Paired tests run on the ids two runs share, so a fine-tuned model is compared with its
baseline question by question (McNemar's exact test and a seeded paired bootstrap of the
accuracy difference). Only numpy is used, so reports need no scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (no continuity correction).

    Returns ``(0.0, 1.0)`` when ``n == 0`` (nothing is known).

    >>> lo, hi = wilson_interval(8, 10)
    >>> round(lo, 4), round(hi, 4)
    (0.4902, 0.9433)
    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Clamp rounding noise so that 0/n and n/n give intervals that touch 0 and 1 exactly.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    ``b``: pairs right in the first run only; ``c``: right in the second only. Under the null
    hypothesis each discordant pair is a fair coin, so p = P(Binomial(b + c, 1/2) as extreme).

    >>> mcnemar_exact(0, 0)
    1.0
    >>> round(mcnemar_exact(1, 9), 6)
    0.021484
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be non-negative")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # Exact integer arithmetic: the float division happens once, on exact numbers.
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


@dataclass(frozen=True)
class PairedComparison:
    """Run A (baseline) against run B on shared items; ``diff`` is accuracy B minus A."""

    n: int
    acc_a: float
    acc_b: float
    diff: float
    ci_low: float
    ci_high: float
    #: Items right in A only / in B only (McNemar's discordant counts).
    a_only: int
    b_only: int
    p_value: float
    n_boot: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "acc_a": self.acc_a,
            "acc_b": self.acc_b,
            "diff": self.diff,
            "ci95": [self.ci_low, self.ci_high],
            "a_only": self.a_only,
            "b_only": self.b_only,
            "mcnemar_p": self.p_value,
            "n_boot": self.n_boot,
            "seed": self.seed,
        }


def paired_bootstrap_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_boot: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Percentile bootstrap CI of ``mean(b) - mean(a)``, resampling items (pairs) with replacement.

    Seeded: the same inputs and seed give the same interval.

    >>> diff, lo, hi = paired_bootstrap_ci([0, 0, 1, 1], [1, 1, 1, 1], n_boot=2000, seed=1)
    >>> diff
    0.5
    >>> 0.0 <= lo <= 0.5 <= hi <= 1.0
    True
    """
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.shape != xb.shape or xa.ndim != 1:
        raise ValueError("paired samples must be 1-D and of equal length")
    n = xa.size
    if n == 0:
        return 0.0, 0.0, 0.0
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    d = xb - xa
    diff = float(d.mean())
    rng = np.random.Generator(np.random.PCG64(seed))
    stats = np.empty(n_boot, dtype=np.float64)
    # Multinomial counts instead of index matrices keep memory at O(chunk * n) for large sets.
    chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))
    done = 0
    while done < n_boot:
        m = min(chunk, n_boot - done)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=m)
        stats[done : done + m] = counts @ d / n
        done += m
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return diff, float(lo), float(hi)


def paired_compare(
    a: Sequence[bool], b: Sequence[bool], *, n_boot: int = 10_000, seed: int = 0
) -> PairedComparison:
    """McNemar's exact test and the paired bootstrap CI for two aligned lists of correctness.

    >>> r = paired_compare([True, False, False, True], [True, True, True, True], n_boot=500)
    >>> r.a_only, r.b_only, r.diff
    (0, 2, 0.5)
    """
    if len(a) != len(b):
        raise ValueError("paired samples must have equal length")
    a_only = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    b_only = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    fa = [1.0 if x else 0.0 for x in a]
    fb = [1.0 if y else 0.0 for y in b]
    diff, lo, hi = paired_bootstrap_ci(fa, fb, n_boot=n_boot, seed=seed)
    n = len(a)
    return PairedComparison(
        n=n,
        acc_a=sum(fa) / n if n else 0.0,
        acc_b=sum(fb) / n if n else 0.0,
        diff=diff,
        ci_low=lo,
        ci_high=hi,
        a_only=a_only,
        b_only=b_only,
        p_value=mcnemar_exact(a_only, b_only),
        n_boot=n_boot,
        seed=seed,
    )
