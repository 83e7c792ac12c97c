"""Two experiments side by side, task by task and item by item: what ``kick compare A B`` prints and gates on.

For each task both runs have, on the items both answered, the change from A to B is tested with the paired test
the gate uses (:func:`kick_checks.gate.comparison.change_test`: McNemar's exact test for 0/1 scores, a paired
bootstrap otherwise), one-sided for "B is worse". The items B lost and gained are listed with their texts
(question, gold, the dense answer where the dense items are known, A's and B's answers), grouped by category.
A task is left out, with the reason, when its data, prompt, decoding or scorer differ between the runs; two runs
of different models are not compared at all. When A is the dense model and its items are not known (an old
report whose baseline was re-recorded since), B's own comparison with dense, as its gate made it, is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kick_checks.experiments.store import Experiment, TaskRecord
from kick_checks.gate.baselines import TASK_FIELDS
from kick_checks.gate.comparison import change_test
from kick_checks.gate.paired_stats import is_binary, paired_test
from kick_checks.tasks.protocol import ItemOutcome


@dataclass(frozen=True)
class ItemChange:
    id: str
    category: str
    question: str
    gold: str
    a: str  # A's answer
    b: str
    dense: str | None = None  # the dense model's answer, where its items are known

    def line(self) -> str:
        dense = f"dense {self.dense!r} | " if self.dense is not None else ""
        question = f" {self.question!r}" if self.question else ""
        gold = f" gold {self.gold!r}:" if self.gold else ""
        return f"{self.id}{question}{gold} {dense}A {self.a!r} -> B {self.b!r}"


@dataclass
class TaskChange:
    task: str
    metric: str
    higher_is_better: bool
    a: float
    b: float
    n: int
    test: dict | None  # method, p_value, interval (of B - A), significant_loss
    lost: list[ItemChange] = field(default_factory=list)
    gained: list[ItemChange] = field(default_factory=list)
    gained_count: int = 0
    categories: dict[str, dict] = field(default_factory=dict)  # name -> a, b, lost, gained
    notes: list[str] = field(default_factory=list)  # shared items, recorded comparison

    @property
    def significant_loss(self) -> bool:
        return bool(self.test and self.test["significant_loss"])

    def line(self) -> str:
        statistics = ""
        if self.test is not None:
            low, high = self.test["interval"]
            statistics = (f"; {self.test['method']} p={self.test['p_value']:.2g}, 95% CI of B-A "
                          f"[{low:+.3f}, {high:+.3f}]")
        flag = " B WORSE" if self.significant_loss else ""
        return (f"{self.task}: {self.metric} A {self.a:.3f} -> B {self.b:.3f} ({self.b - self.a:+.3f}, n={self.n}, "
                f"{len(self.lost)} lost, {self.gained_count} gained{statistics}){flag}")

    def to_dict(self) -> dict:
        return {"task": self.task, "metric": self.metric, "higher_is_better": self.higher_is_better, "a": self.a,
                "b": self.b, "n": self.n, "test": self.test, "significant_loss": self.significant_loss,
                "lost": [vars(item) for item in self.lost], "gained": [vars(item) for item in self.gained],
                "gained_count": self.gained_count, "categories": self.categories, "notes": self.notes}


@dataclass
class ExperimentComparison:
    a: Experiment
    b: Experiment
    tasks: list[TaskChange]
    left_out: list[str]  # "task: why"
    alpha: float

    @property
    def worse(self) -> list[TaskChange]:
        return [task for task in self.tasks if task.significant_loss]

    def lines(self, show: int = 10) -> list[str]:
        lines = [f"A: {_name(self.a)} ({self.a.label}), B: {_name(self.b)} ({self.b.label}); model "
                 f"{self.a.model_label}"]
        for task in self.tasks:
            lines.append(task.line())
            lines += [f"  {note}" for note in task.notes]
            if task.categories:
                lines.append("  by category: " + ", ".join(
                    f"{name} {value['a']:.2f}->{value['b']:.2f} (-{value['lost']} +{value['gained']})"
                    for name, value in task.categories.items()))
            for what, items in (("lost", task.lost), ("gained", task.gained)):
                for category, group in _by_category(items[:show]).items():
                    lines.append(f"  {what} [{category or 'no category'}]:")
                    lines += [f"    {item.line()}" for item in group]
                if len(items) > show:
                    lines.append(f"  ... {len(items) - show} more {what} (--show N lists more)")
        lines += [f"left out {line}" for line in self.left_out]
        if self.worse:
            lines.append(f"B is significantly worse than A (one-sided p < {self.alpha:g}) on "
                         + ", ".join(f"{task.task} (p={task.test['p_value']:.2g})" for task in self.worse))
        else:
            lines.append(f"B is not significantly worse than A on any of the {len(self.tasks)} tasks compared "
                         f"(alpha {self.alpha:g})")
        return lines

    def to_dict(self) -> dict:
        return {"a": self.a.id, "b": self.b.id, "a_label": self.a.label, "b_label": self.b.label,
                "model": self.a.model, "alpha": self.alpha, "tasks": [task.to_dict() for task in self.tasks],
                "left_out": self.left_out, "worse": [task.task for task in self.worse]}


def _name(experiment: Experiment) -> str:
    """The report's path, relative to the working directory when it lies below it."""
    if experiment.path is None:
        return experiment.id
    try:
        return str(experiment.path.relative_to(Path.cwd()))
    except ValueError:
        return str(experiment.path)


