"""Comparing a compressed model's task result with the stored dense baseline, item by item."""

from __future__ import annotations

from dataclasses import dataclass, field

from kick_checks.errors import KickError
from kick_checks.gate.baselines import UPDATE_HINT, Baseline
from kick_checks.gate.noise_floor import NoiseFloor, counted_score
from kick_checks.gate.paired_stats import PairedTest, paired_test
from kick_checks.gate.planning import Plan, plan
from kick_checks.gate.tolerance import Tolerance
from kick_checks.tasks.protocol import ItemOutcome, Metric, TaskResult

SHOWN_LOST_ITEMS = 5


@dataclass(frozen=True)
class LostItem:
    id: str
    dense_prediction: str
    compressed_prediction: str
    unstable: bool = False  # its dense score moves under rounding too (lost beyond that range)


@dataclass
class Comparison:
    """Dense vs compressed on the items both have. Only a loss can fail (the gate is one-sided).

    ``compressed`` is the compressed model's score; ``counted`` is the score the gate judges: each item's change
    counted only beyond the dense model's noise floor (:mod:`kick_checks.gate.noise_floor`), so a flip that the
    dense model shows under rounding alone is never a loss. Without a noise floor the two are equal.

    An :class:`~kick_checks.gate.outcome.Outcome`, like :class:`~kick_checks.gate.store.Recorded`: both have
    ``task``, ``verdict``, ``passed``, ``line()`` and ``to_report()``.
    """

    task: str
    metric: Metric
    dense: float
    compressed: float
    n: int
    tolerance: Tolerance
    spec_label: str
    baseline_path: str
    lost: list[LostItem] = field(default_factory=list)
    gained: int = 0
    problems: dict[str, int] = field(default_factory=dict)
    categories: dict[str, tuple[float, float]] = field(default_factory=dict)  # dense, compressed per category
    test: PairedTest | None = None  # McNemar (0/1 scores) or paired bootstrap (graded), one-sided for a loss
    gate: str = "threshold"  # or "significant": fail only when the loss is also statistically significant
    result: TaskResult | None = None  # the compressed result compared
    #: --kick-recovery on a knowledge task: a kick_checks.recovery.outcome.RecoveryOutcome (summary(),
    #: message_lines(), to_report()); the gate module only shows it.
    knowledge_recovery: object | None = None
    counted: float | None = None  # None: no noise floor, the gate judges ``compressed``
    unstable: int = 0  # shared items whose dense score moves under rounding
    unstable_changed: int = 0  # of those, items whose compressed score differs from the recorded one
    noise_summary: str = ""  # what the noise floor was taken under
    plan: Plan | None = None  # what this gate can see at this n (0/1 scores only)
    side: str = "dense"  # what the compressed model is compared with: "dense", or "reference" (a reference run)

    @property
    def judged(self) -> float:
        """The compressed score the tolerance is applied to (see the class text)."""
        return self.compressed if self.counted is None else self.counted

    @property
    def higher_is_better(self) -> bool:
        return self.metric.higher_is_better

    @property
    def relative_drop(self) -> float:
        """Fraction of the dense score that was lost (negative when the compressed model did better). For a
        lower-is-better metric (perplexity) the loss is the relative rise."""
        return self._relative(self.judged)

    @property
    def raw_relative_drop(self) -> float:
        """The relative drop of the compressed score itself, before the noise floor."""
        return self._relative(self.compressed)

    def _relative(self, compressed: float) -> float:
        if self.dense <= 0:
            return 0.0
        change = (self.dense - compressed) / self.dense
        return change if self.higher_is_better else -change

    @property
    def recovery(self) -> float:
        """Compressed as a fraction of dense (for lower-is-better metrics, dense / compressed)."""
        numerator, denominator = ((self.judged, self.dense) if self.higher_is_better
                                  else (self.dense, self.judged))
        return numerator / denominator if denominator else 1.0

    @property
    def absolute_drop(self) -> float:
        return (self.dense - self.judged) if self.higher_is_better else (self.judged - self.dense)

    @property
    def beyond_tolerance(self) -> bool:
        return self.tolerance.exceeded(self)

    @property
    def passed(self) -> bool:
        if not self.beyond_tolerance:
            return True
        return self.gate == "significant" and self.test is not None and not self.test.significant_loss

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "fail"

    @property
    def possibly_stale(self) -> bool:
        """Far better than dense: more likely a baseline recorded under other conditions than a better model."""
        if self.relative_drop >= -self.tolerance.stale_margin:
            return False
        if self.test is None:
            return True
        low, high = self.test.interval  # of compressed - dense
        return low > 0 if self.higher_is_better else high < 0

    def line(self) -> str:
        """The one-line summary the terminal shows."""
        loss = "drop" if self.higher_is_better else "rise"
        problems = "".join(f", {count} {name.replace('_', ' ')}" for name, count in self.problems.items())
        statistics = ""
        if self.test is not None:
            low, high = self.test.interval
            statistics = f", p={self.test.p_value:.2g}, 95% CI of change [{low:+.3f}, {high:+.3f}]"
        stale = " (far better than dense: is the baseline stale?)" if self.possibly_stale else ""
        recovery = f"; {self.knowledge_recovery.summary()}" if self.knowledge_recovery is not None else ""
        change = f"{loss} {self.raw_relative_drop:+.1%}"
        if abs(self.raw_relative_drop - self.relative_drop) > 5e-4:
            change += f", {self.relative_drop:+.1%} beyond the noise floor"
        unstable = f", {self.unstable} unstable" if self.counted is not None else ", no noise floor"
        sees = f", {self.plan.summary()}" if self.plan is not None else ""
        said = self.plan.warning() if self.plan is not None else ""
        warning = f"\n  {self.task}: {said}" if said else ""
        return (
            f"{self.task}: {self.metric.name} {self.side} {self.dense:.3f} -> {self.compressed:.3f} "
            f"({change}, tolerance {self.tolerance.text}, n={self.n}{unstable}{sees}{problems}{statistics}) "
            f"{self.verdict_text()}{stale}{recovery}{warning}"
        )

    def verdict_text(self) -> str:
        """PASS / FAIL, saying so when a loss beyond the tolerance passes only because it is not significant."""
        if self.passed and self.beyond_tolerance:
            return f"PASS (loss not significant at alpha {self.test.alpha:g})"
        return self.verdict.upper()

    def failure_message(self) -> str:
        lines = [
            f"{self.task} lost more than the tolerance under {self.spec_label}"
            f"{'' if self.side == 'dense' else f' against the {self.side} ({self.baseline_path})'}:",
            f"  {self.metric.name}: {self.side} {self.dense:.3f} -> compressed {self.compressed:.3f} "
            f"(relative {'drop' if self.higher_is_better else 'rise'} {self.relative_drop:.1%}, absolute "
            f"{self.absolute_drop:.3g}, recovery {self.recovery:.1%}; tolerance {self.tolerance.text}) "
            f"on {self.n} items",
            f"  {len(self.lost)} items lost, {self.gained} gained; baseline {self.baseline_path}",
        ]
        if self.counted is not None:
            lines.append(f"  noise floor: {self.unstable} of {self.n} items change under rounding on the dense model "
                         f"({self.noise_summary}); {self.unstable_changed} of them differ here and count only beyond "
                         f"that range (compressed {self.compressed:.3f} counts as {self.counted:.3f})")
        else:
            lines.append("  this baseline has no noise floor, so every flip counts, rounding ones too: re-record it "
                         f"with {UPDATE_HINT}")
        if self.test is not None:
            lines.append(f"  {self.test.describe()}")
        if self.categories:
            lines.append("  by category: " + ", ".join(
                f"{name} {dense:.2f}->{compressed:.2f}" for name, (dense, compressed) in self.categories.items()))
        for item in self.lost[:SHOWN_LOST_ITEMS]:
            rounding = " (changes under rounding on the dense model too; lost beyond that)" if item.unstable else ""
            lines.append(
                f"  lost {item.id}: {self.side} {_excerpt(item.dense_prediction)!r} -> compressed "
                f"{_excerpt(item.compressed_prediction)!r}{rounding}"
            )
        if len(self.lost) > SHOWN_LOST_ITEMS:
            lines.append(f"  ... and {len(self.lost) - SHOWN_LOST_ITEMS} more lost items (all in --kick-json)")
        if self.result is not None and self.result.items and not any(item.prediction.strip()
                                                                      for item in self.result.items):
            lines.append(f"  every one of the {len(self.result.items)} compressed answers is empty")
        if self.knowledge_recovery is not None:
            lines.extend(self.knowledge_recovery.message_lines())
        lines.append(
            "  if this loss is intended, raise the tolerance (--kick-tolerance TASK=VALUE or [tool.kick]); "
            f"if the dense model changed, re-record with {UPDATE_HINT}"
        )
        return "\n".join(lines)

    def junit_properties(self) -> list[tuple[str, str]]:
        """What ``--junitxml`` records of the check."""
        return [
            ("kick_metric", self.metric.name), ("kick_dense", f"{self.dense:.6g}"),
            ("kick_compressed", f"{self.compressed:.6g}"), ("kick_relative_loss", f"{self.relative_drop:.6g}"),
            ("kick_tolerance", f"{self.tolerance.value:.6g}"), ("kick_tolerance_kind", self.tolerance.kind),
            ("kick_n", str(self.n)), ("kick_unstable", str(self.unstable)),
        ]

    def to_report(self) -> dict:
        """This outcome's entry in the JSON report."""
        entry = {
            "task": self.task,
            "verdict": self.verdict,
            "metric": self.metric.name,
            "higher_is_better": self.higher_is_better,
            "dense": self.dense,
            "compressed": self.compressed,
            "relative_loss": self.relative_drop,
            "raw_relative_loss": self.raw_relative_drop,
            "counted": self.judged,
            "noise_floor": None if self.counted is None else {"unstable": self.unstable,
                                                              "unstable_changed": self.unstable_changed,
                                                              "taken_under": self.noise_summary},
            "tolerance": self.tolerance.value,
            "tolerance_kind": self.tolerance.kind,
            "tolerance_text": self.tolerance.text,
            "n": self.n,
            "lost": [item.id for item in self.lost],
            "gained": self.gained,
            "baseline": self.baseline_path,
            "categories": {name: {"dense": d, "compressed": c} for name, (d, c) in self.categories.items()},
        }
        if self.plan is not None:
            entry["plan"] = self.plan.to_dict()
        if self.test is not None:
            entry["test"] = {"method": self.test.method, "p_value": self.test.p_value,
                             "interval": list(self.test.interval), "significant_loss": self.test.significant_loss}
        if self.result is not None:
            entry["result"] = self.result.to_dict()
        if self.knowledge_recovery is not None:
            entry["knowledge_recovery"] = self.knowledge_recovery.to_report()
        return entry


