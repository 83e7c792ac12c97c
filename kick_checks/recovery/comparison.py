"""``kick recover``: every recovery strategy on one compressed model, against the dense model under the same prompts.

For each knowledge task it evaluates, in memory (no baseline is read or written): the dense model plainly and
under each prompt strategy; then the compressed model (compressed as ``pytest -m kick`` compresses it, through the
compression cache) plainly and under every strategy. A prompt that helps the dense model as much as the compressed
one is not recovery, so the table shows both sides: the dense score under the strategy and the gap that is left.
LoRA is trained only for the compressed model; its dense reference is the plain dense score.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from compressors.progress import note
from kick_checks.atomic import write_text_atomically
from kick_checks.errors import KickError
from kick_checks.model.loading import load_model
from kick_checks.recovery import STRATEGIES, get_strategy
from kick_checks.recovery.accounting import Accounting, account, wilson_interval
from kick_checks.recovery.pools import recovery_task, supported_tasks
from kick_checks.recovery.session_hook import recovery_context
from kick_checks.session import KickSession
from kick_checks.settings import RunSettings
from kick_checks.tasks import ItemOutcome, TaskResult
from kick_checks.tasks.protocol import metric_from

#: Strategies that change only the input, so the dense model can be run under them too.
PROMPTING = ("prompt", "idp")


@dataclass
class StrategyRow:
    task: str
    strategy: str
    dense: float
    compressed: float
    dense_with: float | None  # the dense model under the same strategy (prompting strategies)
    compressed_with: float
    accounting: Accounting  # against the plain dense and compressed results
    cost: dict

    def to_dict(self) -> dict:
        return {"task": self.task, "strategy": self.strategy, "dense": self.dense, "compressed": self.compressed,
                "dense_with_strategy": self.dense_with, "compressed_with_strategy": self.compressed_with,
                "gap": self.dense - self.compressed,
                "gap_with_strategy": (self.dense if self.dense_with is None else self.dense_with)
                - self.compressed_with,
                **self.accounting.to_dict(), "cost": self.cost}


@dataclass
class RecoveryComparison:
    model: dict
    spec_label: str
    rows: list[StrategyRow] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # plain evaluations and each strategy, in all

    def to_dict(self) -> dict:
        return {"model": self.model, "spec_label": self.spec_label, "seconds": self.seconds,
                "rows": [row.to_dict() for row in self.rows], "totals": self.totals()}

    def totals(self) -> dict[str, dict]:
        """Per strategy, over all tasks: items lost, recovered (with its interval), broken, gained."""
        totals: dict[str, dict] = {}
        for row in self.rows:
            entry = totals.setdefault(row.strategy, {"lost": 0, "recovered": 0, "broken": 0, "gained": 0, "n": 0})
            for key in ("lost", "recovered", "broken", "gained"):
                entry[key] += len(getattr(row.accounting, key))
            entry["n"] += row.accounting.n
        for entry in totals.values():
            entry["recovered_fraction"] = entry["recovered"] / entry["lost"] if entry["lost"] else None
            entry["recovered_interval"] = list(wilson_interval(entry["recovered"], entry["lost"]))
        return totals

    def table(self) -> str:
        header = ("| task | strategy | dense | compressed | dense + strategy | compressed + strategy | gap -> gap "
                  "under strategy | lost | recovered (95% CI) | broken | gained | extra params | extra tokens/item | "
                  "seconds |")
        lines = [f"kick recover: {self.model.get('alias')} ({self.model.get('dtype')}), {self.spec_label}", "",
                 header, "|" + "---|" * 14]
        for row in self.rows:
            dense_with = "" if row.dense_with is None else f"{row.dense_with:.3f}"
            # The dense-compressed gap, plainly and under the strategy (LoRA: against the plain dense score).
            gap_with = (row.dense if row.dense_with is None else row.dense_with) - row.compressed_with
            lines.append(
                f"| {row.task} | {row.strategy} | {row.dense:.3f} | {row.compressed:.3f} | {dense_with} | "
                f"{row.compressed_with:.3f} | {row.dense - row.compressed:+.3f} -> {gap_with:+.3f} | "
                f"{len(row.accounting.lost)} | "
                f"{_share(len(row.accounting.recovered), len(row.accounting.lost))} | "
                f"{len(row.accounting.broken)} | {len(row.accounting.gained)} | {row.cost['extra_parameters']:,} | "
                f"{row.cost['extra_tokens_per_item'] + row.cost['scored_tokens_per_item']:.0f} | "
                f"{row.cost['seconds']:.0f} |")
        lines += ["", "| strategy | lost | recovered (95% CI) | broken | gained |", "|---|---|---|---|---|"]
        for strategy, entry in self.totals().items():
            lines.append(f"| {strategy} | {entry['lost']} | {_share(entry['recovered'], entry['lost'])} | "
                         f"{entry['broken']} | {entry['gained']} |")
        timing = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in self.seconds.items())
        return "\n".join([*lines, "", f"time: {timing}"])


def _share(part: int, whole: int) -> str:
    if not whole:
        return "-"
    low, high = wilson_interval(part, whole)
    return f"{part} ({part / whole:.0%}, {low:.0%}-{high:.0%})"


@dataclass
class DenseSide:
    """The dense model's results: plainly (item by item) and each prompting strategy's score. Computed once, it
    serves every compressed model of the same dense one (``bench/recovery_finding.py`` compares four)."""

    plain: dict[str, TaskResult]
    with_strategy: dict[str, dict[str, float]]  # task -> strategy -> score
    seconds: float

    def to_dict(self) -> dict:
        return {"plain": {key: result.to_dict() for key, result in self.plain.items()},
                "with_strategy": self.with_strategy, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, document: dict) -> DenseSide:
        plain = {}
        for key, entry in document["plain"].items():
            items = [ItemOutcome(**item) for item in entry["items"]]
            plain[key] = TaskResult(key, metric_from(entry["metric"]), items, entry.get("fingerprint", {}),
                                    entry.get("seconds", 0.0))
        return cls(plain, document["with_strategy"], document.get("seconds", 0.0))


def _plan(settings: RunSettings, task_keys: list[str] | None, strategies: list[str] | None):
    tasks = {key: recovery_task(key) for key in (task_keys or supported_tasks())}
    names = strategies or list(STRATEGIES)
    return tasks, names, {name: get_strategy(name) for name in names}


def evaluate_dense(settings: RunSettings, root: Path, task_keys: list[str] | None = None,
                   strategies: list[str] | None = None) -> DenseSide:
    """The dense model plainly and under each prompting strategy (in memory; no baseline is touched)."""
    tasks, names, chosen = _plan(settings, task_keys, strategies)
    context = recovery_context(settings)
    session = KickSession(settings, root)
    started = time.perf_counter()
    note(f"loading the dense {session.ref.alias}")
    dense = load_model(session.ref, dtype=session.dtype, device=session.device, cache_dir=settings.cache_dir)
    plain: dict[str, TaskResult] = {}
    with_strategy: dict[str, dict[str, float]] = {}
    for key, task in tasks.items():
        options = session.task_options(task.data_key())
        note(f"dense {key}")
        plain[key] = task.run(dense.model, dense.tokenizer, options)
        for name in (name for name in names if name in PROMPTING):
            note(f"dense {key} under {name}")
            run = chosen[name].run(task, dense.model, dense.tokenizer, options, context)
            with_strategy.setdefault(key, {})[name] = run.result.score
    return DenseSide(plain, with_strategy, time.perf_counter() - started)


def run_comparison(settings: RunSettings, root: Path, task_keys: list[str] | None = None,
                   strategies: list[str] | None = None,
                   dense: DenseSide | Callable[[], DenseSide] | None = None) -> RecoveryComparison:
    """Evaluate ``strategies`` (default all) on ``task_keys`` (default every task recovery supports), against
    ``dense``: evaluated here first when not given; a function is called only once the compressed side is done
    (so a separate process may still be computing it)."""
    if settings.spec.is_dense:
        raise KickError("kick recover compares a compressed model with the dense one: give --sparsity or --kick-bits")
    tasks, names, chosen = _plan(settings, task_keys, strategies)
    if dense is None:
        dense = evaluate_dense(settings, root, list(tasks), names)
        gc.collect()
    context = recovery_context(settings)
    session = KickSession(settings, root)
    seconds: dict[str, float] = {}

    def timed(label: str, work, *args):
        started = time.perf_counter()
        value = work(*args)
        seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - started
        return value

    timed("load and compress", getattr, session, "loaded")
    runs = []
    for key, task in tasks.items():
        compressed = timed("compressed", session.result, key)
        options = session.task_options(task.data_key())
        for name in names:
            note(f"compressed {key} under {name}")
            loaded = session.loaded
            runs.append((key, name, compressed,
                         timed(name, chosen[name].run, task, loaded.model, loaded.tokenizer, options, context)))
    dense = dense() if callable(dense) else dense
    missing = [key for key in tasks if key not in dense.plain]
    if missing:
        raise KickError(f"the dense results lack {', '.join(missing)}: evaluate the dense model on them too")
    seconds["dense"] = dense.seconds
    report = RecoveryComparison(session.model_fingerprint(), settings.spec.label(), seconds=seconds)
    for key, name, compressed, run in runs:
        accounting = account(dense.plain[key].items, compressed.items, run.result.items)
        report.rows.append(StrategyRow(key, name, dense.plain[key].score, compressed.score,
                                       dense.with_strategy.get(key, {}).get(name), run.result.score,
                                       accounting, run.cost()))
    if session.compression is not None:
        seconds["compression"] = session.compression.seconds
    return report


def write_report(report: RecoveryComparison, path: Path) -> Path:
    return write_text_atomically(path, json.dumps(report.to_dict(), indent=1, ensure_ascii=False) + "\n")
