"""Gating against a reference run: a previous release, or another method at the same sparsity.

A pruner's author rarely asks "is this as good as dense?" (at 50% on a small model nothing is); they ask "is v2
no worse than v1?" or "no worse than Wanda at 50%?". ``--kick-record-reference DIR`` writes each task's
compressed result, with what produced it, as ``DIR/<task>.json``; ``--kick-reference PATH`` (such a folder, or a
``--kick-json`` report) then gates a later run against it: paired on the shared items, one-sided, with the same
tolerance, statistics, dense noise floor and planned-statistics lines as the dense gate. The dense comparison is
still made and shown beside it, for context.

A reference is refused, with one line naming what differs, when it was made under another model (file, revision,
dtype), data, prompt, decoding or scorer, or on another kind of device: its answers would not be comparable. Other
differences of the numerical environment (CPU kernels, threads, versions) are left to the dense noise floor, whose
ranges are carried around the reference's scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kick_checks.atomic import write_text_atomically
from kick_checks.errors import KickError
from kick_checks.gate.baselines import MODEL_FIELDS, TASK_FIELDS, fingerprint_changes
from kick_checks.gate.comparison import Comparison
from kick_checks.tasks.protocol import ItemOutcome, TaskResult

REFERENCE_SCHEMA = 1
#: Environment fields that make a reference incomparable (the rest are reported only).
STRICT_ENVIRONMENT = ("device", "dtype")


@dataclass(frozen=True)
class ReferenceTask:
    """One task of a reference run: its items and everything that produced them."""

    task: str
    items: list[ItemOutcome]
    fingerprint: dict  # the task's fingerprint, with "model" (the reference's model fingerprint)
    environment: dict
    label: str  # the reference's compression, e.g. "wanda 50% unstructured"
    path: Path

    def refusal(self, model_fingerprint: dict, task_fingerprint: dict, environment: dict,
                before_model: bool = False) -> str | None:
        """One line naming what makes this reference incomparable with the run, or None. ``before_model``: only
        the model fields known before it loads are compared (at session start)."""
        current = {"model": model_fingerprint, **{key: task_fingerprint.get(key) for key in TASK_FIELDS}}
        model_fields = tuple(key for key in MODEL_FIELDS if key in model_fingerprint) if before_model else MODEL_FIELDS
        changes = fingerprint_changes(self.fingerprint, current, () if before_model else TASK_FIELDS, model_fields)
        changes += [f"{key}: {self.environment.get(key)!r} -> {environment.get(key)!r}"
                    for key in STRICT_ENVIRONMENT
                    if not before_model and self.environment.get(key) != environment.get(key)]
        if not changes:
            return None
        return (f"the reference {self.path} ({self.label}) for {self.task} was made under other settings "
                f"({'; '.join(changes)}): record a reference with this model and these settings, or gate against "
                "the dense baseline alone")


@dataclass
class Reference:
    """A reference run, read from a ``--kick-record-reference`` folder or a ``--kick-json`` report."""

    path: Path
    tasks: dict[str, ReferenceTask] = field(default_factory=dict)

    def task(self, key: str) -> ReferenceTask:
        if key not in self.tasks:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise KickError(f"the reference {self.path} has no result for {key} (it has {known}): record one with "
                            f"--kick-record-reference, or deselect the task")
        return self.tasks[key]


def _items(rows: list[dict]) -> list[ItemOutcome]:
    return [ItemOutcome(str(row["id"]), float(row["score"]), str(row.get("prediction", "")),
                        str(row.get("category", ""))) for row in rows]


def read_reference(path: Path) -> Reference:
    """Read a reference folder (``<task>.json`` files) or a ``--kick-json`` report; a problem is one line."""
    path = Path(path)
    reference = Reference(path)
    try:
        if path.is_dir():
            for file in sorted(path.glob("*.json")):
                document = json.loads(file.read_text(encoding="utf-8"))
                if document.get("reference_schema") != REFERENCE_SCHEMA:
                    raise KickError(f"{file} is not a reference written by --kick-record-reference")
                fingerprint = {**document["result"]["fingerprint"], "model": document["model"]}
                reference.tasks[document["task"]] = ReferenceTask(
                    document["task"], _items(document["result"]["items"]), fingerprint,
                    document.get("environment", {}), document.get("label", "?"), file)
        elif path.is_file():
            document = json.loads(path.read_text(encoding="utf-8"))
            for entry in document["tasks"]:
                if "result" not in entry:
                    continue  # a recorded baseline in an update run: not a compressed result
                fingerprint = {**entry["result"]["fingerprint"], "model": document["model"]}
                reference.tasks[entry["task"]] = ReferenceTask(
                    entry["task"], _items(entry["result"]["items"]), fingerprint,
                    document.get("environment", {}), document.get("spec_label", "?"), path)
        else:
            raise KickError(f"--kick-reference {path} does not exist: give a folder written by "
                            "--kick-record-reference or a --kick-json report")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise KickError(f"--kick-reference {path} is not a readable reference ({type(error).__name__}: {error}): "
                        "give a folder written by --kick-record-reference or a --kick-json report") from None
    if not reference.tasks:
        raise KickError(f"--kick-reference {path} holds no task result: record one with --kick-record-reference")
    return reference


def write_reference(folder: Path, result: TaskResult, model_fingerprint: dict, environment: dict,
                    label: str) -> Path:
    """Write one task's result as a reference, atomically."""
    document = {
        "reference_schema": REFERENCE_SCHEMA,
        "task": result.task,
        "label": label,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model_fingerprint,
        "environment": environment,
        "result": result.to_dict(),
    }
    return write_text_atomically(Path(folder) / f"{result.task}.json",
                                 json.dumps(document, indent=1, ensure_ascii=False) + "\n")


@dataclass
class ReferenceComparison:
    """The verdict against a reference run, with the dense comparison beside it (an
    :class:`~kick_checks.gate.outcome.Outcome`)."""

    task: str
    against: Comparison  # this run against the reference: the verdict
    dense: Comparison  # this run against the dense baseline: context
    label: str

    @property
    def passed(self) -> bool:
        return self.against.passed

    @property
    def verdict(self) -> str:
        return self.against.verdict

    def line(self) -> str:
        first, _, rest = self.against.line().partition("\n")
        head = first.replace(f"{self.task}: ", f"{self.task}: against reference {self.label}: ", 1)
        dense = f"{self.dense.metric.name} dense {self.dense.dense:.3f} -> {self.dense.compressed:.3f}"
        return f"{head} [vs dense: {dense}, drop {self.dense.raw_relative_drop:+.1%}]" + (f"\n{rest}" if rest else "")

    def failure_message(self) -> str:
        return (f"{self.against.failure_message()}\n  the reference is {self.label}; against the dense baseline: "
                f"{self.dense.line().splitlines()[0]}")

    def junit_properties(self) -> list[tuple[str, str]]:
        return [(f"{name}_reference" if name in ("kick_dense", "kick_relative_loss") else name, value)
                for name, value in self.against.junit_properties()] + [
                    ("kick_dense", f"{self.dense.dense:.6g}")]

    def to_report(self) -> dict:
        entry = self.dense.to_report()
        entry.update(verdict=self.verdict, reference={"label": self.label, "path": self.against.baseline_path,
                                                      **{key: value for key, value in self.against.to_report().items()
                                                         if key not in ("result", "task")}})
        return entry

