"""Stored dense baseline files: one JSON file per model and task, with a schema version and a fingerprint.

``baselines/<model-alias>/<task>.json`` holds the aggregate score, n, every item's score and prediction, the
fingerprint of what produced it (model, task data hash, prompt version, decoding rules, dtype, package version),
the numerical environment it was recorded in (:mod:`kick_checks.model.environment`: reported, never a reason to
refuse) and the dense model's noise floor (:mod:`kick_checks.gate.noise_floor`: unstable items and what they gave
under each perturbation). Files are written atomically: a reader sees the old file or the new one, never half.

Schema 1 files (before the environment and the noise floor) are still read: every item counts as stable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kick_checks import __version__
from kick_checks.atomic import write_text_atomically
from kick_checks.errors import KickError
from kick_checks.gate.noise_floor import NoiseFloor
from kick_checks.tasks.protocol import ItemOutcome, Metric, TaskResult, metric_from

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
UPDATE_HINT = "pytest -m kick --kick-update-baselines"
#: Fingerprint fields that must match for a baseline to be comparable. The package version is recorded
#: but not compared, so a release does not invalidate every stored baseline.
MODEL_FIELDS = ("alias", "source", "name", "sha256", "revision", "dtype")
TASK_FIELDS = ("task_data", "prompt_version", "decoding", "scorer")
#: Decoding fields that change only how the arithmetic is batched, not what is asked: the noise floor covers
#: them, so they are reported but never make a baseline unusable.
ROUNDING_FIELDS = ("batch_size", "prompt_lookup")


@dataclass
class Baseline:
    task: str
    metric: Metric
    score: float
    items: list[ItemOutcome]
    fingerprint: dict
    created: str
    path: Path
    environment: dict = field(default_factory=dict)
    noise: NoiseFloor | None = None  # None: recorded without a noise floor (every item counts as stable)

    @property
    def n(self) -> int:
        return len(self.items)

    def by_id(self) -> dict[str, ItemOutcome]:
        return {item.id: item for item in self.items}

    @property
    def dtypes(self) -> set[str]:
        """The dtypes this baseline's dense items were evaluated in: its own, and its noise floor's."""
        own = self.fingerprint.get("model", {}).get("dtype")
        return ({own} if own else set()) | (self.noise.dtypes() if self.noise is not None else set())


def baseline_path(directory: Path, model_alias: str, task_key: str) -> Path:
    return Path(directory) / model_alias / f"{task_key}.json"


def baseline_fingerprint(model_fingerprint: dict, task_fingerprint: dict) -> dict:
    return {
        "model": {key: model_fingerprint[key] for key in MODEL_FIELDS if key in model_fingerprint},
        **{key: task_fingerprint[key] for key in TASK_FIELDS if key in task_fingerprint},
        "kick_checks_version": __version__,
    }


def write_baseline(path: Path, result: TaskResult, model_fingerprint: dict, environment: dict | None = None,
                   noise: NoiseFloor | None = None) -> Path:
    """Write the dense result as a baseline, atomically (temporary file in the same folder, then rename)."""
    if not result.items:
        raise KickError(f"{result.task}: the dense run scored no item, so there is nothing to record (no baseline "
                        f"written; the stored one, if any, is unchanged): check the task's data and problems "
                        f"{result.problems or ''}".rstrip())
    document = {
        "schema": SCHEMA_VERSION,
        "task": result.task,
        "metric": result.metric.name,
        "score": result.score,
        "n": result.n,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": baseline_fingerprint(model_fingerprint, result.fingerprint),
        "environment": environment or {},
        **({"noise_floor": noise.to_dict()} if noise is not None else {}),
        "items": [
            {"id": item.id, "score": item.score, "prediction": item.prediction,
             **({"category": item.category} if item.category else {}),
             **(noise.item_entry(item.id) if noise is not None else {})}
            for item in result.items
        ],
    }
    return write_text_atomically(path, json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def read_baseline(path: Path, hint: str = UPDATE_HINT) -> Baseline:
    """Read and validate a baseline; every problem is a :class:`KickError` naming the update command (``hint``:
    the command as this run would give it, e.g. with its ``--kick-baselines-dir``)."""
    if not path.is_file():
        raise KickError(f"no dense baseline at {path}: record it with {hint}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KickError(f"baseline {path} is not valid JSON (truncated?): re-record it with {hint}") from None
    if not isinstance(document, dict) or document.get("schema") not in READABLE_SCHEMAS:
        found = document.get("schema") if isinstance(document, dict) else None
        raise KickError(
            f"baseline {path} has schema {found!r}, this kick-checks reads schemas "
            f"{', '.join(map(str, READABLE_SCHEMAS))}: "
            f"re-record it with {hint}"
        )
    try:
        items = [
            ItemOutcome(
                str(row["id"]), float(row["score"]), str(row.get("prediction", "")), str(row.get("category", ""))
            )
            for row in document["items"]
        ]
        noise = document.get("noise_floor")
        return Baseline(
            task=document["task"],
            metric=metric_from(document["metric"]),
            score=float(document["score"]),
            items=items,
            fingerprint=document["fingerprint"],
            created=document.get("created", ""),
            path=path,
            environment=document.get("environment", {}),
            noise=NoiseFloor.from_document(noise, document["items"]) if noise else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise KickError(f"baseline {path} is malformed ({error}): re-record it with {hint}") from None


def fingerprint_changes(stored: dict, current: dict, task_fields: tuple[str, ...] = TASK_FIELDS,
                        model_fields: tuple[str, ...] = MODEL_FIELDS, dtypes: set[str] | None = None) -> list[str]:
    """Human-readable differences between two baseline fingerprints (empty when they match). A check made before
    the model runs compares only the ``model_fields`` and ``task_fields`` already known. ``dtypes`` are the dtypes
    the stored baseline covers (its own and its noise floor's); decoding fields that only batch the arithmetic
    differently (:data:`ROUNDING_FIELDS`) are never a difference."""
    changes = []
    stored_model, current_model = stored.get("model", {}), current.get("model", {})
    for key in model_fields:
        if key == "dtype" and dtypes and current_model.get(key) in dtypes:
            continue
        if stored_model.get(key) != current_model.get(key):
            changes.append(f"model {key}: {stored_model.get(key)!r} -> {current_model.get(key)!r}")
    for key in task_fields:
        old, new = stored.get(key), current.get(key)
        if key == "decoding" and isinstance(old, dict) and isinstance(new, dict):
            old, new = _without_rounding(old), _without_rounding(new)
        if old != new:
            changes.append(f"{key}: {old!r} -> {new!r}")
    return changes


def _without_rounding(decoding: dict) -> dict:
    return {key: value for key, value in decoding.items() if key not in ROUNDING_FIELDS}
