"""The task registry: the tasks we ship, plus any an installed package declares as an entry point.

A task is a :class:`~kick_checks.tasks.protocol.Task` subclass (see that module for what it declares). Adding one
to kick-checks is its module plus a line in :data:`BUILTIN_TASKS`; another package adds one without touching
kick-checks through the entry-point group ``kick_checks.tasks``::

    [project.entry-points."kick_checks.tasks"]
    yes_no = "my_package.yes_no:YesNoProbe"

Every registered task (each variant on its own) becomes a test of the ``kick`` suite, a baseline file, a
``--kick-data`` name and a ``--kick-tolerance TASK=...`` key, with nothing else to edit.
"""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache
from pathlib import Path

from kick_checks.errors import KickError
from kick_checks.tasks.factoid_qa import FactoidQA
from kick_checks.tasks.instruction_following import InstructionFollowing
from kick_checks.tasks.multiple_choice import MultipleChoice
from kick_checks.tasks.perplexity import Perplexity
from kick_checks.tasks.protocol import ItemOutcome, Metric, Task, TaskOptions, TaskResult, TaskSkipped
from kick_checks.tasks.retrieval_qa import RetrievalQA
from kick_checks.tasks.summarization import Summarization

#: The tasks kick-checks ships, in the order the suite runs them.
BUILTIN_TASKS: tuple[type[Task], ...] = (
    FactoidQA,
    MultipleChoice,
    RetrievalQA,
    Summarization,
    InstructionFollowing,
    Perplexity,
)
ENTRY_POINT_GROUP = "kick_checks.tasks"


def _plugin_tasks() -> list[type[Task]]:
    found = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            task = entry.load()
        except Exception as error:
            raise KickError(f"task entry point {entry.name!r} ({entry.value}) fails to load ({error}): reinstall "
                            "the package that provides it") from None
        if not (isinstance(task, type) and issubclass(task, Task)):
            raise KickError(f"task entry point {entry.name!r} ({entry.value}) is not a kick_checks.tasks.Task "
                            "subclass: point it at the task class")
        found.append(task)
    return found


@lru_cache(maxsize=1)
def all_tasks() -> dict[str, Task]:
    """Every registered task instance by key (``retrieval_qa.open_book``), ours first, then plug-ins'."""
    tasks: dict[str, Task] = {}
    for task_class in (*BUILTIN_TASKS, *_plugin_tasks()):
        for variant in task_class.variants or (None,):
            task = task_class(variant)
            if task.key in tasks:
                raise KickError(f"two tasks are registered as {task.key!r}: rename one of them")
            tasks[task.key] = task
    return tasks


def get_task(key: str) -> Task:
    tasks = all_tasks()
    try:
        return tasks[key]
    except KeyError:
        raise KickError(f"task {key!r} is unknown: use one of {', '.join(tasks)}") from None


def task_classes() -> dict[str, type[Task]]:
    """One class per task name (variants share it), for the keys that name a whole task."""
    return {type(task).name: type(task) for task in all_tasks().values()}


def data_names() -> dict[str, type[Task]]:
    """``--kick-data`` names and the task class that reads each."""
    return {task.data_key(): task for task in task_classes().values()}


def check_task_key(key: str, what: str) -> str:
    """``key`` when it names a task (``retrieval_qa`` covers its variants, ``retrieval_qa.open_book`` one of them),
    else a one-line error naming the known keys: a setting for a misspelt task must never be ignored."""
    known = [*task_classes(), *(k for k in all_tasks() if "." in k)]
    if key in known:
        return key
    raise KickError(f"{what}: {key!r} is not a task: use one of {', '.join(known)}")


def load_task_data(data_name: str, path: str | Path) -> list[dict] | str:
    """The rows (or text) that ``--kick-data data_name=path`` names, read as the task's readers read it."""
    from kick_checks.tasks.data import read_task_file

    names = data_names()
    if data_name not in names:
        raise KickError(f"--kick-data {data_name}={path}: unknown data name; use one of {', '.join(names)}")
    return read_task_file(names[data_name], path)


__all__ = [
    "BUILTIN_TASKS",
    "ENTRY_POINT_GROUP",
    "ItemOutcome",
    "Metric",
    "Task",
    "TaskOptions",
    "TaskResult",
    "TaskSkipped",
    "all_tasks",
    "check_task_key",
    "data_names",
    "get_task",
    "load_task_data",
    "task_classes",
]
