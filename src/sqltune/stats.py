"""Paired comparisons of two models on the same questions: bootstrap CI and McNemar's test."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass
class PairedComparison:
    n: int
    before: float  # accuracy of A
    after: float  # accuracy of B
    delta: float  # after - before
    ci_low: float  # paired bootstrap 95 % CI of delta
    ci_high: float
    fixed: int  # wrong -> right
    broken: int  # right -> wrong
    p_value: float  # exact (binomial) McNemar test, two-sided

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def sentence(self, what: str = "exact") -> str:
        s = (f"{what}: {self.before:.1%} → {self.after:.1%} (Δ {self.delta:+.1%}, 95 % CI "
             f"[{self.ci_low:+.1%}, {self.ci_high:+.1%}], McNemar p = {self.p_value:.3g}; "
             f"{self.fixed} fixed, {self.broken} broken, n = {self.n})")
        return s


def paired_bootstrap_ci(a: list[bool], b: list[bool], iterations: int = 10_000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(b) - mean(a), resampling questions (pairs) together."""
    n = len(a)
    if n == 0:
        return (0.0, 0.0)
    diffs = [int(y) - int(x) for x, y in zip(a, b)]
    rng = random.Random(seed)
    stats = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(iterations))
    lo = stats[int((1 - level) / 2 * iterations)]
    hi = stats[min(iterations - 1, int((1 + level) / 2 * iterations))]
    return (lo, hi)


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of the discordant pairs at p = 1/2."""
    m = fixed + broken
    if m == 0:
        return 1.0
    k = min(fixed, broken)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2**m
    return min(1.0, 2 * tail)


def compare_paired(a: list[bool], b: list[bool], iterations: int = 10_000, seed: int = 0) -> PairedComparison:
    if len(a) != len(b):
        raise ValueError("paired comparison needs the same questions on both sides")
    n = len(a)
    fixed = sum(1 for x, y in zip(a, b) if not x and y)
    broken = sum(1 for x, y in zip(a, b) if x and not y)
    lo, hi = paired_bootstrap_ci(a, b, iterations, seed)
    before = sum(a) / n if n else 0.0
    after = sum(b) / n if n else 0.0
    return PairedComparison(n, before, after, after - before, lo, hi, fixed, broken, mcnemar_exact(fixed, broken))


def smallest_detectable(n: int) -> str:
    """Plain words on how little n paired questions can show."""
    if n == 0:
        return "no questions"
    # With n questions, one question is 1/n of accuracy; McNemar needs >= 6 one-sided discordant
    # pairs (all in one direction) before p < 0.05 two-sided.
    head = f"with {n} questions one question moves accuracy by {100 / n:.3g}%; McNemar's test cannot reach p < 0.05 "
    if n < 6:
        return head + "with fewer than 6 questions, whatever changes, so no difference here can be told from noise"
    return head + ("unless at least 6 questions change, all in the same direction, so differences of a few questions "
                   "are indistinguishable from noise")
