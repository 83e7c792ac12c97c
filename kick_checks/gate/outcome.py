"""What a kick check ends with: an outcome, whichever way the check went.

Two kinds implement it: :class:`~kick_checks.gate.comparison.Comparison` (gate mode: the compressed result
against its dense baseline) and :class:`~kick_checks.gate.store.Recorded` (update mode: a baseline written). The
plugin, the terminal summary and the reports use only this interface, so they never ask which kind they hold.
"""

from __future__ import annotations

from typing import Protocol


class Outcome(Protocol):
    task: str

    @property
    def verdict(self) -> str:
        """``pass``, ``fail`` or ``recorded``."""

    @property
    def passed(self) -> bool: ...

    def line(self) -> str:
        """One line for the terminal summary."""

    def failure_message(self) -> str:
        """What the failing test says (only asked of an outcome that did not pass)."""

    def junit_properties(self) -> list[tuple[str, str]]:
        """Properties the test carries into ``--junitxml``."""

    def to_report(self) -> dict:
        """This outcome's entry in the JSON report."""
