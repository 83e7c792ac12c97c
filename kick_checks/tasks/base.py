"""What every task shares: its items' outcomes, its result, and how its data is read and hashed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from kick_checks.errors import KickError


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

    @property
    def n(self) -> int:
        return len(self.items)

    @property
    def score(self) -> float:
        return sum(item.score for item in self.items) / len(self.items) if self.items else 0.0

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
            "fingerprint": self.fingerprint,
            "items": [asdict(item) for item in self.items],
        }


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


def read_jsonl(path: Path | None, bundled_name: str, required: tuple[str, ...]) -> TaskData:
    """Read JSON lines from a user's file or from the bundled data, checking that required keys exist."""
    if path is None:
        raw = resources.files("kick_checks.data").joinpath(bundled_name).read_bytes()
        source = f"bundled:{bundled_name}"
    else:
        file = Path(path).expanduser()
        if not file.is_file():
            raise KickError(f"--kick-data {path}: no such file; give a JSON-lines file")
        raw, source = file.read_bytes(), str(file)
    rows = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise KickError(f"{source} line {number} is not JSON: each line must be one JSON object") from None
        missing = [key for key in required if key not in row]
        if missing:
            raise KickError(f"{source} line {number} lacks {', '.join(missing)}: each row needs {required}")
        rows.append(row)
    if not rows:
        raise KickError(f"{source} holds no items")
    return TaskData(rows=rows, sha256=hashlib.sha256(raw).hexdigest(), source=source)
