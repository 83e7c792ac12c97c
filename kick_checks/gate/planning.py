"""What a gate can see at a run's n: how many items one tolerance is, and the smallest loss the paired test finds.

A verdict on few items can mean little either way. The threshold gate fails once the counted loss exceeds the
tolerance: on 17 right answers a 5% tolerance is 0.85 items, so one flipped answer fails the build (a
*hair-trigger* gate). The significant gate fails only when McNemar's exact test also finds the loss significant:
with no gains that needs at least ``b`` lost items, ``0.5**b < alpha`` (5 at alpha 0.05), so on few items it cannot
see a loss the size of the tolerance (a *blind* gate). :func:`plan` says both for a run, and which n would do.

The detectable drop is planned for the simplest loss: the compressed model loses a share ``q`` of the dense
model's right answers on stable items, independently, and gains none; the drop detected with ``POWER`` (80%) is
the smallest such ``q``. Gains (churn) only make a loss harder to see, so real gates need somewhat more. Like
TensorRT-LLM's accuracy tests, which derive their thresholds from alpha, beta (1 - power), the spread and n, this
is a plan made before the run; it is computed for 0/1 scores (exact match, accuracy) only. For graded scores the
bootstrap's power depends on the spread of each item's change, which is known only after the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kick_checks.gate.tolerance import Tolerance

POWER = 0.8


def losses_needed(alpha: float) -> int:
    """The fewest lost items (and no gains) McNemar's exact one-sided test calls significant at ``alpha``."""
    return max(1, math.floor(math.log(1 / alpha, 2)) + 1)


def _tail(trials: int, probability: float, at_least: int) -> float:
    """P(Binomial(trials, probability) >= at_least)."""
    if at_least <= 0:
        return 1.0
    if at_least > trials:
        return 0.0
    below = sum(math.comb(trials, k) * probability ** k * (1 - probability) ** (trials - k) for k in range(at_least))
    return max(0.0, 1.0 - below)


def detectable_share(right: int, alpha: float, power: float = POWER) -> float | None:
    """The smallest share of ``right`` dense-right items whose loss McNemar detects with ``power``; None when no
    share can be (fewer right items than the test needs)."""
    needed = losses_needed(alpha)
    if _tail(right, 1.0, needed) < power:
        return None
    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if _tail(right, middle, needed) < power else (low, middle)
    return high


def tolerance_items(tolerance: Tolerance, dense_mean: float, n: int) -> float:
    """How many net lost items one tolerance is, for 0/1 scores whose mean is ``dense_mean`` on ``n`` items."""
    if tolerance.kind == "absolute":
        return tolerance.value * n
    if tolerance.kind == "recovery":
        return (1 - tolerance.value) * dense_mean * n
    return tolerance.value * dense_mean * n


def _smallest_n(works, start: int) -> int | None:
    """The smallest n >= 1 for which ``works(n)`` holds (monotone), searched up to ten million."""
    high = max(start, 1)
    while not works(high):
        high *= 2
        if high > 10_000_000:
            return None
    low = high // 2
    while low + 1 < high:
        middle = (low + high) // 2
        low, high = (low, middle) if works(middle) else (middle, high)
    return high


@dataclass(frozen=True)
class Plan:
    """What the gate of one task can see: ``n`` stable items of which ``right`` the dense model got right."""

    n: int
    right: int
    tolerance: Tolerance
    gate: str
    alpha: float
    items: float  # net lost items one tolerance is
    detectable: float | None  # smallest share of right answers lost that the paired test detects with POWER

    @property
    def hair_trigger(self) -> bool:
        """The threshold gate fails on a single lost item."""
        return self.gate == "threshold" and self.items < 1

    @property
    def blind(self) -> bool:
        """The significant gate cannot detect a loss the size of the tolerance with ``POWER``."""
        return self.gate == "significant" and (self.detectable is None or self.detectable > self._tolerated_share)

    @property
    def _tolerated_share(self) -> float:
        return self.items / self.right if self.right else 0.0

    def needed_n(self) -> int | None:
        """The n (at the same dense score and stable share) at which the warning would go."""
        mean = self.right / self.n if self.n else 0.0
        if mean <= 0:
            return None
        if self.hair_trigger:
            return _smallest_n(lambda n: tolerance_items(self.tolerance, mean, n) >= 1, self.n)
        if self.blind:
            def sees(n: int) -> bool:
                share = detectable_share(round(mean * n), self.alpha)
                return share is not None and share <= tolerance_items(self.tolerance, mean, n) / (mean * n)
            return _smallest_n(sees, self.n)
        return None

    def summary(self) -> str:
        """The part of a summary line: ``one tolerance = 6.4 items`` or ``detects >= 19%``."""
        if self.gate == "threshold":
            return f"one tolerance = {self.items:.1f} items"
        if self.detectable is None:
            return f"detects no loss at n={self.n}"
        return f"detects a drop >= {self.detectable:.1%}"

    def warning(self) -> str:
        """One line when the gate is a hair-trigger or blind, else empty."""
        needed = self.needed_n()
        more = f"; n >= {needed} would do" if needed else ""
        if self.hair_trigger:
            return (f"hair-trigger: one lost item is more than the tolerance {self.tolerance.text} "
                    f"({self.right} right of {self.n} stable items){more}")
        if self.blind:
            seen = "no loss" if self.detectable is None else f"only a drop >= {self.detectable:.1%}"
            return (f"blind: at n={self.n} the paired test detects {seen} with {POWER:.0%} power, more than the "
                    f"tolerance {self.tolerance.text}{more}")
        return ""

    def to_dict(self) -> dict:
        return {"stable_n": self.n, "right": self.right, "tolerance_items": self.items, "power": POWER,
                "detectable_drop": self.detectable, "hair_trigger": self.hair_trigger, "blind": self.blind,
                "needed_n": self.needed_n(), "warning": self.warning()}


def plan(recorded: list[float], stable: list[bool], tolerance: Tolerance, gate: str, alpha: float) -> Plan | None:
    """The plan for 0/1 dense scores ``recorded`` (``stable`` marks the items the noise floor keeps); None for
    graded scores."""
    if any(score not in (0.0, 1.0) for score in recorded):
        return None
    n = sum(stable)
    right = sum(1 for score, kept in zip(recorded, stable) if kept and score == 1.0)
    total_right = sum(1 for score in recorded if score == 1.0)
    items = tolerance_items(tolerance, total_right / len(recorded), len(recorded)) if recorded else 0.0
    return Plan(n, right, tolerance, gate, alpha, items, detectable_share(right, alpha))
