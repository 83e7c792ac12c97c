"""The end-of-run kick-checks section of pytest's terminal summary, and how xdist workers send theirs.

Each process that ran kick tests turns its session into a plain summary (:func:`session_summary`): under
pytest-xdist a worker hands it to the controller as JSON in ``workeroutput``, and the controller writes one
section from all of them and one merged JSON / Markdown report.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kick_checks.report.documents import merged_document, run_document, write_reports

WORKER_OUTPUT_KEY = "kick_summary"


def session_summary(session) -> dict:
    """What the end-of-run summary shows, as plain data, so xdist workers can send it to the controller."""
    compression = None
    if session.compression is not None:
        source = "loaded from the compression cache: " if session.compression_source == "loaded" else ""
        compression = source + session.compression_summary()
    return {
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
        "header": f"model: {session.ref.alias} ({session.dtype}, {session.device}); "
                  f"compression: {session.settings.spec.label()}",
        "compression": compression,
        "notes": list(session.notes),
        "outcomes": [{"task": outcome.task, "line": outcome.line(), "verdict": outcome.verdict}
                     for outcome in session.outcomes],
        "document": run_document(session),
    }


def worker_output(session) -> str:
    """A worker's summary, for ``config.workeroutput``."""
    return json.dumps(session_summary(session))


def read_worker_output(workeroutput: dict) -> dict | None:
    summary = workeroutput.get(WORKER_OUTPUT_KEY)
    return json.loads(summary) if summary else None


def worker_notes(summaries: list[dict]) -> list[str]:
    """The notes of every process, once each: a note every worker made (the same stale file removed) as it is, one
    that differs between workers (each worker's own ``measured:`` line) labelled with the worker that made it."""
    shared = set.intersection(*(set(summary.get("notes", [])) for summary in summaries))
    lines: dict[str, None] = {}
    for summary in summaries:
        for note in summary.get("notes", []):
            lines[note if note in shared or len(summaries) == 1 else f"[{summary['worker']}] {note}"] = None
    return list(lines)


def write_summary(terminalreporter, summaries: list[dict], json_path: Path | None,
                  markdown_path: Path | None) -> None:
    """The kick-checks section: model and compression, one line per task, and the reports written."""
    if not summaries:
        return
    summaries = sorted(summaries, key=lambda summary: summary["worker"])
    terminalreporter.section("kick-checks")
    terminalreporter.write_line(summaries[0]["header"])
    for summary in summaries:
        if summary["compression"]:
            prefix = f"[{summary['worker']}] " if len(summaries) > 1 else ""
            terminalreporter.write_line(prefix + summary["compression"])
    for note in worker_notes(summaries):
        terminalreporter.write_line(note)
    outcomes = {outcome["task"]: outcome for summary in reversed(summaries) for outcome in summary["outcomes"]}
    for outcome in sorted(outcomes.values(), key=lambda outcome: outcome["task"]):
        verdict = outcome["verdict"]
        terminalreporter.write_line(outcome["line"], red=verdict == "fail", green=verdict == "pass")
    if json_path or markdown_path:
        document = merged_document([summary["document"] for summary in summaries])
        for path in write_reports(document, json_path, markdown_path):
            terminalreporter.write_line(f"report: {path}")
