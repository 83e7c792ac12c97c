"""The recovery-strategy protocol: what a strategy is given, and what it hands back.

A strategy answers one question about a compressed model: can it answer again, without new knowledge, what
compression made it get wrong? It is called as ``strategy.run(task, model, tokenizer, options, context)`` and
returns a :class:`RecoveredRun`: the task's result under the strategy, item by item (so
:mod:`kick_checks.recovery.accounting` can tell recovered from forgotten), and what the recovery cost: parameters
added, prompt tokens added per item, tokens scored to choose a prompt, seconds. It never writes baselines or
changes the model it is given (a strategy that trains works on a copy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from kick_checks.tasks import Task, TaskOptions, TaskResult

#: The label-free rules :mod:`kick_checks.recovery.dynamic` chooses a prompt by.
IDP_RULES = ("similarity", "fit", "confidence")


@dataclass
class RecoveryContext:
    """What a run gives every strategy: user pools by data name, the dynamic rule, and for training strategies
    the calibration windows (a function of the tokenizer) and whether a trained delta may be merged (not into
    quantized weights, which it would take off their grid)."""

    pool_paths: dict[str, Path] = field(default_factory=dict)
    idp_rule: str = "similarity"
    calibration: Callable[[object], object] | None = None
    merge: bool = True
    seed: int = 0


@dataclass
class RecoveredRun:
    strategy: str
    result: TaskResult
    extra_parameters: int = 0
    extra_tokens_per_item: float = 0.0  # prompt tokens beyond the task's own prompt, mean over items
    scored_tokens_per_item: float = 0.0  # tokens run only to choose a prompt (dynamic prompting)
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def cost(self) -> dict:
        return {"extra_parameters": self.extra_parameters,
                "extra_tokens_per_item": round(self.extra_tokens_per_item, 1),
                "scored_tokens_per_item": round(self.scored_tokens_per_item, 1),
                "seconds": round(self.seconds, 2), **self.details}


@runtime_checkable
class RecoveryStrategy(Protocol):
    name: ClassVar[str]

    def run(self, task: Task, model, tokenizer, options: TaskOptions, context: RecoveryContext) -> RecoveredRun: ...


def token_counter(tokenizer) -> Callable[[str], int]:
    """Tokens of a text, counted once per distinct text (prompts repeat across items)."""
    counts: dict[str, int] = {}

    def count(text: str) -> int:
        if text not in counts:
            counts[text] = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        return counts[text]

    return count
