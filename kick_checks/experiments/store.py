"""The experiment store: a folder (or several) of kick JSON reports read as experiments, with their dense parents.

A folder of JSON files is the store, as CI artifacts and ``kick sweep`` leave them: nothing to set up, every file
readable on its own, a run added by copying its report in. Reading is one ``json.loads`` per file and plain
objects, so hundreds of runs load in well under a second (``bench/experiments.py`` measures it); queries are list
comprehensions over :class:`Experiment`, not a query engine.

Each report becomes one :class:`Experiment`. Reports written before kick-checks measured efficiency and
divergence still load: what they lack is listed in :attr:`Experiment.missing`, their storage is derived from the
per-layer zero counts they do record (marked as derived), and item texts are filled from the bundled data when its
hash matches (:mod:`.texts`). For every model identity the store adds its dense parent: a dense run in the store if
there is one, else a node made from the dense baselines whose fingerprint matches the runs' (the report's own
baseline path, then ``baselines_dirs``); items of a baseline recorded under other settings are not used. A file
that is not valid JSON, or valid JSON that is not a report, is one line in :attr:`Store.problems`; the others still
load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from compressors.spec import CompressionSpec, parse_pattern
from kick_checks.errors import KickError
from kick_checks.experiments.efficiency import FORMATS, choose_format
from kick_checks.experiments.record import model_key, spec_key
from kick_checks.experiments.texts import texts_for
from kick_checks.gate.baselines import Baseline, fingerprint_changes, read_baseline
from kick_checks.tasks.protocol import ItemOutcome, Metric, metric_from

DENSE_PREFIX = "dense"


@dataclass
class TaskRecord:
    """One task of one experiment: its items (empty when unknown) and what the run's own gate said of it."""

    task: str
    metric: Metric
    items: dict[str, ItemOutcome]
    fingerprint: dict
    score: float | None
    tags: tuple[str, ...] = ()
    gate: dict = field(default_factory=dict)  # the report's entry: dense, verdict, lost, gained, test, categories
    note: str = ""  # why the items are missing, where they are


@dataclass
class Experiment:
    id: str
    label: str
    model: dict
    spec: dict | None
    tasks: dict[str, TaskRecord]
    path: Path | None = None
    created: str = ""
    compression: dict | None = None
    efficiency: dict | None = None
    divergence: dict | None = None
    parent: dict | None = None  # as recorded, or inferred for old reports
    parent_id: str | None = None  # the experiment in this store it derives from
    environment: dict = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def is_dense(self) -> bool:
        return spec_key(self.spec) == ("dense",)

    @property
    def model_key(self) -> tuple:
        return model_key(self.model)

    @property
    def key(self) -> tuple:
        return self.model_key, spec_key(self.spec)

    @property
    def model_label(self) -> str:
        return f"{self.model.get('alias', '?')} ({self.model.get('dtype', '?')})"


@dataclass
class Store:
    experiments: list[Experiment]
    problems: list[str] = field(default_factory=list)  # one line per file that could not be read
    ignored: int = 0  # sweep tables (sweep.json), passed over without a line; any other JSON is a problem

    def get(self, experiment_id: str) -> Experiment:
        for experiment in self.experiments:
            if experiment.id == experiment_id:
                return experiment
        raise KickError(f"no experiment {experiment_id!r} in the store: use one of "
                        f"{', '.join(e.id for e in self.experiments[:12])}")

    def runs(self) -> list[Experiment]:
        return [experiment for experiment in self.experiments if experiment.path is not None]


def _label(spec: dict | None) -> str:
    if spec_key(spec) == ("dense",):
        return "dense"
    known = {name: spec[name] for name in CompressionSpec.__dataclass_fields__ if name in spec}
    known["pattern"] = parse_pattern(str(spec.get("pattern", "unstructured")))
    return CompressionSpec(**known).label()


