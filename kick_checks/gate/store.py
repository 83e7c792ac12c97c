"""A session's baselines: where they are read and written, checked before any model work, recorded or compared.

:class:`BaselineStore` does the two things a kick check does with a task result, ``record`` (update mode) and
``compare`` (gate mode), and returns an outcome (:class:`Recorded` or
:class:`~kick_checks.gate.comparison.Comparison`); both have ``task``, ``verdict``, ``passed``, ``line()`` and
``to_report()``. :meth:`BaselineStore.prepare` runs at session start, before the model is loaded: it cleans what
interrupted writes left, checks that an update can write, and reads every baseline the selected tests will compare
against, so a missing, damaged or mismatched baseline fails in a second instead of after the compressed run.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from kick_checks.atomic import remove_stale_temporaries
from kick_checks.errors import KickError
from kick_checks.gate.baselines import (
    MODEL_FIELDS,
    UPDATE_HINT,
    Baseline,
    baseline_fingerprint,
    baseline_path,
    fingerprint_changes,
    read_baseline,
    write_baseline,
)
from kick_checks.gate.comparison import Comparison, compare
from kick_checks.gate.noise_floor import NoiseFloor
from kick_checks.gate.tolerance import Tolerance
from kick_checks.tasks.protocol import TaskResult

log = logging.getLogger("kick_checks")
#: What ``--kick-update-sample`` may say when an update holds fewer items than the baseline it would replace.
SAMPLE_UPDATES = ("refuse", "merge", "replace")


@dataclass
class Recorded:
    """A baseline written in update mode (an :class:`~kick_checks.gate.outcome.Outcome`)."""

    task: str
    path: Path
    score: float
    n: int
    previous: float | None
    previous_n: int | None = None
    changes: list[str] = field(default_factory=list)  # what differs from the baseline this one replaced
    result: TaskResult | None = None
    noise: NoiseFloor | None = None
    verdict: str = "recorded"
    passed: bool = True

    def line(self) -> str:
        before = "new" if self.previous is None else f"was {self.previous:.3f} on {self.previous_n} items"
        changed = f"; {', '.join(self.changes)}" if self.changes else ""
        floor = f", {self.noise.summary()}" if self.noise is not None else ", no noise floor"
        return (f"{self.task}: recorded dense {self.score:.3f} on {self.n} items{floor} ({before}{changed}) "
                f"-> {self.path}")

    def failure_message(self) -> str:
        return self.line()

    def junit_properties(self) -> list[tuple[str, str]]:
        return [("kick_recorded", f"{self.score:.6g}"), ("kick_n", str(self.n))]

    def to_report(self) -> dict:
        entry = {"task": self.task, "verdict": self.verdict, "dense": self.score, "n": self.n,
                 "baseline": str(self.path), "noise_floor": self.noise.to_dict() if self.noise else None}
        if self.result is not None:
            entry.update(metric=self.result.metric.name, higher_is_better=self.result.higher_is_better,
                         result=self.result.to_dict())
        return entry


def baseline_diff(old: Baseline, new_items: dict, fingerprint_change: list[str]) -> list[str]:
    """What a re-recorded baseline changes: fingerprint fields, and items whose score moved, appeared or went."""
    old_items = old.by_id()
    moved = sum(1 for key in old_items.keys() & new_items.keys() if old_items[key].score != new_items[key].score)
    added, removed = len(new_items.keys() - old_items.keys()), len(old_items.keys() - new_items.keys())
    return fingerprint_change + [f"{count} items {what}" for count, what in (
        (moved, "changed score"), (added, "added"), (removed, "removed")) if count]


def merged_noise(old: NoiseFloor | None, new: NoiseFloor | None, kept_ids: set[str]) -> NoiseFloor | None:
    """The noise floor of a merged update: the refreshed items' noise from ``new``, the ``kept_ids`` items' from
    ``old``. Unless both were taken under the same perturbations, the merged baseline has none rather than a
    partial one."""
    if old is None or new is None or [p.name for p in old.perturbations] != [p.name for p in new.perturbations]:
        return None
    kept = {item_id: noise for item_id, noise in old.items.items() if item_id in kept_ids}
    return replace(new, items={**kept, **new.items})


class BaselineStore:
    """Baselines of one model (``alias``) under a session's settings.

    ``directory`` is the configured folder (``--kick-baselines-dir``), else ``<root>/baselines``; reading falls back
    to ``shipped`` when neither exists. ``update`` re-records every baseline, ``update_missing`` only absent ones;
    ``sample_update`` says what an update with fewer items than the stored baseline does (see
    :data:`SAMPLE_UPDATES`).
    """

    def __init__(self, alias: str, directory: Path | None, root: Path, shipped: Path, *, update: bool = False,
                 update_missing: bool = False, sample_update: str = "refuse") -> None:
        self.alias = alias
        #: The update command this store's messages name, with the user's folder when one was given.
        self.update_hint = UPDATE_HINT + (f" --kick-baselines-dir {directory}" if directory is not None else "")
        self.write_dir = directory if directory is not None else root / "baselines"
        self.read_dir = self.write_dir if directory is not None or self.write_dir.is_dir() else shipped
        self.update, self.update_missing, self.sample_update = update, update_missing, sample_update

    def reading_path(self, task_key: str) -> Path:
        return baseline_path(self.read_dir, self.alias, task_key)

    def writing_path(self, task_key: str) -> Path:
        return baseline_path(self.write_dir, self.alias, task_key)

    def records(self, task_key: str) -> bool:
        """Whether this session records ``task_key``'s baseline rather than compares against it."""
        return self.update or (self.update_missing and not self.writing_path(task_key).is_file())

    # -- before the model ---------------------------------------------------------------------------------
    def prepare(self, expected: dict[str, dict], model_fingerprint: dict, limit: int | None = None) -> list[str]:
        """Check the baselines ``expected`` names (task key -> the fingerprint fields known before the model runs)
        against ``model_fingerprint`` (the fields known before loading). Raises one :class:`KickError` listing every
        baseline that cannot be used; returns notes on stale temporary files it removed."""
        notes = [f"removed {path}, left by an interrupted baseline write"
                 for folder in {self.write_dir / self.alias, self.read_dir / self.alias}
                 for path in remove_stale_temporaries(folder)]
        problems = []
        if any(self.records(key) for key in expected):
            problems += self._unwritable()
        for key, task_fingerprint in expected.items():
            if self.records(key):
                problems += self._refused_sample(key, limit)
                continue
            try:
                baseline = read_baseline(self.reading_path(key), self.update_hint)
            except KickError as error:
                problems.append(str(error))
                continue
            current = baseline_fingerprint(model_fingerprint, task_fingerprint)
            known_model = tuple(name for name in MODEL_FIELDS if name in model_fingerprint)
            changes = fingerprint_changes(baseline.fingerprint, current, tuple(task_fingerprint), known_model,
                                          dtypes=baseline.dtypes)
            if changes:
                problems.append(self._mismatch(baseline.path, changes))
        if problems:
            count = f"{len(problems)} baselines cannot be used" if len(problems) > 1 else "a baseline cannot be used"
            raise KickError(f"{count}, so nothing was run:\n  " + "\n  ".join(problems))
        return notes

    def _unwritable(self) -> list[str]:
        folder = self.write_dir / self.alias
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=f".write-check.{os.getpid()}-", suffix=".tmp"):
                pass
        except OSError as error:
            return [f"cannot write baselines to {folder} ({error.strerror or error}): make the folder writable, or "
                    "record into another with --kick-baselines-dir"]
        return []

    def _refused_sample(self, key: str, limit: int | None) -> list[str]:
        path = self.writing_path(key)
        if limit is None or self.sample_update != "refuse" or not path.is_file():
            return []
        try:
            stored = read_baseline(path)
        except KickError:
            return []
        return [self._shrink_message(path, stored.n, limit)] if stored.n > limit else []

    @staticmethod
    def _shrink_message(path: Path, stored: int, new: int) -> str:
        return (f"{path}: the stored baseline has {stored} items and this run {new} (--kick-limit): updating would "
                f"shrink it; rerun without --kick-limit, or pass --kick-update-sample merge (refresh those {new} "
                f"items in it) or --kick-update-sample replace (write a {new}-item baseline)")

    def _mismatch(self, path: Path, changes: list[str]) -> str:
        return (f"baseline {path} was recorded under other settings ({'; '.join(changes)}): re-record it with "
                f"{self.update_hint} or run with the recorded settings")

    # -- after the task ran -------------------------------------------------------------------------------
    def record(self, result: TaskResult, model_fingerprint: dict, environment: dict | None = None,
               noise: NoiseFloor | None = None) -> Recorded:
        """Write ``result`` as the dense baseline with its environment and noise floor, atomically; never shrink a
        stored one unless told to."""
        path = self.writing_path(result.task)
        old, existed = None, path.is_file()
        if existed:
            try:
                old = read_baseline(path)
            except KickError:
                old = None
        fingerprint_change = [] if old is None else fingerprint_changes(
            old.fingerprint, baseline_fingerprint(model_fingerprint, result.fingerprint))
        if old is not None and old.n > result.n:
            if self.sample_update == "refuse":
                raise KickError(self._shrink_message(path, old.n, result.n))
            if self.sample_update == "merge":
                if fingerprint_change:
                    raise KickError(f"{path}: cannot merge {result.n} items into a baseline recorded under other "
                                    f"settings ({'; '.join(fingerprint_change)}): record the full set instead")
                fresh = result.by_id()
                kept = {item.id for item in old.items} - set(fresh)
                merged = [fresh.pop(item.id, item) for item in old.items] + list(fresh.values())
                result = replace(result, items=merged)
                noise = merged_noise(old.noise, noise, kept)
        try:
            write_baseline(path, result, model_fingerprint, environment, noise)
        except OSError as error:
            raise KickError(f"cannot write the baseline {path} ({error.strerror or error}); the stored file is "
                            "unchanged: make the folder writable and rerun, or use --kick-baselines-dir") from None
        if old is None:
            changes = ["the old file was unreadable"] if existed else []
            return Recorded(result.task, path, result.score, result.n, None, None, changes, result, noise)
        return Recorded(result.task, path, result.score, result.n, old.score, old.n,
                        baseline_diff(old, result.by_id(), fingerprint_change), result, noise)

    def compare(self, result: TaskResult, model_fingerprint: dict, tolerance: Tolerance, spec_label: str, *,
                gate: str = "threshold", alpha: float = 0.05) -> Comparison:
        """Compare ``result`` with its dense baseline, which must have been recorded under the same settings."""
        baseline = read_baseline(self.reading_path(result.task), self.update_hint)
        changes = fingerprint_changes(baseline.fingerprint, baseline_fingerprint(model_fingerprint, result.fingerprint),
                                      dtypes=baseline.dtypes)
        if changes:
            raise KickError(self._mismatch(baseline.path, changes))
        return compare(baseline, result, tolerance, spec_label, gate=gate, alpha=alpha)

    def environments(self, task_keys: list[str]) -> dict[str, dict]:
        """The recorded environment of each readable baseline among ``task_keys`` that has one."""
        found = {}
        for key in task_keys:
            if self.records(key):
                continue
            try:
                environment = read_baseline(self.reading_path(key), self.update_hint).environment
            except KickError:
                continue
            if environment:
                found[key] = environment
        return found
