"""The exact binomial tail and the interval formulas behind McNemar's test (:mod:`kick_checks.gate.paired_stats`).

Pure functions of counts: the one-sided p-value of ``k`` losses among ``n`` changed items, Wilson's score interval
for one proportion, and Newcombe's square-and-add interval for the change in accuracy between two paired answers.
"""

from __future__ import annotations

import math
from statistics import NormalDist


def binomial_half_upper_tail(k: int, n: int) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, 1/2)``, accurate to about 1e-9 relative for n up to 10**5 and beyond.

    The sum runs over the short side of the distribution, where the terms fall from the first one on; it is
    accumulated relative to that first term (ratios ``C(n, j+1) / C(n, j)``, all <= 1, so nothing overflows) and
    only the first term goes through logs, so a p-value like 1e-300 neither underflows early nor loses digits.
    """
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    # Summing from k upwards is well behaved only above the mode; below it, use P(X >= k) = 1 - P(X >= n - k + 1).
    complement = 2 * k <= n
    start = n - k + 1 if complement else k
    log_first = math.lgamma(n + 1) - math.lgamma(start + 1) - math.lgamma(n - start + 1) - n * math.log(2.0)
    total = term = 1.0
    for j in range(start, n):
        term *= (n - j) / (j + 1)
        total += term
        if term < total * 1e-17:
            break
    tail = math.exp(log_first + math.log(total))
    return 1.0 - tail if complement else tail


def newcombe_paired_interval(
    both_right: int, losses: int, gains: int, both_wrong: int, confidence: float
) -> tuple[float, float]:
    """Newcombe's square-and-add interval for compressed accuracy - dense accuracy on a paired 2x2 table."""
    n = both_right + losses + gains + both_wrong
    dense_right = both_right + losses
    compressed_right = both_right + gains
    p_dense, p_compressed = dense_right / n, compressed_right / n
    low_dense, high_dense = wilson_interval(dense_right, n, confidence)
    low_compressed, high_compressed = wilson_interval(compressed_right, n, confidence)

    # The correlation between the two answers to an item; 0 when one side is constant (it is undefined there).
    margins = dense_right * (n - dense_right) * compressed_right * (n - compressed_right)
    phi = 0.0
    if margins:
        cross = both_right * both_wrong - losses * gains
        if cross > n / 2:
            phi = (cross - n / 2) / math.sqrt(margins)
        elif cross < 0:
            phi = cross / math.sqrt(margins)

    difference = p_compressed - p_dense
    below_compressed, above_compressed = p_compressed - low_compressed, high_compressed - p_compressed
    below_dense, above_dense = p_dense - low_dense, high_dense - p_dense
    lower = difference - math.sqrt(
        max(0.0, below_compressed**2 - 2 * phi * below_compressed * above_dense + above_dense**2)
    )
    upper = difference + math.sqrt(
        max(0.0, above_compressed**2 - 2 * phi * above_compressed * below_dense + below_dense**2)
    )
    return max(-1.0, lower), min(1.0, upper)  # only rounding can push them past +-1


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson's score interval for a proportion."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    shrink = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / shrink
    half_width = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / shrink
    return centre - half_width, centre + half_width
