"""One knowledge task's recovery, as a kick check reports it: a line, message lines, a JSON entry.

Attached to the task's :class:`~kick_checks.gate.comparison.Comparison` (``knowledge_recovery``), so it travels
with the check into the terminal summary, the failure message and the JSON report (``"knowledge_recovery"`` of
each knowledge task), where ``kick compare`` and the dashboard can read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kick_checks.recovery.accounting import Accounting
from kick_checks.recovery.protocol import RecoveredRun


@dataclass
class RecoveryOutcome:
    strategy: str
    accounting: Accounting
    dense: float
    compressed: float
    run: RecoveredRun
    counted_as_kept: bool = False  # --kick-gate recoverable: the gate scored recovered items as kept

    @property
    def recovered_score(self) -> float:
        return self.run.result.score

    def summary(self) -> str:
        """What the check's one line gains: ``recovery idp 0.312: 12 of 30 lost items recovered (...)``."""
        counted = ", counted as kept" if self.counted_as_kept else ""
        return f"recovery {self.strategy} {self.recovered_score:.3f}: {self.accounting.describe()}{counted}"

    def message_lines(self) -> list[str]:
        cost = self.run.cost()
        lines = [f"  knowledge recovery ({self.strategy}): score {self.compressed:.3f} -> {self.recovered_score:.3f} "
                 f"under recovery (dense {self.dense:.3f}); {self.accounting.describe()}",
                 f"  recovery cost: {cost['extra_parameters']} extra parameters, {cost['extra_tokens_per_item']} extra "
                 f"prompt tokens and {cost['scored_tokens_per_item']} scored tokens per item, {cost['seconds']}s"]
        if self.accounting.recovered:
            lines.append(f"  recovered (displaced, not forgotten): {', '.join(self.accounting.recovered[:8])}"
                         f"{', ...' if len(self.accounting.recovered) > 8 else ''}")
        if self.counted_as_kept:
            lines.append("  --kick-gate recoverable: the recovered items count as kept in this verdict")
        return lines

    def to_report(self) -> dict:
        return {"strategy": self.strategy, "dense": self.dense, "compressed": self.compressed,
                "recovered_score": self.recovered_score, "counted_as_kept": self.counted_as_kept,
                **self.accounting.to_dict(), "cost": self.run.cost(), "result": self.run.result.to_dict()}