def _items(entries: list[dict], fingerprint: dict) -> dict[str, ItemOutcome]:
    texts = texts_for(fingerprint) if any(not row.get("question") for row in entries) else {}
    items = {}
    for row in entries:
        question, gold = row.get("question", ""), row.get("gold", "")
        if not question and row["id"] in texts:
            question, gold = texts[row["id"]][0], gold or texts[row["id"]][1]
        items[row["id"]] = ItemOutcome(str(row["id"]), float(row["score"]), str(row.get("prediction", "")),
                                       str(row.get("category", "")), question, gold)
    return items


def _task(entry: dict) -> TaskRecord:
    result = entry.get("result") or {}
    name = entry.get("metric") or result.get("metric", "score")
    metric = metric_from(name)  # reports before the metric's direction was stored: the known metric of that name
    if "higher_is_better" in entry or "higher_is_better" in result:
        metric = metric_from({"name": name, "statistic": result.get("statistic", metric.statistic),
                              "higher_is_better": entry.get("higher_is_better", result.get("higher_is_better"))})
    fingerprint = result.get("fingerprint", {})
    gate = {key: entry[key] for key in ("dense", "verdict", "relative_loss", "n", "lost", "gained", "test",
                                         "categories", "baseline", "tolerance_text") if key in entry}
    score = result.get("score", entry.get("compressed", entry.get("dense")))
    return TaskRecord(entry["task"], metric, _items(result.get("items", []), fingerprint), fingerprint, score,
                      tuple(entry.get("tags", ())), gate)


