"""Baseline files: round trip, atomic writes, one-line errors for every bad file, fingerprint changes."""

import json
from pathlib import Path

import pytest

from kick_checks.errors import KickError
from kick_checks.gate.baselines import (
    SCHEMA_VERSION,
    baseline_fingerprint,
    baseline_path,
    fingerprint_changes,
    read_baseline,
    write_baseline,
)
from kick_checks.gate.comparison import compare
from kick_checks.gate.tolerance import Tolerance
from kick_checks.tasks.protocol import EXACT_MATCH, ItemOutcome, TaskResult

MODEL = {"alias": "m", "source": "local", "name": "m", "sha256": "abc", "dtype": "bfloat16"}
TASK = {"task_data": "d1", "prompt_version": "p1", "decoding": {"max_new_tokens": 16}}


def result(scores: list[float], task: str = "factoid_qa") -> TaskResult:
    items = [ItemOutcome(f"q{i}", score, f"answer {i}") for i, score in enumerate(scores)]
    return TaskResult(task, EXACT_MATCH, items, fingerprint=dict(TASK))


def test_round_trip(tmp_path):
    path = baseline_path(tmp_path, "m", "factoid_qa")
    assert path == tmp_path / "m" / "factoid_qa.json"
    write_baseline(path, result([1, 0, 1, 1]), MODEL)
    baseline = read_baseline(path)
    assert (baseline.task, baseline.metric, baseline.score, baseline.n) == ("factoid_qa", EXACT_MATCH, 0.75, 4)
    assert baseline.by_id()["q1"] == ItemOutcome("q1", 0.0, "answer 1")
    assert baseline.fingerprint["model"] == MODEL
    assert not fingerprint_changes(baseline.fingerprint, baseline_fingerprint(MODEL, TASK))
    assert [p.name for p in path.parent.iterdir()] == ["factoid_qa.json"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = baseline_path(tmp_path, "m", "factoid_qa")
    write_baseline(path, result([1, 1]), MODEL)
    before = path.read_bytes()

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("kick_checks.atomic.os.fsync", disk_full)
    with pytest.raises(OSError):
        write_baseline(path, result([0, 0]), MODEL)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["factoid_qa.json"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no dense baseline at"),
        ('{"schema": 1, "task": "factoid_qa", "sco', "is not valid JSON (truncated?)"),
        (json.dumps({"schema": 0}), "has schema 0, this kick-checks reads schemas 1, 2"),
        (json.dumps([1, 2]), "has schema None"),
        (json.dumps({"schema": SCHEMA_VERSION, "task": "factoid_qa"}), "is malformed"),
        (json.dumps({"schema": SCHEMA_VERSION, "task": "t", "metric": "m", "score": "x", "items": [],
                     "fingerprint": {}}), "is malformed"),
    ],
)
def test_bad_baseline_files_name_the_update_command(tmp_path, content, expected):
    path = tmp_path / "m" / "factoid_qa.json"
    if content is not None:
        path.parent.mkdir()
        path.write_text(content)
    with pytest.raises(KickError) as error:
        read_baseline(path)
    message = str(error.value)
    assert expected in message and "pytest -m kick --kick-update-baselines" in message
    assert "\n" not in message


def test_fingerprint_changes_name_what_changed():
    stored = baseline_fingerprint(MODEL, TASK)
    current = baseline_fingerprint({**MODEL, "dtype": "float32"}, {**TASK, "prompt_version": "p2"})
    assert fingerprint_changes(stored, current) == [
        "model dtype: 'bfloat16' -> 'float32'",
        "prompt_version: 'p1' -> 'p2'",
    ]
    newer_package = {**stored, "kick_checks_version": "99.0"}
    assert fingerprint_changes(stored, newer_package) == []


def test_comparison_lists_lost_items_and_is_one_sided(tmp_path):
    path = baseline_path(tmp_path, "m", "factoid_qa")
    write_baseline(path, result([1, 1, 1, 1, 0]), MODEL)
    baseline = read_baseline(path)
    worse = compare(baseline, result([1, 0, 1, 1, 0]), Tolerance(0.05), "wanda 50% unstructured")
    assert not worse.passed and worse.relative_drop == pytest.approx(0.25)
    assert [item.id for item in worse.lost] == ["q1"]
    message = worse.failure_message()
    assert "dense 0.800 -> compressed 0.600" in message and "25.0%" in message and "5.0%" in message
    assert "q1" in message and str(Path(path)) in message
    better = compare(baseline, result([1, 1, 1, 1, 1]), Tolerance(0.0), "wanda 10% unstructured")
    assert better.passed and better.gained == 1


def test_significance_gate_and_statistics_in_the_message(tmp_path):
    path = baseline_path(tmp_path, "m", "factoid_qa")
    write_baseline(path, result([1] * 40), MODEL)
    baseline = read_baseline(path)
    one_loss = result([1] * 39 + [0])  # a 2.5% drop: beyond a zero tolerance, but one item is not significant
    threshold = compare(baseline, one_loss, Tolerance(0.0), "wanda 10%")
    significant = compare(baseline, one_loss, Tolerance(0.0), "wanda 10%", gate="significant")
    assert not threshold.passed and significant.passed
    assert threshold.test.method == "mcnemar-exact" and threshold.test.p_value == 0.5
    many = compare(baseline, result([1] * 30 + [0] * 10), Tolerance(0.0), "wanda 50%", gate="significant")
    assert not many.passed and many.test.p_value == pytest.approx(2**-10)
    assert "p=0.00098" in many.line() and "McNemar exact: 10 lost, 0 gained" in many.failure_message()


def test_far_better_than_dense_is_flagged_as_a_stale_baseline(tmp_path):
    path = baseline_path(tmp_path, "m", "factoid_qa")
    write_baseline(path, result([0] * 30 + [1] * 10), MODEL)
    better = compare(read_baseline(path), result([1] * 40), Tolerance(0.05), "wanda 10%")
    assert better.passed and better.possibly_stale and "is the baseline stale?" in better.line()


def test_absolute_and_recovery_tolerances(tmp_path):
    path = baseline_path(tmp_path, "m", "factoid_qa")
    write_baseline(path, result([1] * 8 + [0] * 2), MODEL)
    baseline, worse = read_baseline(path), result([1] * 7 + [0] * 3)  # 0.8 -> 0.7
    assert compare(baseline, worse, Tolerance(0.11, "absolute"), "x").passed
    assert not compare(baseline, worse, Tolerance(0.09, "absolute"), "x").passed
    assert compare(baseline, worse, Tolerance(0.875, "recovery"), "x").passed  # 0.7 / 0.8 = 0.875
    failed = compare(baseline, worse, Tolerance(0.9, "recovery"), "x")
    assert not failed.passed and "recovery >= 90.0%" in failed.line()
    assert "absolute 0.1, recovery 87.5%" in failed.failure_message()


def test_the_fix_line_names_the_users_baselines_folder(tmp_path):
    from kick_checks.gate.store import BaselineStore

    folder = tmp_path / "my-baselines"
    store = BaselineStore("m", folder, tmp_path, tmp_path / "shipped")
    with pytest.raises(KickError, match=f"record it with pytest -m kick --kick-update-baselines --kick-baselines-dir "
                                        f"{folder}"):
        store.prepare({"factoid_qa": {}}, {"alias": "m"})
