"""The sweep's tables and plots, built from the JSON report of every point in the folder (``kick report``).

Nothing here runs a model: a folder of reports written by ``kick sweep`` (or by any ``pytest -m kick
--kick-json`` run) becomes ``sweep.json`` (one row per configuration and task), ``sweep.md`` and two plots.
"""

from __future__ import annotations

import json
from pathlib import Path

from kick_checks.atomic import write_text_atomically
from kick_checks.errors import KickError


def task_tags(entry: dict) -> tuple[str, ...]:
    """A report entry's task tags: as the report recorded them, else as the task registry declares them."""
    if "tags" in entry:
        return tuple(entry["tags"])
    from kick_checks.tasks import all_tasks

    task = all_tasks().get(entry["task"])
    return tuple(task.tags) if task is not None else ()


def load_reports(folder: Path) -> list[dict]:
    documents = []
    for path in sorted(Path(folder).glob("*.json")):
        if path.name == "sweep.json":
            continue
        try:
            document = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise KickError(f"{path} is not a kick JSON report: rerun that sweep point") from None
        if "tasks" in document and "spec" in document:
            documents.append(document)
    if not documents:
        raise KickError(f"{folder} holds no kick JSON reports: run kick sweep --out {folder} first")
    return documents


def sweep_rows(documents: list[dict]) -> list[dict]:
    """One row per configuration and task: dense and compressed score, relative loss, verdict."""
    rows = []
    for document in documents:
        spec = document["spec"]
        for task in document["tasks"]:
            if task.get("verdict") not in ("pass", "fail"):
                continue
            rows.append({
                "method": spec["method"], "sparsity": spec["sparsity"], "pattern": spec["pattern"],
                "bits": spec.get("bits"), "task": task["task"], "metric": task["metric"], "n": task.get("n"),
                "dense": task["dense"],
                "compressed": task["compressed"], "relative_loss": task["relative_loss"], "verdict": task["verdict"],
                "tags": list(task_tags(task)), "higher_is_better": task.get("higher_is_better", True),
            })
    return sorted(rows, key=lambda row: (row["method"], row["pattern"], row["sparsity"], row["bits"] or 0,
                                         row["task"]))


#: Above the table: its dense column is not the baseline's full-set score, and readers compare it with that.
TABLE_NOTE = ("n: the items each point was scored on (a --kick-limit sample holds fewer than the full set). dense: "
              "the dense baseline the point was gated on, scored on those same n items, so it can differ from the "
              "baseline's full-set score and, for points gated on an older baseline, from today's.")


def markdown_table(rows: list[dict]) -> str:
    lines = [TABLE_NOTE, "",
             "| method | sparsity | pattern | bits | task | n | dense | compressed | change | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['sparsity']:.0%} | {row['pattern']} | {row['bits'] or ''} | {row['task']} | "
            f"{row.get('n') or ''} | {row['dense']:.3f} | {row['compressed']:.3f} | {-row['relative_loss']:+.1%} | "
            f"{row['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out: Path) -> list[Path]:
    """Score vs sparsity per task (one line per method, dense level dashed), and perplexity change against
    knowledge-task change. Needs matplotlib (``pip install matplotlib``); returns the PNG files written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: tables written, plots skipped (pip install matplotlib)")
        return []
    written = []
    unstructured = [row for row in rows if row["pattern"] == "unstructured" and not row["bits"]]
    tasks = sorted({row["task"] for row in unstructured})
    if tasks:
        figure, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), squeeze=False)
        for axis, task in zip(axes[0], tasks):
            task_rows = [row for row in unstructured if row["task"] == task]
            for method in sorted({row["method"] for row in task_rows}):
                points = sorted((row["sparsity"], row["compressed"]) for row in task_rows if row["method"] == method)
                axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
            axis.axhline(task_rows[0]["dense"], linestyle="--", color="grey", label="dense")
            if "language-modelling" in task_rows[0]["tags"]:
                axis.set_yscale("log")
            axis.set_title(task, fontsize=9)
            axis.set_xlabel("sparsity")
        axes[0][0].legend(fontsize=7)
        figure.tight_layout()
        path = out / "score_vs_sparsity.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    by_config: dict[tuple, dict[str, list[float]]] = {}
    for row in rows:
        losses = by_config.setdefault((row["method"], row["sparsity"], row["pattern"], row["bits"]), {})
        for tag in row["tags"]:
            losses.setdefault(tag, []).append(row["relative_loss"])
    pairs = [(losses["language-modelling"][0], sum(losses["knowledge"]) / len(losses["knowledge"]), config)
             for config, losses in by_config.items() if "language-modelling" in losses and "knowledge" in losses]
    if pairs:
        figure, axis = plt.subplots(figsize=(6, 4.5))
        for rise, knowledge_loss, config in pairs:
            method, sparsity, pattern, bits = config
            shape = pattern if pattern != "unstructured" else f"{sparsity:.0%}"
            label = f"{method} {bits}-bit" if bits else f"{method} {shape}"
            axis.scatter(rise * 100, -knowledge_loss * 100)
            axis.annotate(label, (rise * 100, -knowledge_loss * 100), fontsize=6)
        axis.set_xscale("symlog", linthresh=10)
        axis.set_xlabel("perplexity rise (%, symmetric log scale)")
        axis.set_ylabel("knowledge tasks change (%)")
        figure.tight_layout()
        path = out / "perplexity_vs_knowledge.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def report(folder: Path) -> list[Path]:
    rows = sweep_rows(load_reports(folder))
    written = [
        write_text_atomically(folder / "sweep.json", json.dumps(rows, indent=1) + "\n"),
        write_text_atomically(folder / "sweep.md", markdown_table(rows)),
    ]
    return written + plot(rows, folder)
