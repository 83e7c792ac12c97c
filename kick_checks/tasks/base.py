"""What every task shares: its items' outcomes, its result, and how its data is read and hashed."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from kick_checks.errors import KickError
from kick_checks.loaders import parse_json_lines

#: Metrics where a lower value is better; every other metric counts up (accuracy, exact match, ratings).
LOWER_IS_BETTER = {"perplexity"}


class TaskSkipped(Exception):
    """The task cannot run in this configuration (e.g. it needs a judge); the message says what would enable it."""


@dataclass(frozen=True)
class TaskOptions:
    """What a run tells every task: where its data is, how much of it, and the scorers it may use."""

    data_path: Path | None = None
    limit: int | None = None
    limit_seed: int = 0
    judge: object | None = None  # a kick_checks.judge.Judge when --kick-judge-model is set
    ppl_seqlen: int | None = None
    batch_size: int | str | None = None  # --kick-batch-size: a number, "auto", or None for the task default


@dataclass(frozen=True)
class ItemOutcome:
    """One item's score (1.0/0.0 for exact match) and what the model produced."""

    id: str
    score: float
    prediction: str
    category: str = ""


@dataclass
class TaskResult:
    """The outcome of one task on one model: the aggregate, every item, and what produced it."""

    task: str
    metric: str
    items: list[ItemOutcome]
    fingerprint: dict = field(default_factory=dict)
    seconds: float = 0.0
    problems: dict[str, int] = field(default_factory=dict)  # e.g. judgments that gave no score

    @property
    def n(self) -> int:
        return len(self.items)

    @property
    def score(self) -> float:
        return aggregate(self.metric, [item.score for item in self.items])

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in LOWER_IS_BETTER

    def by_id(self) -> dict[str, ItemOutcome]:
        return {item.id: item for item in self.items}

    def by_category(self) -> dict[str, float]:
        """Mean score per item category (subject, topic), for tasks whose items have one."""
        return category_means(self.items)

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "metric": self.metric,
            "score": self.score,
            "n": self.n,
            "seconds": round(self.seconds, 2),
            "problems": self.problems,
            "fingerprint": self.fingerprint,
            "items": [asdict(item) for item in self.items],
        }


def aggregate(metric: str, scores: list[float]) -> float:
    """A task's score from its items' scores: the mean, except perplexity, which is exp of the mean per-window
    negative log-likelihood (the windows all hold the same number of tokens)."""
    if not scores:
        return 0.0
    mean = sum(scores) / len(scores)
    return math.exp(mean) if metric == "perplexity" else mean


def category_means(items: list[ItemOutcome]) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for item in items:
        if item.category:
            groups.setdefault(item.category, []).append(item.score)
    return {category: sum(scores) / len(scores) for category, scores in sorted(groups.items())}


@dataclass(frozen=True)
class TaskData:
    """Rows of a task's data with the sha256 of the bytes they came from."""

    rows: list[dict]
    sha256: str
    source: str


def read_bundled_jsonl(name: str, required: tuple[str, ...]) -> TaskData:
    """One of the JSON-lines sets shipped in ``kick_checks/data``, its required keys checked."""
    raw = resources.files("kick_checks.data").joinpath(name).read_bytes()
    source = f"bundled:{name}"
    rows = parse_json_lines(raw.decode("utf-8"), source, f"rows with {', '.join(required)}")
    for number, row in enumerate(rows, start=1):
        missing = [key for key in required if key not in row]
        if missing:
            raise KickError(f"{source} row {number} lacks {', '.join(missing)}: each row needs {required}")
    if not rows:
        raise KickError(f"{source} holds no items")
    return TaskData(rows=rows, sha256=hashlib.sha256(raw).hexdigest(), source=source)


def load_rows(
    data_name: str, options: TaskOptions, bundled_name: str, required: tuple[str, ...]
) -> TaskData:
    """A task's rows: the bundled JSONL, or ``--kick-data`` in our schema or the real benchmark's format; then
    the ``--kick-limit`` sample. The hash covers all rows, so a limited run still matches a full baseline (the
    comparison uses the items both have)."""
    if options.data_path is None:
        data = read_bundled_jsonl(bundled_name, required)
    else:
        from kick_checks.loaders import load_task_data

        rows = load_task_data(data_name, str(options.data_path))
        missing = sorted({key for row in rows for key in required if key not in row})
        if missing:
            raise KickError(f"--kick-data {data_name}={options.data_path}: rows lack {', '.join(missing)}")
        digest = hashlib.sha256(json.dumps(rows, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        data = TaskData(rows=rows, sha256=digest, source=str(options.data_path))
    if options.limit is None:
        return data
    from kick_checks.loaders import sample_rows

    sampled = sample_rows(data.rows, options.limit, options.limit_seed, data.source)
    return TaskData(rows=sampled, sha256=data.sha256, source=data.source)
