"""The example third-party task in examples/: found through its entry point, recorded, and gated by the kick suite."""

import json
from pathlib import Path

import pytest
from entry_points import install_entry_point
from tiny_models import COLOURS, toy_items

from kick_checks.tasks import all_tasks, get_task

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "kick-example-task"


@pytest.fixture
def installed_example(tmp_path, monkeypatch):
    """What ``pip install`` of the example leaves behind: the package importable and its entry-point metadata."""
    install_entry_point(monkeypatch, tmp_path, "kick-example-task", "kick_checks.tasks",
                        "answer_preference = kick_example_task:AnswerPreference", EXAMPLE)
    all_tasks.cache_clear()
    yield
    all_tasks.cache_clear()


@pytest.fixture
def toy_pairs(tmp_path) -> Path:
    """The toy model's twelve facts, each with another colour as the distractor."""
    rows = [{"id": row["id"], "question": row["question"], "answer": row["answers"][0],
             "distractor": COLOURS[(COLOURS.index(row["answers"][0]) + 5) % len(COLOURS)]} for row in toy_items()]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_the_entry_point_adds_a_task_with_its_data_and_tolerance_keys(installed_example):
    from kick_checks.settings import build_settings

    task = get_task("answer_preference")
    assert type(task).__name__ == "AnswerPreference" and "knowledge" in task.tags
    settings = build_settings({"tolerance": ["answer_preference=0.2"], "data": ["answer_preference=x.jsonl"]}, {},
                              Path("/project"))
    assert settings.tolerance_for("answer_preference").value == 0.2
    assert settings.data_paths == {"answer_preference": Path("x.jsonl")}


def test_the_example_task_records_a_baseline_and_gates(installed_example, pytester, toy_qa, toy_pairs, tmp_path):
    model_dir, _ = toy_qa
    baselines = tmp_path / "baselines"
    args = ["-m", "kick", "-k", "answer_preference", "-p", "no:cacheprovider", "--kick-model", str(model_dir),
            "--kick-dtype", "float32", "--kick-device", "cpu", "--kick-data", f"answer_preference={toy_pairs}",
            "--kick-baselines-dir", str(baselines)]
    recorded = pytester.runpytest(*args, "--kick-update-baselines")
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(["*answer_preference: recorded dense 1.000 on 12 items, * (new)*"])
    assert (baselines / model_dir.name / "answer_preference.json").is_file()
    pytester.runpytest(*args).assert_outcomes(passed=1)  # dense against its own baseline
    broken = pytester.runpytest(*args, "--kick-method", "magnitude", "--sparsity", "0.9")
    broken.assert_outcomes(failed=1)
    broken.stdout.fnmatch_lines(["*answer_preference lost more than the tolerance under magnitude 90% unstructured*"])
