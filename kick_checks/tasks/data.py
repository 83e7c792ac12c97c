"""A task's data: the bundled set, or ``--kick-data`` in our schema or a published format, then the sample.

Which formats a task reads is the task's own declaration (``Task.readers``); this module only walks them, so
``--kick-data`` validation and help come from the task registry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kick_checks.datasets.common import is_blank_file, parse_json_lines, resolve_data_source, sample_rows
from kick_checks.errors import KickError
from kick_checks.tasks.protocol import Task, TaskOptions


@dataclass(frozen=True)
class TaskData:
    """Rows of a task's data with the sha256 of the bytes they came from."""

    rows: list[dict]
    sha256: str
    source: str


def read_bundled_jsonl(name: str, required: tuple[str, ...], package: str = "kick_checks.data") -> TaskData:
    """One of the JSON-lines sets shipped in ``package``, its required keys checked."""
    raw = resources.files(package).joinpath(name).read_bytes()
    source = f"bundled:{name}"
    rows = parse_json_lines(raw.decode("utf-8"), source, f"rows with {', '.join(required)}")
    for number, row in enumerate(rows, start=1):
        missing = [key for key in required if key not in row]
        if missing:
            raise KickError(f"{source} row {number} lacks {', '.join(missing)}: each row needs {required}")
    if not rows:
        raise KickError(f"{source} holds no items")
    return TaskData(rows=rows, sha256=hashlib.sha256(raw).hexdigest(), source=source)


def read_task_file(task: type[Task] | Task, path: str | Path) -> list[dict] | str:
    """The rows (or text) that ``--kick-data NAME=PATH`` gives ``task``: the first of its readers that accepts
    the path reads it (each reader says what is wrong with a file in its format).

    A reader tried after others declined the file (a catch-all such as FreebaseQA's JSON) knows only its own
    format, so its error is completed with the formats that declined, our own JSON-lines schema among them: the
    user may have meant any of them.
    """
    data_name = task.data_key()
    source = resolve_data_source(path, f"data for {data_name}")
    formats = "; or ".join(reader.formats for reader in task.readers)
    if is_blank_file(source):
        raise KickError(f"--kick-data {data_name}={path} is empty: give {formats}")
    for position, reader in enumerate(task.readers):
        if not reader.accepts(source):
            continue
        try:
            return reader.read(source)
        except KickError as error:
            declined = task.readers[:position]
            if not declined:
                raise
            others = "; or ".join(other.formats for other in declined)
            raise KickError(f"{error}; {data_name} also reads {others}") from None
    raise KickError(f"--kick-data {data_name}={path} is in none of the formats {data_name} reads: give {formats}")


def load_rows(task: Task, options: TaskOptions, bundled_file: str | None = None) -> TaskData:
    """A task's rows: its bundled JSONL (or ``bundled_file``), or ``--kick-data`` through its readers; then the
    ``--kick-limit`` sample. The hash covers all rows, so a limited run still matches a full baseline (the
    comparison uses the items both have)."""
    required = task.required_fields
    if options.data_path is None:
        data = read_bundled_jsonl(bundled_file or task.bundled_file, required, task.bundled_package)
    else:
        rows = read_task_file(task, options.data_path)
        missing = sorted({key for row in rows for key in required if key not in row})
        if missing:
            raise KickError(f"--kick-data {task.data_key()}={options.data_path}: rows lack {', '.join(missing)}")
        digest = hashlib.sha256(json.dumps(rows, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        data = TaskData(rows=rows, sha256=digest, source=str(options.data_path))
    if options.limit is None:
        return data
    sampled = sample_rows(data.rows, options.limit, options.limit_seed, data.source)
    return TaskData(rows=sampled, sha256=data.sha256, source=data.source)


def load_text(task: Task, options: TaskOptions) -> tuple[str, str]:
    """A text task's text and where it came from (``bundled`` or the path)."""
    if options.data_path is None:
        return resources.files(task.bundled_package).joinpath(task.bundled_file).read_text("utf-8"), "bundled"
    return read_task_file(task, options.data_path), str(options.data_path)