def _by_category(items: list[ItemChange]) -> dict[str, list[ItemChange]]:
    groups: dict[str, list[ItemChange]] = {}
    for item in items:
        groups.setdefault(item.category, []).append(item)
    return dict(sorted(groups.items()))


def _change(item_a: ItemOutcome, item_b: ItemOutcome, dense: TaskRecord | None) -> ItemChange:
    dense_item = dense.items.get(item_a.id) if dense is not None else None
    return ItemChange(item_a.id, item_b.category or item_a.category, item_b.question or item_a.question,
                      item_b.gold or item_a.gold, item_a.prediction, item_b.prediction,
                      dense_item.prediction if dense_item is not None else None)


def _test_dict(test, alpha: float) -> dict | None:
    if test is None:
        return None
    return {"method": test.method, "p_value": test.p_value, "interval": list(test.interval),
            "significant_loss": test.significant_loss, "alpha": alpha}


def compare_tasks(a: TaskRecord, b: TaskRecord, alpha: float, dense: TaskRecord | None = None) -> TaskChange:
    """A's and B's items paired by id, on the items both have."""
    shared = [item_id for item_id in a.items if item_id in b.items]
    sign = 1.0 if a.metric.higher_is_better else -1.0
    lost, gained, categories = [], [], {}
    for item_id in shared:
        item_a, item_b = a.items[item_id], b.items[item_id]
        category = item_b.category or item_a.category
        counts = categories.setdefault(category, {"a": [], "b": [], "lost": 0, "gained": 0}) if category else None
        if counts is not None:
            counts["a"].append(item_a.score)
            counts["b"].append(item_b.score)
        if sign * item_b.score < sign * item_a.score:
            lost.append(_change(item_a, item_b, dense))
            if counts is not None:
                counts["lost"] += 1
        elif sign * item_b.score > sign * item_a.score:
            gained.append(_change(item_a, item_b, dense))
            if counts is not None:
                counts["gained"] += 1
    a_scores = [a.items[item_id].score for item_id in shared]
    b_scores = [b.items[item_id].score for item_id in shared]
    notes = []
    if len(shared) != len(a.items) or len(shared) != len(b.items):
        notes.append(f"compared on the {len(shared)} items both runs answered (A has {len(a.items)}, B "
                     f"{len(b.items)}: different --kick-limit samples or data)")
    return TaskChange(
        a.task, a.metric.name, a.metric.higher_is_better, a.metric.aggregate(a_scores), a.metric.aggregate(b_scores),
        len(shared), _test_dict(change_test(a.metric, a_scores, b_scores, alpha), alpha), lost, gained, len(gained),
        {name: {"a": a.metric.aggregate(value["a"]), "b": a.metric.aggregate(value["b"]), "lost": value["lost"],
                "gained": value["gained"]} for name, value in sorted(categories.items())},
        notes,
    )


