"""Comparing a compressed model's task result with the stored dense baseline, item by item."""

from __future__ import annotations

from dataclasses import dataclass, field

from kick_checks.baselines import UPDATE_HINT, Baseline
from kick_checks.paired_stats import PairedTest, paired_test
from kick_checks.tasks.base import ItemOutcome, TaskResult, aggregate

DEFAULT_TOLERANCE = 0.05
SHOWN_LOST_ITEMS = 5


@dataclass(frozen=True)
class LostItem:
    id: str
    dense_prediction: str
    compressed_prediction: str


@dataclass
class Comparison:
    """Dense vs compressed on the items both have. Only a loss can fail (the gate is one-sided)."""

    task: str
    metric: str
    dense: float
    compressed: float
    n: int
    tolerance: float
    spec_label: str
    baseline_path: str
    lost: list[LostItem] = field(default_factory=list)
    gained: int = 0
    higher_is_better: bool = True
    problems: dict[str, int] = field(default_factory=dict)
    categories: dict[str, tuple[float, float]] = field(default_factory=dict)  # dense, compressed per category
    test: PairedTest | None = None  # McNemar (0/1 scores) or paired bootstrap (graded), one-sided for a loss
    gate: str = "threshold"  # or "significant": fail only when the loss is also statistically significant
    tolerance_kind: str = "relative"  # or "absolute" (drop in metric units) or "recovery" (compressed / dense)

    @property
    def relative_drop(self) -> float:
        """Fraction of the dense score that was lost (negative when the compressed model did better). For a
        lower-is-better metric (perplexity) the loss is the relative rise."""
        if self.dense <= 0:
            return 0.0
        change = (self.dense - self.compressed) / self.dense
        return change if self.higher_is_better else -change

    @property
    def recovery(self) -> float:
        """Compressed as a fraction of dense (for lower-is-better metrics, dense / compressed)."""
        numerator, denominator = ((self.compressed, self.dense) if self.higher_is_better
                                  else (self.dense, self.compressed))
        return numerator / denominator if denominator else 1.0

    @property
    def absolute_drop(self) -> float:
        return (self.dense - self.compressed) if self.higher_is_better else (self.compressed - self.dense)

    @property
    def beyond_tolerance(self) -> bool:
        if self.tolerance_kind == "absolute":
            return self.absolute_drop > self.tolerance + 1e-12
        if self.tolerance_kind == "recovery":
            return self.recovery < self.tolerance - 1e-12
        return self.relative_drop > self.tolerance + 1e-12

    @property
    def tolerance_text(self) -> str:
        if self.tolerance_kind == "absolute":
            return f"absolute {self.tolerance:.3g}"
        if self.tolerance_kind == "recovery":
            return f"recovery >= {self.tolerance:.1%}"
        return f"{self.tolerance:.1%}"

    @property
    def passed(self) -> bool:
        if not self.beyond_tolerance:
            return True
        return self.gate == "significant" and self.test is not None and not self.test.significant_loss

    @property
    def possibly_stale(self) -> bool:
        """Far better than dense: more likely a baseline recorded under other conditions than a better model."""
        if self.relative_drop >= -max(0.05, 2 * self.tolerance if self.tolerance_kind == "relative" else 0.0):
            return False
        if self.test is None:
            return True
        low, high = self.test.interval  # of compressed - dense
        return low > 0 if self.higher_is_better else high < 0

    def summary_line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        loss = "drop" if self.higher_is_better else "rise"
        problems = "".join(f", {count} {name.replace('_', ' ')}" for name, count in self.problems.items())
        statistics = ""
        if self.test is not None:
            low, high = self.test.interval
            statistics = f", p={self.test.p_value:.2g}, 95% CI of change [{low:+.3f}, {high:+.3f}]"
        stale = " (far better than dense: is the baseline stale?)" if self.possibly_stale else ""
        return (
            f"{self.task}: {self.metric} dense {self.dense:.3f} -> {self.compressed:.3f} "
            f"({loss} {self.relative_drop:+.1%}, tolerance {self.tolerance_text}, n={self.n}{problems}{statistics}) "
            f"{verdict}{stale}"
        )

    def failure_message(self) -> str:
        lines = [
            f"{self.task} lost more than the tolerance under {self.spec_label}:",
            f"  {self.metric}: dense {self.dense:.3f} -> compressed {self.compressed:.3f} "
            f"(relative {'drop' if self.higher_is_better else 'rise'} {self.relative_drop:.1%}, absolute "
            f"{self.absolute_drop:.3g}, recovery {self.recovery:.1%}; tolerance {self.tolerance_text}) "
            f"on {self.n} items",
            f"  {len(self.lost)} items lost, {self.gained} gained; baseline {self.baseline_path}",
        ]
        if self.test is not None:
            lines.append(f"  {self.test.describe()}")
        if self.categories:
            lines.append("  by category: " + ", ".join(
                f"{name} {dense:.2f}->{compressed:.2f}" for name, (dense, compressed) in self.categories.items()))
        for item in self.lost[:SHOWN_LOST_ITEMS]:
            lines.append(
                f"  lost {item.id}: dense {item.dense_prediction!r} -> compressed {item.compressed_prediction!r}"
            )
        lines.append(
            "  if this loss is intended, raise the tolerance (--kick-tolerance TASK=VALUE or [tool.kick]); "
            f"if the dense model changed, re-record with {UPDATE_HINT}"
        )
        return "\n".join(lines)


