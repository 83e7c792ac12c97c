"""The experiment store and ``kick compare``: old and new reports, bad input, exit status for nightly gating."""

import json
from pathlib import Path

import pytest
from experiment_reports import MODEL, outcomes, report, write

from kick_checks.cli import main
from kick_checks.experiments.compare import compare_experiments
from kick_checks.experiments.store import load_store
from kick_checks.session import shipped_baselines_dir

SWEEP = Path(__file__).parent.parent / "docs" / "sweep"
TASKS = ("factoid_qa", "retrieval_qa.closed_book")


@pytest.fixture
def dense():
    return {task: outcomes(0.8, 60, seed=1) for task in TASKS}


@pytest.fixture
def two_runs(tmp_path, dense):
    """Last night's run (A) and tonight's (B), which lost item q000 and many more."""
    a_items = {task: outcomes(0.75, 60, seed=2, right=(0,)) for task in TASKS}
    b_items = {task: outcomes(0.35, 60, seed=3, wrong=(0,)) for task in TASKS}
    a = write(tmp_path / "last-night" / "kick.json", report({"method": "wanda", "sparsity": 0.3}, a_items, dense))
    b = write(tmp_path / "tonight" / "kick.json", report({"method": "wanda", "sparsity": 0.3}, b_items, dense))
    return a, b


def test_old_sweep_reports_load_with_what_they_lack_said(tmp_path):
    store = load_store([SWEEP], [Path(__file__).parent.parent / "baselines"])
    runs = store.runs()
    assert len(runs) == len([p for p in SWEEP.glob("*.json") if p.name != "sweep.json"]) and not store.problems
    assert store.ignored == 1  # sweep.json, a table, not a report
    run = store.get("wanda-2of4")
    assert run.label == "wanda 50% 2:4" and {"efficiency", "divergence", "parent"} <= set(run.missing)
    storage = run.efficiency["storage"]
    assert storage["stored_as"] == "n:m" and storage["ratio"] == pytest.approx(9 / 16, abs=1e-3)
    assert "derived" in storage and run.efficiency["throughput"] is None
    first = run.tasks["factoid_qa"].items["f001"]
    assert first.question == "What is the capital of France?" and first.gold == "Paris"  # from the bundled data
    assert run.tasks["perplexity"].metric.higher_is_better is False
    (dense,) = [e for e in store.experiments if e.is_dense]
    assert run.parent_id == dense.id and len(dense.tasks["multiple_choice"].items) == 240
    assert not dense.tasks["factoid_qa"].items
    note = dense.tasks["factoid_qa"].note  # why the sweep's dense 0.520 is not the shipped baseline's 0.540
    shipped = json.loads((shipped_baselines_dir() / "smollm2-135m" / "factoid_qa.json").read_text())["score"]
    assert f"smollm2-135m/factoid_qa.json ({shipped:.3f} on 239 items) was recorded under other settings (decoding:" \
        in note


def test_new_reports_link_prune_then_quantize_to_the_pruned_run(tmp_path, dense):
    items = {task: outcomes(0.5, 60, seed=4) for task in TASKS}
    pruned = write(tmp_path / "pruned.json", report({"method": "sparsegpt", "sparsity": 0.5}, items, dense))
    parent = {"label": "sparsegpt 50% unstructured", "spec": json.loads(pruned.read_text())["spec"]}
    write(tmp_path / "pruned-4bit.json", report({"method": "sparsegpt", "sparsity": 0.5, "bits": 4, "group_size": 64},
                                                items, dense, parent=parent))
    store = load_store([tmp_path])
    assert store.get("pruned-4bit").parent_id == "pruned"
    assert store.get("pruned").parent_id == store.experiments[0].id and store.experiments[0].is_dense


def test_a_corrupt_report_is_one_line_and_the_rest_still_load(tmp_path, two_runs):
    truncated = tmp_path / "last-night" / "truncated.json"
    truncated.write_text(two_runs[0].read_text()[:500])
    store = load_store([tmp_path])
    assert len(store.runs()) == 2
    (problem,) = store.problems
    assert str(truncated) in problem and "\n" not in problem


def test_compare_lists_the_lost_item_with_its_texts_and_gates_on_a_significant_loss(two_runs, capsys):
    assert main(["compare", str(two_runs[0].parent), str(two_runs[1].parent), "--show", "100"]) == 1
    out = capsys.readouterr().out
    assert "factoid_qa: exact_match A 0.683 -> B 0.233 (-0.450, n=60, 34 lost, 7 gained; mcnemar-exact" in out
    assert "B WORSE" in out and f"A: {two_runs[0]} (wanda 30% unstructured)" in out
    assert "q000 'Question number 0?' gold 'answer 0': A 'answer 0' -> B 'wrong 0'" in out
    assert "lost [geography]:" in out and "by category: geography" in out
    assert "B is significantly worse than A (one-sided p < 0.05) on factoid_qa" in out
    assert main(["compare", str(two_runs[1]), str(two_runs[0])]) == 0  # the other way round: a gain
    assert "not significantly worse" in capsys.readouterr().out


