"""Held-out demonstration pools: the items a recovery prompt may show, never one that is evaluated.

A task supports knowledge recovery when it is a knowledge task (tag ``"knowledge"``) that declares a
``recovery_pool``: a bundled JSON-lines file of its kind of item, written for kick-checks apart from the evaluated
sets (``kick_checks/data/recovery_qa_pool.jsonl``, ``recovery_mc_pool.jsonl``; see the data README).
``--kick-recovery-pool NAME=PATH`` gives a user's own pool, for instance beside their own ``--kick-data``: our pool
was written against our sets, and a pool must not repeat what it helps answer. Whatever its source, a pool item
whose question is also an evaluated question is dropped before any prompt is built, and the count is reported.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kick_checks.datasets.common import parse_json_lines, read_json_lines
from kick_checks.errors import KickError
from kick_checks.tasks import Task, all_tasks, get_task
from kick_checks.tasks.scoring import normalize_answer

#: Keys a pool row needs, by the kind of item (the task's form, see :mod:`kick_checks.recovery.forms`).
POOL_FIELDS = {
    "short_answer": ("id", "question", "answers"),
    "choice": ("id", "subject", "question", "choices", "answer"),
}


@dataclass(frozen=True)
class Pool:
    """The demonstrations a task's recovery prompts may use, after dropping those that repeat an evaluated
    question (``dropped``)."""

    task: str
    rows: list[dict]
    source: str
    sha256: str
    dropped: int = 0

    def categories(self, key: str = "category") -> list[str]:
        """The rows' categories (or subjects), in the order they first appear."""
        return list(dict.fromkeys(str(row.get(key) or "") for row in self.rows if row.get(key)))


def supports_recovery(task: Task) -> bool:
    return "knowledge" in task.tags and bool(task.recovery_pool)


def supported_tasks() -> list[str]:
    """The registered task keys recovery can run on."""
    return [key for key, task in all_tasks().items() if supports_recovery(task)]


def recovery_task(key: str) -> Task:
    """The task ``key``, which must support recovery; else one line naming the tasks that do."""
    task = get_task(key)
    if not supports_recovery(task):
        why = "is not a knowledge task" if "knowledge" not in task.tags else "has no held-out pool of demonstrations"
        raise KickError(f"knowledge recovery cannot run on {key}: it {why}; recovery supports "
                        f"{', '.join(supported_tasks())}")
    return task


def check_pool_names(paths: dict[str, Path]) -> None:
    """``--kick-recovery-pool`` names must be the data names of tasks that support recovery."""
    names = {get_task(key).data_key() for key in supported_tasks()}
    for name in paths:
        if name not in names:
            raise KickError(f"--kick-recovery-pool {name}=...: {name!r} has no recovery; give a pool for one of "
                            f"{', '.join(sorted(names))}")


def _checked(rows: list[dict], fields: tuple[str, ...], source: str) -> list[dict]:
    for number, row in enumerate(rows, start=1):
        missing = [key for key in fields if key not in row]
        if missing:
            raise KickError(f"recovery pool {source} row {number} lacks {', '.join(missing)}: each row needs "
                            f"{', '.join(fields)}")
    if not rows:
        raise KickError(f"recovery pool {source} holds no items: give at least a few demonstrations")
    return rows


def load_pool(task: Task, form: str, evaluated_questions: list[str], path: Path | None = None) -> Pool:
    """``task``'s pool (bundled, or ``path``), without the items whose question is evaluated."""
    fields = POOL_FIELDS[form]
    if path is None:
        raw = resources.files(task.bundled_package).joinpath(task.recovery_pool).read_bytes()
        source = f"bundled:{task.recovery_pool}"
        rows = parse_json_lines(raw.decode("utf-8"), source, f"rows with {', '.join(fields)}")
    else:
        file = Path(path).expanduser()
        if not file.is_file():
            raise KickError(f"--kick-recovery-pool {task.data_key()}={path}: no such file; give a JSON-lines file "
                            f"with the keys {', '.join(fields)}")
        raw = file.read_bytes()
        source = str(file)
        rows = read_json_lines(file, f"JSON lines with the keys {', '.join(fields)}")
    rows = _checked(rows, fields, source)
    asked = {normalize_answer(question) for question in evaluated_questions}
    kept = [row for row in rows if normalize_answer(str(row["question"])) not in asked]
    if not kept:
        raise KickError(f"recovery pool {source}: every item repeats an evaluated question of {task.key}, so none can "
                        "be shown as a demonstration; give a held-out pool with --kick-recovery-pool")
    return Pool(task.key, kept, source, hashlib.sha256(raw).hexdigest(), len(rows) - len(kept))
