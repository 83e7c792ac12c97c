"""Reports of a kick run: one machine-readable JSON document and a Markdown summary fit for a CI step summary.

Both are built from the session's outcomes after the tests ran, and written atomically (a reader never sees
half a file). Nothing secret goes in: the judge is named by its model, never by its key.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import kick_checks
from kick_checks.atomic import write_text_atomically
from kick_checks.experiments.record import EXPERIMENT_KEYS, experiment_fields


def run_document(session) -> dict:
    """Everything a later reader needs: environment, model and spec fingerprints, compression, task outcomes."""

    from kick_checks.tasks import get_task

    tasks = [{**outcome.to_report(), "tags": list(get_task(outcome.task).tags)} for outcome in session.outcomes]
    return {
        "kick_checks_version": kick_checks.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": session.environment(),
        "model": session.model_fingerprint(),
        "spec": session.settings.spec.to_dict(),
        "spec_label": session.settings.spec.label(),
        "judge_model": session.settings.judge.model,
        "compression": session.compression.to_dict() if session.compression else None,
        "tasks": tasks,
        **experiment_fields(session),
    }


def markdown_summary(document: dict) -> str:
    """A table per run: task, metric, dense, compressed, change, tolerance, verdict."""
    model = document["model"]
    lines = [
        f"### kick-checks: {model.get('alias')} ({model.get('dtype')}), {document['spec_label']}",
        "",
    ]
    compression = document.get("compression")
    if compression:
        lines += [f"Achieved sparsity {compression['sparsity']:.2%} in {compression['seconds']:.1f}s.", ""]
    lines += ["| task | metric | dense | compressed | change | tolerance | verdict |", "|---|---|---|---|---|---|---|"]
    for task in document["tasks"]:
        if task["verdict"] == "recorded":
            lines.append(f"| {task['task']} | {task['metric']} | {task['dense']:.3f} | | | | recorded |")
            continue
        lines.append(
            f"| {task['task']} | {task['metric']} | {task['dense']:.3f} | {task['compressed']:.3f} | "
            f"{-task['relative_loss']:+.1%} | {task['tolerance_text']} | "
            f"{'✅ pass' if task['verdict'] == 'pass' else '❌ fail'} |"
        )
    recovered = [task for task in document["tasks"] if task.get("knowledge_recovery")]
    if recovered:
        lines += ["", "| task | recovery | lost | recovered | forgotten | broken | score under recovery |",
                  "|---|---|---|---|---|---|---|"]
        for task in recovered:
            entry = task["knowledge_recovery"]
            lines.append(f"| {task['task']} | {entry['strategy']} | {entry['lost']} | {entry['recovered']} | "
                         f"{entry['forgotten']} | {entry['broken']} | {entry['recovered_score']:.3f} |")
    return "\n".join(lines) + "\n"


def merged_document(documents: list[dict]) -> dict:
    """One document from several xdist workers' documents: same run, tasks split between them (a task that
    two workers checked, the suite's test on one and a user's ``kick_check`` on the other, appears once: the
    first worker's)."""
    merged = dict(documents[0])
    by_task = {task["task"]: task for document in reversed(documents) for task in document["tasks"]}
    merged["tasks"] = sorted(by_task.values(), key=lambda task: task["task"])  # a task two workers checked: once
    merged["compression"] = next((d["compression"] for d in documents if d.get("compression")), None)
    merged["model"] = max((d["model"] for d in documents), key=len)
    for key in EXPERIMENT_KEYS:
        merged[key] = next((d[key] for d in documents if d.get(key)), None)
    return merged


def write_reports(document: dict, json_path: Path | None, markdown_path: Path | None) -> list[Path]:
    written = []
    if json_path is not None:
        written.append(write_text_atomically(json_path, json.dumps(document, indent=1, ensure_ascii=False) + "\n"))
    if markdown_path is not None:
        written.append(write_text_atomically(markdown_path, markdown_summary(document)))
    return written
