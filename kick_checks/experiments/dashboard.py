"""``kick dashboard``: every experiment of a store in one self-contained HTML file.

The file needs no server and no network: it opens from a CI artifact, offline. It holds the experiments as one
JSON block, the page's own script and style (``assets/``), and the plotting library. The charts use Plotly
(plotly.js from the ``plotly`` package, inlined as its ``include_plotlyjs=True`` HTML does): it is well kept,
draws interactive scatter and line charts (hover, zoom, legend toggles) with no further code of ours, and the
page re-draws them from its data when the user picks other axes or runs. The price is size: plotly.js is about
4.8 MB, so a dashboard weighs about 5 MB whatever it holds (the data of the 31 committed sweep runs adds 0.4 MB).
The table, provenance tree and item diff are plain HTML written by the page's script.

What the page shows: the sortable, filterable table (method, bits, sparsity, free text; every task score with the
n it rests on, marked when that is under 50 items, and the task columns first so they stay in view), the
provenance tree (model -> dense -> runs -> runs derived from them), the trade-off chart (any task's score against
stored size or measured throughput, Pareto front marked), the pick-two item diff (lost and gained items with their
texts), and the per-block divergence chart; a method keeps one colour in both charts. A dense parent made from its
runs shows the score their gates compared with, on their sample, and says which stored baseline differs and why.
Its state lives in the URL's ``#`` part, so a link can point at one comparison.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import kick_checks
from kick_checks.atomic import write_text_atomically
from kick_checks.errors import KickError
from kick_checks.experiments.store import Experiment, Store


def _plotly_js() -> str:
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise KickError("kick dashboard draws its charts with plotly, which is not installed: pip install plotly "
                        "(a kick-checks dependency; a --no-deps install skips it)") from None
    return get_plotlyjs()


def _asset(name: str) -> str:
    return resources.files("kick_checks.experiments").joinpath("assets", name).read_text("utf-8")


def _efficiency(experiment: Experiment) -> dict:
    efficiency = experiment.efficiency or {}
    storage = efficiency.get("storage") or {}
    throughput = efficiency.get("throughput") or {}
    return {
        "size": storage.get("bytes"), "size_derived": bool(storage.get("derived")),
        "stored_as": storage.get("stored_as"), "format": storage.get("format"), "ratio": storage.get("ratio"),
        "prefill": throughput.get("prefill_tokens_per_s"), "decode": throughput.get("decode_tokens_per_s"),
        "device": throughput.get("device") or experiment.environment.get("device"),
    }


def _dense_on_the_runs_sample(dense: Experiment, task: str, store: Store) -> dict:
    """The dense node's score as its runs' gates compared it: on the items the runs answered (a ``--kick-limit``
    sample is fewer than the baseline's), against the baseline they ran with (perhaps an older one than the
    store's). Its ``n`` and note say so, because this score can differ from the shipped baseline's."""
    gates = [run.tasks[task].gate for run in store.runs() if run.model_key == dense.model_key and task in run.tasks]
    gates = [gate for gate in gates if gate.get("dense") is not None]
    if not gates:
        return {}
    first = gates[0]
    scores = sorted({round(gate["dense"], 3) for gate in gates})
    spread = "" if len(scores) == 1 else f"; the runs' gates disagree: {', '.join(f'{s:.3f}' for s in scores)}"
    where = dense.tasks[task].note
    return {"score": first["dense"], "n": first.get("n"),
            "note": f"dense as the runs' own gates compared it, on the {first.get('n', '?')} items they answered"
                    f"{spread}" + (f"; {where}" if where else "")}


def _row(experiment: Experiment, store: Store) -> dict:
    spec = experiment.spec or {}
    divergence = experiment.divergence or {}
    dense = next((e for e in store.experiments if e.is_dense and e.model_key == experiment.model_key), None)
    tasks = {}
    for name, task in experiment.tasks.items():
        entry = {"score": task.score, "verdict": task.gate.get("verdict"), "n": len(task.items) or task.gate.get("n"),
                 "relative_loss": task.gate.get("relative_loss"), "note": task.note}
        if experiment.is_dense and experiment.path is None:
            entry.update(_dense_on_the_runs_sample(experiment, name, store))
        tasks[name] = entry
    return {
        "id": experiment.id, "label": experiment.label, "model": experiment.model_label,
        "model_key": json.dumps(experiment.model_key), "dense": experiment.is_dense,
        "method": "dense" if experiment.is_dense else spec.get("method"),
        "sparsity": spec.get("sparsity") or 0.0, "pattern": spec.get("pattern") or "unstructured",
        "bits": spec.get("bits"), "group_size": spec.get("group_size") if spec.get("bits") else None,
        "created": experiment.created, "file": str(experiment.path) if experiment.path else None,
        "parent_id": experiment.parent_id, "parent": experiment.parent,
        "dense_id": dense.id if dense is not None else None,
        "tasks": tasks, **_efficiency(experiment),
        "kl": (divergence.get("kl") or {}).get("mean"), "flagged_block": divergence.get("flagged_block"),
        "flagged_layer": divergence.get("flagged_layer"),
        "blocks": [block["relative_difference"] for block in divergence.get("blocks", [])] or None,
        "missing": experiment.missing,
    }


def dashboard_data(store: Store) -> dict:
    """Everything the page shows, as plain data: item texts once per task, answers per experiment."""
    tasks, texts, items, recorded = {}, {}, {}, {}
    for experiment in store.experiments:
        answers = items.setdefault(experiment.id, {})
        for name, task in experiment.tasks.items():
            tasks.setdefault(name, {"metric": task.metric.name, "higher_is_better": task.metric.higher_is_better,
                                    "binary": task.metric.statistic == "mean"})
            task_texts = texts.setdefault(name, {})
            for item in task.items.values():
                if item.id not in task_texts or (item.question and not task_texts[item.id][0]):
                    task_texts[item.id] = [item.question, item.gold, item.category]
            if task.items:
                answers[name] = {item.id: [item.score, item.prediction] for item in task.items.values()}
            if task.gate.get("lost") is not None:
                recorded.setdefault(experiment.id, {})[name] = {"lost": task.gate["lost"],
                                                                "gained": task.gate.get("gained", 0),
                                                                "dense": task.gate.get("dense")}
            if task.note:
                recorded.setdefault(experiment.id, {}).setdefault("notes", {})[name] = task.note
    for name in tasks:
        tasks[name]["binary"] = tasks[name]["binary"] and all(
            score in (0.0, 1.0) for answers in items.values() for score, _ in answers.get(name, {}).values())
    return {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": kick_checks.__version__,
        "experiments": [_row(experiment, store) for experiment in store.experiments],
        "tasks": dict(sorted(tasks.items())), "texts": texts, "items": items, "recorded": recorded,
        "problems": store.problems,
    }


def _script_json(data: dict) -> str:
    """JSON safe inside a ``<script>`` element: no ``<`` can close it."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def render(store: Store) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>kick-checks experiments ({len(store.experiments)})</title>"
        f"<style>{_asset('dashboard.css')}</style></head><body>"
        f"{_asset('dashboard.html')}"
        f"<script type=\"application/json\" id=\"kick-data\">{_script_json(dashboard_data(store))}</script>"
        f"<script>{_plotly_js()}</script>"
        f"<script>{_asset('dashboard.js')}</script>"
        "</body></html>\n"
    )


def write_dashboard(store: Store, out: Path) -> Path:
    return write_text_atomically(out, render(store))
