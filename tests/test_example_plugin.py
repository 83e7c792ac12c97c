"""The example third-party pruner in examples/: found through its entry point and run through the kick suite."""

from pathlib import Path

import pytest
from entry_points import install_entry_point
from experiment_reports import outcomes, report, write

from compressors import canonical_method, get_compressor
from compressors.base import available_methods
from kick_checks.cli import main
from kick_checks.experiments.record import method_identity
from kick_checks.settings import build_settings

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
        result.stdout.fnmatch_lines(["*compression: row-magnitude 30% unstructured*", "*achieved sparsity 30.0*"])


def test_the_entry_point_and_the_import_path_are_one_method(installed_example, tmp_path, capsys):
    """One function, one identity: runs of either spelling pair up in ``kick compare``."""
    method_identity.cache_clear()  # earlier tests may have resolved the import path without the entry point
    assert canonical_method("kick_example_pruner:RowMagnitude") == "row-magnitude"
    assert canonical_method("row-magnitude") == "row-magnitude"
    spec = build_settings({"method": "kick_example_pruner:RowMagnitude", "sparsity": "0.3"}, {}, tmp_path).spec
    assert spec.method == "row-magnitude" and spec.label() == "row-magnitude 30% unstructured"
    dense = {"factoid_qa": outcomes(0.8, 60, seed=1)}
    for folder, method in (("a", "row-magnitude"), ("b", "kick_example_pruner:RowMagnitude")):
        for sparsity in (0.3, 0.5):  # two runs a folder, so runs are paired by model and spec
            items = {"factoid_qa": outcomes(0.7, 60, seed=2)}
            write(tmp_path / folder / f"s{sparsity}.json", report({"method": method, "sparsity": sparsity}, items,
                                                                 dense))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "2 pairs compared" in out and "left out" not in out


def test_a_re_exported_import_path_is_named_where_it_is_defined(tmp_path, monkeypatch):
    package = tmp_path / "toy_pruners"
    package.mkdir()
    (package / "impl.py").write_text("def prune(model, spec, calibration):\n    pass\n")
    (package / "__init__.py").write_text("from toy_pruners.impl import prune\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert canonical_method("toy_pruners:prune") == canonical_method("toy_pruners.impl:prune") == \
        "toy_pruners.impl:prune"
    assert canonical_method("compressors.wanda:WandaPruner") == "wanda"
    assert canonical_method("toy_pruners:missing") == "toy_pruners:missing"  # get_compressor says what is wrong
    assert canonical_method("nosuch") == "nosuch"