def recorded_change(b: TaskRecord) -> TaskChange:
    """B's comparison with its dense baseline as B's own gate made it (A = dense, whose items are unknown)."""
    gate = b.gate
    test = dict(gate["test"]) if gate.get("test") else _recorded_mcnemar(b)
    lost = [ItemChange(item_id, item.category, item.question, item.gold, "(right in dense)", item.prediction)
            for item_id in gate.get("lost", []) if (item := b.items.get(item_id)) is not None]
    categories = {name: {"a": value["dense"], "b": value["compressed"], "lost": sum(1 for i in lost
                                                                                     if i.category == name),
                         "gained": 0} for name, value in gate.get("categories", {}).items()}
    return TaskChange(b.task, b.metric.name, b.metric.higher_is_better, float(gate["dense"]), float(b.score),
                      int(gate.get("n", len(b.items))), test, lost, [], int(gate.get("gained", 0)), categories,
                      [f"as B's gate compared it with dense ({gate.get('baseline', 'its baseline')}): the dense "
                       "items are not known here, so gained items are only counted and categories' lost counts "
                       "are B's"])


def _recorded_mcnemar(b: TaskRecord, alpha: float = 0.05) -> dict | None:
    """McNemar's test from the counts an old report kept (its gate's lost ids and gained count): the test
    depends on the 2x2 table only, which the dense and compressed scores and those counts determine."""
    gate, n = b.gate, int(b.gate.get("n", 0))
    if b.metric.statistic != "mean" or not b.metric.higher_is_better or n < 2 or not is_binary(
            [item.score for item in b.items.values()]):
        return None
    dense_right, lost, gained = round(float(gate["dense"]) * n), len(gate.get("lost", [])), int(gate.get("gained", 0))
    if dense_right - lost + gained != round(float(b.score) * n) or dense_right < lost:
        return None  # the counts do not add up: better no test than a wrong one
    both_right, wrong = dense_right - lost, n - dense_right - gained
    dense = [1.0] * both_right + [1.0] * lost + [0.0] * gained + [0.0] * wrong
    compressed = [1.0] * both_right + [0.0] * lost + [1.0] * gained + [0.0] * wrong
    return _test_dict(paired_test(dense, compressed, alpha=alpha), alpha)


def compare_experiments(a: Experiment, b: Experiment, alpha: float = 0.05,
                        dense: Experiment | None = None) -> ExperimentComparison:
    """Every task A and B share, compared (see the module text); ``dense`` supplies dense answers to show."""
    if a.model_key != b.model_key:
        raise ValueError(f"{a.id} and {b.id} are runs of different models")
    tasks, left_out = [], []
    for name in sorted(a.tasks.keys() | b.tasks.keys()):
        if name not in a.tasks or name not in b.tasks:
            left_out.append(f"{name}: only in {'A' if name in a.tasks else 'B'}")
            continue
        task_a, task_b = a.tasks[name], b.tasks[name]
        changed = [key for key in TASK_FIELDS
                   if task_a.fingerprint and task_b.fingerprint
                   and task_a.fingerprint.get(key) != task_b.fingerprint.get(key)]
        if changed:
            left_out.append(f"{name}: not comparable, its {', '.join(changed)} differ between the runs")
        elif task_a.items and task_b.items:
            shared = task_a.items.keys() & task_b.items.keys()
            if len(shared) < 2:
                left_out.append(f"{name}: the runs share {len(shared)} items, too few to compare")
                continue
            shown_dense = dense.tasks.get(name) if dense is not None and dense is not a else None
            tasks.append(compare_tasks(task_a, task_b, alpha, shown_dense))
        elif a.is_dense and task_b.gate.get("dense") is not None and task_b.gate.get("verdict") in ("pass", "fail"):
            tasks.append(recorded_change(task_b))
        else:
            left_out.append(f"{name}: no items for {'A' if not task_a.items else 'B'} ({task_a.note or task_b.note})")
    return ExperimentComparison(a, b, tasks, left_out, alpha)
