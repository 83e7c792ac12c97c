"""The task registry. A task is data plus a scorer; adding one here needs no change to the plugin.

Each task has a ``key`` (``factoid_qa``, ``retrieval_qa.open_book`` ...), a ``data_name`` that
``--kick-data NAME=PATH`` refers to, a ``metric`` and ``run(model, tokenizer, data_path) -> TaskResult``.
"""

from __future__ import annotations

from kick_checks.errors import KickError
from kick_checks.tasks.base import ItemOutcome, TaskResult
from kick_checks.tasks.factoid_qa import FactoidQA
from kick_checks.tasks.retrieval_qa import RetrievalQA

TASKS = {task.key: task for task in (FactoidQA(), RetrievalQA("closed_book"), RetrievalQA("open_book"))}


def get_task(key: str):
    try:
        return TASKS[key]
    except KeyError:
        raise KickError(f"task {key!r} is unknown: use one of {', '.join(TASKS)}") from None


def data_names() -> set[str]:
    return {task.data_name for task in TASKS.values()}


__all__ = ["TASKS", "ItemOutcome", "TaskResult", "data_names", "get_task"]