def compare(baseline: Baseline, result: TaskResult, tolerance: Tolerance, spec_label: str, *,
            gate: str = "threshold", alpha: float = 0.05) -> Comparison:
    """Compare ``result`` with a stored dense baseline (whose fingerprint the caller has checked)."""
    return compare_items(baseline.items, result, tolerance, spec_label, baseline_path=str(baseline.path), gate=gate,
                         alpha=alpha, noise=baseline.noise)


def compare_items(
    dense_items: list[ItemOutcome],
    result: TaskResult,
    tolerance: Tolerance,
    spec_label: str,
    *,
    baseline_path: str = "",
    gate: str = "threshold",
    alpha: float = 0.05,
    noise: NoiseFloor | None = None,
    dense_recorded: dict[str, float] | None = None,
) -> Comparison:
    """Score both sides on the items they share, each compressed item's change counted beyond the dense noise
    floor (when the baseline has one), and list the items the compressed model lost. A comparison on no shared
    item is an error, never a pass. With ``dense_recorded`` (each item's dense score) the items compared with are a
    reference run's, and the noise floor's ranges are taken around them (:meth:`NoiseFloor.band_around`)."""
    metric = result.metric
    dense_by_id = {item.id: item for item in dense_items}
    shared = [item for item in result.items if item.id in dense_by_id]
    if not shared:
        where = f"the baseline {baseline_path}" if baseline_path else "the dense result"
        raise KickError(
            f"{result.task}: none of this run's {len(result.items)} items is among the {len(dense_items)} items of "
            f"{where} (ids such as {_ids(result.items)} here, {_ids(dense_items)} there), so there is nothing to "
            f"compare: evaluate the data the baseline was recorded on, or re-record it with {UPDATE_HINT}"
        )
    sign = 1.0 if metric.higher_is_better else -1.0
    dense_scores = [dense_by_id[item.id].score for item in shared]
    compressed_scores = [item.score for item in shared]
    if noise is None:
        bands = [(recorded, recorded) for recorded in dense_scores]
    elif dense_recorded is None:
        bands = [noise.band(item.id, recorded) for item, recorded in zip(shared, dense_scores)]
    else:
        bands = [noise.band_around(item.id, dense_recorded.get(item.id, recorded), recorded)
                 for item, recorded in zip(shared, dense_scores)]
    counted_scores = [counted_score(recorded, score, band)
                      for recorded, score, band in zip(dense_scores, compressed_scores, bands)]
    unstable = [band[0] != band[1] for band in bands]
    lost = [
        LostItem(item.id, dense_by_id[item.id].prediction, item.prediction, moves)
        for item, recorded, counted, moves in zip(shared, dense_scores, counted_scores, unstable)
        if sign * counted < sign * recorded
    ]
    gained = sum(1 for recorded, counted in zip(dense_scores, counted_scores) if sign * counted > sign * recorded)
    return Comparison(
        task=result.task,
        metric=metric,
        dense=metric.aggregate(dense_scores),
        compressed=metric.aggregate(compressed_scores),
        n=len(shared),
        tolerance=tolerance,
        spec_label=spec_label,
        baseline_path=baseline_path,
        lost=lost,
        gained=gained,
        problems=result.problems,
        categories=_category_pairs(metric, [dense_by_id[item.id] for item in shared], shared),
        test=change_test(metric, dense_scores, counted_scores, alpha),
        gate=gate,
        result=result,
        counted=metric.aggregate(counted_scores) if noise is not None else None,
        unstable=sum(unstable),
        unstable_changed=sum(1 for moves, recorded, score in zip(unstable, dense_scores, compressed_scores)
                             if moves and score != recorded),
        noise_summary=", ".join(p.describe() for p in noise.perturbations) if noise is not None else "",
        plan=plan(dense_scores, [not moves for moves in unstable], tolerance, gate, alpha),
        side="dense" if dense_recorded is None else "reference",
    )


def _ids(items: list[ItemOutcome], shown: int = 3) -> str:
    return ", ".join(item.id for item in items[:shown]) + (", ..." if len(items) > shown else "") or "none"


def _excerpt(text: str, limit: int = 120) -> str:
    """A long answer shortened for a failure message (the whole answer is in the JSON report)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def change_test(metric: Metric, dense: list[float], compressed: list[float], alpha: float) -> PairedTest | None:
    """The paired test of a change in ``metric``: McNemar for 0/1 scores of a mean, else a paired bootstrap of the
    metric's own statistic, one-sided in the metric's direction of loss."""
    if len(dense) < 2:
        return None
    statistic = metric.aggregate if metric.statistic != "mean" else None
    return paired_test(dense, compressed, lower_is_better=not metric.higher_is_better, aggregate=statistic,
                       alpha=alpha)


def _category_pairs(metric: Metric, dense: list[ItemOutcome], compressed: list[ItemOutcome]) -> dict:
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for dense_item, item in zip(dense, compressed):
        if item.category:
            pair = groups.setdefault(item.category, ([], []))
            pair[0].append(dense_item.score)
            pair[1].append(item.score)
    return {name: (metric.aggregate(d), metric.aggregate(c)) for name, (d, c) in sorted(groups.items())}
