"""The task registry. A task is data plus a scorer; adding one here needs no change to the plugin.

Each task has a ``key`` (``factoid_qa``, ``retrieval_qa.open_book`` ...), a ``data_name`` that
``--kick-data NAME=PATH`` refers to, a ``metric`` and ``run(model, tokenizer, data_path) -> TaskResult``.
"""

from __future__ import annotations

from kick_checks.errors import KickError
from kick_checks.tasks.base import ItemOutcome, TaskOptions, TaskResult, TaskSkipped
from kick_checks.tasks.factoid_qa import FactoidQA
from kick_checks.tasks.instruction_following import InstructionFollowing
from kick_checks.tasks.multiple_choice import MultipleChoice
from kick_checks.tasks.perplexity import Perplexity
from kick_checks.tasks.retrieval_qa import RetrievalQA
from kick_checks.tasks.summarization import Summarization

TASKS = {
    task.key: task
    for task in (
        FactoidQA(),
        MultipleChoice(),
        RetrievalQA("closed_book"),
        RetrievalQA("open_book"),
        Summarization(),
        InstructionFollowing(),
        Perplexity(),
    )
}


def get_task(key: str):
    try:
        return TASKS[key]
    except KeyError:
        raise KickError(f"task {key!r} is unknown: use one of {', '.join(TASKS)}") from None


def data_names() -> set[str]:
    return {task.data_name for task in TASKS.values()}


__all__ = ["TASKS", "ItemOutcome", "TaskOptions", "TaskResult", "TaskSkipped", "data_names", "get_task"]