def derived_storage(compression: dict, spec: dict | None) -> dict | None:
    """Storage of a report that predates measured efficiency, from its per-layer zero counts: exact for the
    16-bit dense and bitmap formats and for N:M (the pattern the spec asked for, as the gate checked its
    sparsity), estimated for GPTQ (no shapes recorded: groups taken as weights / group size, no group index)."""
    layers = compression.get("layers") or []
    if not layers:
        return None
    numel = sum(layer["numel"] for layer in layers)
    kept = numel - sum(layer["zeros"] for layer in layers)
    formats = {"dense": numel * 2, "bitmap": -(-numel // 8) + kept * 2}
    spec = spec or {}
    pattern = parse_pattern(str(spec.get("pattern", "unstructured")))
    bits, group_size = spec.get("bits"), spec.get("group_size") or 128
    if pattern.is_structured:
        kept_nm = numel * (pattern.m - pattern.n) // pattern.m
        formats["n:m"] = kept_nm * 2 + -(-kept_nm * max(1, (pattern.m - 1).bit_length()) // 8)
    if bits:
        groups = numel / (numel ** 0.5 if group_size == -1 else group_size)
        formats["gptq"] = int(numel * bits / 8 + groups * (2 + bits / 8))
    stored_as = choose_format(formats)
    return {"value_bits": 16, "layers": len(layers), "formats": formats, "stored_as": stored_as,
            "format": FORMATS[stored_as].replace("BITS", str(bits)), "bytes": formats[stored_as],
            "dense_bytes": formats["dense"], "ratio": formats[stored_as] / formats["dense"],
            "derived": "from the report's per-layer zero counts; the report predates measured storage"
                       + (" (GPTQ groups estimated)" if stored_as == "gptq" else "")}


def _experiment(document: dict, path: Path, experiment_id: str) -> Experiment:
    spec = document.get("spec")
    tasks = {}
    for entry in document.get("tasks", []):
        record = _task(entry)
        tasks[record.task] = record
    missing = [name for name in ("efficiency", "divergence", "parent") if name not in document]
    efficiency = document.get("efficiency")
    if efficiency is None and document.get("compression"):
        storage = derived_storage(document["compression"], spec)
        efficiency = {"storage": storage, "throughput": None} if storage else None
    parent = document.get("parent")
    if parent is None and "parent" in missing and spec_key(spec) != ("dense",):
        if spec.get("bits") is not None and spec.get("sparsity"):
            pruned = {**spec, "bits": None}
            parent = {"label": _label(pruned), "spec": pruned, "how": "inferred: pruned, then quantized"}
        else:
            parent = {"label": "dense", "spec": None}
    if any("question" not in row for entry in document.get("tasks", [])
           for row in (entry.get("result") or {}).get("items", [])[:1]):
        missing.append("item texts")  # filled from the bundled data where its hash matches
    return Experiment(
        id=experiment_id, label=document.get("spec_label") or _label(spec), model=document.get("model", {}),
        spec=spec, tasks=tasks, path=path, created=document.get("created", ""),
        compression=document.get("compression"), efficiency=efficiency, divergence=document.get("divergence"),
        parent=parent, environment=document.get("environment", {}), missing=missing,
    )


def _files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files += sorted(candidate for candidate in path.rglob("*.json") if not candidate.name.startswith("."))
        elif path.is_file():
            files.append(path)
        elif path.with_suffix(".json").is_file():  # a sweep point named without its suffix
            files.append(path.with_suffix(".json"))
        else:
            raise KickError(f"{path} is neither a kick JSON report nor a folder of them: give a report, a sweep "
                            "point or a folder")
    return list(dict.fromkeys(file.resolve() for file in files))


def _ids(files: list[Path]) -> dict[Path, str]:
    """Short unique names: the file stem, with as many parent folders as it takes to tell two apart."""
    depth, names = 0, {}
    while True:
        names = {file: "/".join([*file.parts[-1 - depth:-1], file.stem]) for file in files}
        if len(set(names.values())) == len(names) or depth > 8:
            return names
        depth += 1


def _is_sweep_table(file: Path, document: object) -> bool:
    """``kick sweep``'s own ``sweep.json`` (one row per configuration and task): it sits in every sweep folder and
    repeats what the reports beside it hold, so it is passed over without a line."""
    return file.name == "sweep.json" and isinstance(document, list) and all(
        isinstance(row, dict) and "task" in row and "verdict" in row for row in document)


def _shape(document: object) -> str:
    """What a JSON document that is not a report holds, so the user can tell which file it is."""
    if isinstance(document, dict):
        keys = list(document)
        return "an object with the keys " + ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "") if keys \
            else "an empty object"
    if isinstance(document, list):
        return f"a list of {len(document)} entries"
    return f"the single value {json.dumps(document)[:40]}"


def load_store(paths: list[Path], baselines_dirs: list[Path] = ()) -> Store:
    """Read every report under ``paths`` (files, folders, sweep points); baselines given there or found for the
    runs become the dense parents' items."""
    files = _files(paths)
    names = _ids(files)
    experiments, problems, baselines, ignored = [], [], {}, 0
    for file in files:
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            problems.append(f"{file}: not readable as JSON ({type(error).__name__}: {error}); left out")
            continue
        if _is_sweep_table(file, document):
            ignored += 1
        elif not isinstance(document, dict):
            problems.append(f"{file}: valid JSON but not a kick report ({_shape(document)}); left out")
        elif "schema" in document and "items" in document and "task" in document:
            baselines[str(file)] = file
        elif "tasks" in document and "spec" in document:
            try:
                experiments.append(_experiment(document, file, names[file]))
            except (KeyError, TypeError, ValueError) as error:
                problems.append(f"{file}: not a kick report this version reads ({type(error).__name__}: {error}); "
                                "left out")
        else:
            problems.append(f"{file}: valid JSON but not a kick report ({_shape(document)}, not 'tasks' and "
                            "'spec'); left out")
    store = Store(experiments, problems, ignored)
    _add_dense_parents(store, [*baselines.values()], [Path(folder) for folder in baselines_dirs])
    _link_parents(store)
    return store


def _baseline_candidates(run: Experiment, task: TaskRecord, given: list[Path], folders: list[Path]) -> list[Path]:
    alias = run.model.get("alias", "")
    candidates = [Path(task.gate["baseline"])] if task.gate.get("baseline") else []
    candidates += [path for path in given if path.stem == task.task and path.parent.name == alias]
    candidates += [folder / alias / f"{task.task}.json" for folder in folders]
    return candidates


def _matching_baseline(run: Experiment, task: TaskRecord, candidates: list[Path],
                       cache: dict) -> tuple[Baseline | None, str]:
    """The first candidate baseline recorded under the run's settings, else None and why the first readable one
    was not used (its score, items and what differs), so a dense score that differs from the shipped baseline's
    says where the difference comes from."""
    mismatch = ""
    for path in candidates:
        if path not in cache:
            try:
                cache[path] = read_baseline(path) if path.is_file() else None
            except KickError:
                cache[path] = None
        baseline = cache[path]
        if baseline is None:
            continue
        changes = fingerprint_changes(baseline.fingerprint, {"model": run.model, **task.fingerprint})
        if not changes:
            return baseline, ""
        mismatch = mismatch or (f"the baseline {baseline.path} ({baseline.score:.3f} on {len(baseline.items)} items) "
                                f"was recorded under other settings ({'; '.join(changes)})")
    return None, mismatch


def _add_dense_parents(store: Store, given: list[Path], folders: list[Path]) -> None:
    """One dense experiment per model identity that has compressed runs (a dense run of the store, if any)."""
    cache: dict = {}
    dense_runs = {run.model_key: run for run in store.experiments if run.is_dense}
    for key in dict.fromkeys(run.model_key for run in store.experiments if not run.is_dense):
        runs = [run for run in store.experiments if run.model_key == key and not run.is_dense]
        dense = dense_runs.get(key)
        if dense is None:
            first = runs[0]
            dense = Experiment(id=f"{DENSE_PREFIX} {first.model_label}", label="dense", model=first.model,
                               spec=None, tasks={}, missing=["efficiency", "divergence"])
            if first.compression:
                storage = derived_storage({"layers": [{**layer, "zeros": 0} for layer in
                                                      first.compression.get("layers", [])]}, None)
                dense.efficiency = {"storage": storage, "throughput": None} if storage else None
            store.experiments.insert(0, dense)
        for run in runs:
            for name, task in run.tasks.items():
                if name in dense.tasks and dense.tasks[name].items:
                    continue
                baseline, mismatch = _matching_baseline(run, task, _baseline_candidates(run, task, given, folders),
                                                        cache)
                if baseline is not None:
                    entries = [{"id": item.id, "score": item.score, "prediction": item.prediction,
                                "category": item.category} for item in baseline.items]
                    dense.tasks[name] = TaskRecord(name, task.metric, _items(entries, task.fingerprint),
                                                   task.fingerprint, baseline.score, task.tags,
                                                   note=f"items from the baseline {baseline.path}")
                elif name not in dense.tasks:
                    dense.tasks[name] = TaskRecord(
                        name, task.metric, {}, task.fingerprint, task.gate.get("dense"), task.tags,
                        note=(mismatch or "no baseline with this run's fingerprint was found (pass --baselines DIR)")
                        + ": only the runs' own comparisons with dense are known")


def _link_parents(store: Store) -> None:
    by_key = {experiment.key: experiment for experiment in store.experiments}
    for experiment in store.experiments:
        if experiment.is_dense or experiment.parent is None:
            continue
        parent_spec = experiment.parent.get("spec")
        parent = by_key.get((experiment.model_key, spec_key(parent_spec)))
        if parent is None:  # a pruned parent nobody ran on its own: hang the run under dense, and say so
            parent = by_key.get((experiment.model_key, ("dense",)))
            if parent_spec is not None:
                experiment.parent = {**experiment.parent, "in_store": False}
        experiment.parent_id = parent.id if parent is not None else None