def compare(
    baseline: Baseline,
    result: TaskResult,
    tolerance: float,
    spec_label: str,
    *,
    tolerance_kind: str = "relative",
    gate: str = "threshold",
    alpha: float = 0.05,
) -> Comparison:
    """Score both sides on the items they share and list the items the compressed model lost."""
    dense_items = baseline.by_id()
    shared = [item for item in result.items if item.id in dense_items]
    sign = 1.0 if result.higher_is_better else -1.0
    lost = [
        LostItem(item.id, dense_items[item.id].prediction, item.prediction)
        for item in shared
        if sign * item.score < sign * dense_items[item.id].score
    ]
    gained = sum(1 for item in shared if sign * item.score > sign * dense_items[item.id].score)
    count = len(shared)
    return Comparison(
        task=result.task,
        metric=result.metric,
        dense=aggregate(result.metric, [dense_items[item.id].score for item in shared]),
        compressed=aggregate(result.metric, [item.score for item in shared]),
        n=count,
        tolerance=tolerance,
        tolerance_kind=tolerance_kind,
        spec_label=spec_label,
        baseline_path=str(baseline.path),
        lost=lost,
        gained=gained,
        higher_is_better=result.higher_is_better,
        problems=result.problems,
        categories=_category_pairs(result.metric, [dense_items[item.id] for item in shared], shared),
        test=_paired_test(result, [dense_items[item.id].score for item in shared], [item.score for item in shared],
                          alpha),
        gate=gate,
    )


def _paired_test(result: TaskResult, dense: list[float], compressed: list[float], alpha: float) -> PairedTest | None:
    if len(dense) < 2:
        return None
    exp_mean = (lambda scores: aggregate(result.metric, scores)) if result.metric == "perplexity" else None
    return paired_test(dense, compressed, lower_is_better=not result.higher_is_better, aggregate=exp_mean,
                       alpha=alpha)


def _category_pairs(metric: str, dense: list[ItemOutcome], compressed: list[ItemOutcome]) -> dict:
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for dense_item, item in zip(dense, compressed):
        if item.category:
            pair = groups.setdefault(item.category, ([], []))
            pair[0].append(dense_item.score)
            pair[1].append(item.score)
    return {name: (aggregate(metric, d), aggregate(metric, c)) for name, (d, c) in sorted(groups.items())}
