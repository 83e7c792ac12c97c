"""Stored dense baseline files: one JSON file per model and task, with a schema version and a fingerprint.

``baselines/<model-alias>/<task>.json`` holds the aggregate score, n, every item's score and prediction, and
the fingerprint of what produced it (model, task data hash, prompt version, decoding settings, dtype,
package version). Files are written atomically: a reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from kick_checks import __version__
from kick_checks.atomic import write_text_atomically
from kick_checks.errors import KickError
from kick_checks.tasks.protocol import ItemOutcome, Metric, TaskResult, metric_from

SCHEMA_VERSION = 1
UPDATE_HINT = "pytest -m kick --kick-update-baselines"
#: Fingerprint fields that must match for a baseline to be comparable. The package version is recorded
#: but not compared, so a release does not invalidate every stored baseline.
MODEL_FIELDS = ("alias", "source", "name", "sha256", "revision", "dtype")
TASK_FIELDS = ("task_data", "prompt_version", "decoding", "scorer")


@dataclass
class Baseline:
    task: str
    metric: Metric
    score: float
    items: list[ItemOutcome]
    fingerprint: dict
    created: str
    path: Path

    @property
    def n(self) -> int:
        return len(self.items)

    def by_id(self) -> dict[str, ItemOutcome]:
        return {item.id: item for item in self.items}


def baseline_path(directory: Path, model_alias: str, task_key: str) -> Path:
    return Path(directory) / model_alias / f"{task_key}.json"


def baseline_fingerprint(model_fingerprint: dict, task_fingerprint: dict) -> dict:
    return {
        "model": {key: model_fingerprint[key] for key in MODEL_FIELDS if key in model_fingerprint},
        **{key: task_fingerprint[key] for key in TASK_FIELDS if key in task_fingerprint},
        "kick_checks_version": __version__,
    }


def write_baseline(path: Path, result: TaskResult, model_fingerprint: dict) -> Path:
    """Write the dense result as a baseline, atomically (temporary file in the same folder, then rename)."""
    document = {
        "schema": SCHEMA_VERSION,
        "task": result.task,
        "metric": result.metric.name,
        "score": result.score,
        "n": result.n,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": baseline_fingerprint(model_fingerprint, result.fingerprint),
        "items": [
            {"id": item.id, "score": item.score, "prediction": item.prediction,
             **({"category": item.category} if item.category else {})}
            for item in result.items
        ],
    }
    return write_text_atomically(path, json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def read_baseline(path: Path) -> Baseline:
    """Read and validate a baseline; every problem is a :class:`KickError` naming the update command."""
    if not path.is_file():
        raise KickError(f"no dense baseline at {path}: record it with {UPDATE_HINT}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KickError(f"baseline {path} is not valid JSON (truncated?): re-record it with {UPDATE_HINT}") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA_VERSION:
        found = document.get("schema") if isinstance(document, dict) else None
        raise KickError(
            f"baseline {path} has schema {found!r}, this kick-checks reads schema {SCHEMA_VERSION}: "
            f"re-record it with {UPDATE_HINT}"
        )
    try:
        items = [
            ItemOutcome(
                str(row["id"]), float(row["score"]), str(row.get("prediction", "")), str(row.get("category", ""))
            )
            for row in document["items"]
        ]
        return Baseline(
            task=document["task"],
            metric=metric_from(document["metric"]),
            score=float(document["score"]),
            items=items,
            fingerprint=document["fingerprint"],
            created=document.get("created", ""),
            path=path,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise KickError(f"baseline {path} is malformed ({error}): re-record it with {UPDATE_HINT}") from None


def fingerprint_changes(stored: dict, current: dict, task_fields: tuple[str, ...] = TASK_FIELDS,
                        model_fields: tuple[str, ...] = MODEL_FIELDS) -> list[str]:
    """Human-readable differences between two baseline fingerprints (empty when they match). A check made before
    the model runs compares only the ``model_fields`` and ``task_fields`` already known."""
    changes = []
    stored_model, current_model = stored.get("model", {}), current.get("model", {})
    for key in model_fields:
        if stored_model.get(key) != current_model.get(key):
            changes.append(f"model {key}: {stored_model.get(key)!r} -> {current_model.get(key)!r}")
    for key in task_fields:
        if stored.get(key) != current.get(key):
            changes.append(f"{key}: {stored.get(key)!r} -> {current.get(key)!r}")
    return changes