def test_compare_writes_json_and_reads_sweep_points_by_name(tmp_path, capsys):
    out = tmp_path / "comparison.json"
    assert main(["compare", str(SWEEP / "wanda-s50"), str(SWEEP / "sparsegpt-s50"), "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    (comparison,) = document["comparisons"]
    factoid = next(task for task in comparison["tasks"] if task["task"] == "factoid_qa")
    assert factoid["n"] == 100 and len(factoid["lost"]) == 4 and factoid["gained_count"] == 6
    assert comparison["worse"] == []


def test_different_samples_are_compared_on_the_shared_items(tmp_path, dense):
    a = report({"method": "wanda", "sparsity": 0.3}, {"factoid_qa": outcomes(0.7, 60, seed=5)}, dense)
    b = report({"method": "wanda", "sparsity": 0.3}, {"factoid_qa": outcomes(0.7, 60, seed=6)[:40]}, dense)
    store = load_store([write(tmp_path / "a.json", a), write(tmp_path / "b.json", b)])
    comparison = compare_experiments(store.get("a"), store.get("b"))
    (task,) = comparison.tasks
    assert task.n == 40 and "compared on the 40 items both runs answered (A has 60, B 40" in task.notes[0]


def test_mixed_models_and_fingerprints_are_left_out_with_the_reason(tmp_path, dense, capsys):
    other_model = {**MODEL, "sha256": "ef" * 32}
    items = {"factoid_qa": outcomes(0.7, 60, seed=7)}
    write(tmp_path / "a" / "wanda.json", report({"method": "wanda", "sparsity": 0.3}, items, dense))
    write(tmp_path / "a" / "magnitude.json", report({"method": "magnitude", "sparsity": 0.3}, items, dense))
    write(tmp_path / "b" / "wanda.json", report({"method": "wanda", "sparsity": 0.3}, items, dense))
    write(tmp_path / "b" / "magnitude.json", report({"method": "magnitude", "sparsity": 0.3}, items, dense,
                                                    model=other_model))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert f"A: {tmp_path / 'a' / 'wanda.json'} (wanda 30% unstructured), B: {tmp_path / 'b' / 'wanda.json'}" in out
    assert "left out magnitude (A): no run of the same model and spec" in out
    assert "left out magnitude (B): no run of the same model and spec" in out
    assert main(["compare", str(tmp_path / "a" / "magnitude.json"), str(tmp_path / "b" / "magnitude.json")]) == 2
    assert "runs of different models" in capsys.readouterr().err
    changed = report({"method": "wanda", "sparsity": 0.3}, items, dense)
    changed["tasks"][0]["result"]["fingerprint"] = {**changed["tasks"][0]["result"]["fingerprint"],
                                                    "prompt_version": "toy-2"}
    store = load_store([tmp_path / "a" / "wanda.json", write(tmp_path / "c.json", changed)])
    comparison = compare_experiments(*store.runs())
    assert not comparison.tasks and "factoid_qa: not comparable, its prompt_version differ" in comparison.left_out[0]


def test_dense_as_a_uses_the_runs_own_gate_when_the_dense_items_are_unknown(capsys):
    assert main(["compare", "dense", str(SWEEP / "wanda-2of4.json"), "--show", "1"]) == 1
    out = capsys.readouterr().out
    assert "factoid_qa: exact_match A 0.520 -> B 0.000 (-0.520, n=100, 52 lost" in out
    assert "as B's gate compared it with dense" in out and "mcnemar-exact p=2.2e-16" in out
    shipped = json.loads((SWEEP.parent.parent / "baselines" / "smollm2-135m" / "multiple_choice.json").read_text())
    run = json.loads((SWEEP / "wanda-2of4.json").read_text())
    ids = {item["id"] for task in run["tasks"] if task["task"] == "multiple_choice" for item in task["result"]["items"]}
    dense = [item["score"] for item in shipped["items"] if item["id"] in ids]
    # the dense items come from the shipped baseline, on the run's 100 items
    assert f"multiple_choice: accuracy A {sum(dense) / len(dense):.3f} -> B 0.310 (" in out and len(dense) == 100


def test_nothing_readable_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "broken.json").write_text("{")
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "holds no readable kick report" in error and "broken.json" in error and error.count("\n") == 1


def test_the_committed_runs_nest_prune_then_quantize_under_the_pruned_run():
    store = load_store([Path(__file__).parent.parent / "docs" / "runs"])
    quantized = store.get("magnitude-s50-4bit")
    assert quantized.parent_id == "magnitude-s50" and "then gptq quantized" in quantized.parent["how"]
    assert store.get("magnitude-s50").parent_id == "dense" and store.get("dense").is_dense
    assert store.get("magnitude-2of4").divergence["flagged_block"] == 0


def test_calibration_settings_key_only_the_methods_that_read_calibration_data():
    from kick_checks.experiments.record import spec_key

    def spec(method, samples):
        return {"method": method, "sparsity": 0.5, "pattern": "unstructured", "calib_samples": samples, "bits": None}

    assert spec_key(spec("magnitude", 16)) == spec_key(spec("magnitude", 128))
    assert spec_key(spec("wanda", 16)) != spec_key(spec("wanda", 128))


def test_json_that_is_not_a_report_is_one_line_too(tmp_path, two_runs, capsys):
    """Valid JSON of the wrong shape used to vanish without a word while a truncated report got a line."""
    notes = write(tmp_path / "tonight" / "notes.json", {"comment": "wanda 30% looked worse", "owner": "ci"})
    listed = write(tmp_path / "tonight" / "list.json", [1, 2, 3])
    store = load_store([tmp_path])
    assert len(store.runs()) == 2 and store.ignored == 0
    assert sorted(store.problems) == [
        f"{listed}: valid JSON but not a kick report (a list of 3 entries); left out",
        f"{notes}: valid JSON but not a kick report (an object with the keys comment, owner, not 'tasks' and "
        "'spec'); left out",
    ]
    assert main(["compare", str(two_runs[0]), str(notes)]) == 2
    assert f"{notes}: valid JSON but not a kick report" in capsys.readouterr().err
    main(["compare", str(two_runs[0].parent), str(two_runs[1].parent)])
    assert f"skipped {notes}: valid JSON but not a kick report" in capsys.readouterr().out
