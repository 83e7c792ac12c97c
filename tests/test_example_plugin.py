"""The example third-party pruner in examples/: found through its entry point and run through the kick suite."""

from pathlib import Path

import pytest
from entry_points import install_entry_point

from compressors import get_compressor
from compressors.base import available_methods

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "kick-example-pruner"


@pytest.fixture
def installed_example(tmp_path, monkeypatch):
    """What ``pip install`` of the example leaves behind: the package importable and its entry-point metadata."""
    install_entry_point(monkeypatch, tmp_path, "kick-example-pruner", "kick_checks.compressors",
                        "row-magnitude = kick_example_pruner:RowMagnitude", EXAMPLE)


def test_entry_point_names_the_method(installed_example):
    assert "row-magnitude" in available_methods()
    assert type(get_compressor("row-magnitude")).__name__ == "RowMagnitude"


def test_example_runs_through_the_kick_suite(installed_example, pytester, toy_qa, tmp_path):
    model_dir, data = toy_qa
    args = [
        "-m", "kick", "-k", "factoid", "-p", "no:cacheprovider", "--kick-model", str(model_dir),
        "--kick-dtype", "float32", "--kick-device", "cpu", "--kick-data", f"factoid_qa={data}",
        "--kick-baselines-dir", str(tmp_path / "baselines"),
    ]
    pytester.runpytest(*args, "--kick-update-baselines").assert_outcomes(passed=1)
    for method in ("row-magnitude", "kick_example_pruner:RowMagnitude"):
        result = pytester.runpytest(*args, "--kick-method", method, "--sparsity", "0.3", "--kick-tolerance", "1.0")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines([f"*compression: {method} 30% unstructured*", "*achieved sparsity 30.0*"])
