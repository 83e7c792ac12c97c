"""``pytest -m kick --kick-recovery S``: recovery results on each knowledge task's check, and the recoverable gate.

The session calls :meth:`SessionRecovery.check` before any model work (every selected knowledge task must support
recovery, every ``--kick-recovery-pool`` name must be one of theirs) and :meth:`SessionRecovery.annotate` after a
knowledge task was compared with its dense baseline: the strategy runs on the session's compressed model, the
items are accounted against the baseline (read, never written) and the compressed result, and the outcome rides
on the comparison. With ``--kick-gate recoverable`` the comparison is redone with the recovered items scored as
the dense model scored them, so knowledge that is displaced rather than gone does not fail the gate.
"""

from __future__ import annotations

from kick_checks.gate.baselines import read_baseline
from kick_checks.gate.comparison import Comparison, compare_items
from kick_checks.model.calibration import calibration_text, calibration_tokens
from kick_checks.recovery import RecoveryContext, get_strategy
from kick_checks.recovery.accounting import account, counting_recovered_as_kept
from kick_checks.recovery.outcome import RecoveryOutcome
from kick_checks.recovery.pools import recovery_task
from kick_checks.settings import RunSettings
from kick_checks.tasks import get_task


def recovery_context(settings: RunSettings) -> RecoveryContext:
    """The context every strategy gets from a run's settings: pools, rule, calibration windows for LoRA (the
    compressor's own: same text, count, length and seed), and no merging into quantized weights."""
    spec = settings.spec

    def calibration(tokenizer):
        return calibration_tokens(tokenizer, spec.calib_samples, spec.calib_seqlen, spec.calib_seed,
                                  calibration_text(settings.calib_data))

    return RecoveryContext(pool_paths=dict(settings.recovery_pools), idp_rule=settings.idp_rule,
                           calibration=calibration, merge=spec.bits is None, seed=spec.calib_seed)


class SessionRecovery:
    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        self.strategy = get_strategy(settings.recovery)
        self.context = recovery_context(settings)

    @staticmethod
    def applies(task_key: str) -> bool:
        return "knowledge" in get_task(task_key).tags

    def check(self, task_keys: list[str]) -> None:
        """Before the model loads: each selected knowledge task must support recovery (one line names those that
        do)."""
        for key in dict.fromkeys(task_keys):
            if self.applies(key):
                recovery_task(key)

    def annotate(self, session, task_key: str, comparison: Comparison) -> Comparison:
        """``comparison`` with the task's recovery outcome (and, under the recoverable gate, its verdict on the
        recovered items counted as kept)."""
        if not self.applies(task_key) or comparison.result is None:
            return comparison
        task = get_task(task_key)
        loaded = session.loaded
        run = self.strategy.run(task, loaded.model, loaded.tokenizer, session.task_options(task.data_key()),
                                self.context)
        dense = read_baseline(session.store.reading_path(task_key)).items
        accounting = account(dense, comparison.result.items, run.result.items)
        outcome = RecoveryOutcome(self.strategy.name, accounting, comparison.dense, comparison.compressed, run)
        if self.settings.gate == "recoverable":
            compressed = comparison.result
            comparison = compare_items(dense, counting_recovered_as_kept(compressed, dense, accounting),
                                       comparison.tolerance, comparison.spec_label,
                                       baseline_path=comparison.baseline_path, gate="recoverable",
                                       alpha=self.settings.alpha)
            comparison.result = compressed
            outcome.counted_as_kept = True
        comparison.knowledge_recovery = outcome
        return comparison
