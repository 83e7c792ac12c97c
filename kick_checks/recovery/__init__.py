"""Knowledge recovery: is what a compressed model lost displaced (a better prompt brings it back) or forgotten?

Follow-up work to LLM-KICK ("Do compressed LLMs forget knowledge?", arXiv 2310.00867) found compressed models'
lost knowledge mostly *displaced*: input-side prompting, chosen per input (inference-time dynamic prompting),
recovers as much of it as LoRA re-training, with far fewer extra parameters. This package measures that for the
model under test, on the knowledge tasks, item by item. One module per strategy behind one protocol
(:mod:`kick_checks.recovery.protocol`), as the compressors are:

- ``prompt`` (:mod:`~kick_checks.recovery.fixed_prompt`): a fixed instruction and k held-out demonstrations;
- ``idp`` (:mod:`~kick_checks.recovery.dynamic`): per input, one of several curated prompts, chosen without labels;
- ``lora`` (:mod:`~kick_checks.recovery.lora`): a LoRA adapter trained on the calibration text, mask kept.

:mod:`~kick_checks.recovery.accounting` sorts items into lost, recovered, forgotten, broken and gained;
:mod:`~kick_checks.recovery.session_hook` adds that to ``pytest -m kick --kick-recovery S`` and
:mod:`~kick_checks.recovery.comparison` is ``kick recover``.
"""

from __future__ import annotations

from kick_checks.errors import KickError
from kick_checks.recovery.dynamic import DynamicPrompting
from kick_checks.recovery.fixed_prompt import FixedPrompt
from kick_checks.recovery.lora import LoraRecovery
from kick_checks.recovery.protocol import IDP_RULES, RecoveredRun, RecoveryContext, RecoveryStrategy

STRATEGIES: dict[str, type] = {"prompt": FixedPrompt, "idp": DynamicPrompting, "lora": LoraRecovery}


def get_strategy(name: str) -> RecoveryStrategy:
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise KickError(f"recovery strategy {name!r} is unknown: use {', '.join(STRATEGIES)}") from None


__all__ = ["IDP_RULES", "STRATEGIES", "RecoveredRun", "RecoveryContext", "RecoveryStrategy", "get_strategy"]
