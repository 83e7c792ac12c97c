"""Run settings: options over [tool.kick] over defaults, and one-line errors for bad values."""

from pathlib import Path

import pytest

from kick_checks.errors import KickError
from kick_checks.settings import Tolerance, build_settings, parse_tolerances, read_tool_config


def settings(options: dict | None = None, config: dict | None = None, root: Path = Path("/project")):
    return build_settings(options or {}, config or {}, root)


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(KickError) as error:
        call(*args, **kwargs)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_defaults():
    run = settings()
    assert (run.model, run.dtype, run.device, run.tolerance) == ("smollm2-135m", "auto", "auto", Tolerance(0.05))
    assert run.spec.is_dense and not run.update_baselines and run.baselines_dir is None


def test_options_override_config_and_paths_are_relative_to_the_root():
    run = settings(
        {"sparsity": "0.5", "method": "sparsegpt", "baselines_dir": None},
        {"sparsity": 0.3, "method": "magnitude", "baselines_dir": "gate/baselines", "calib_data": "/abs/calib.txt"},
    )
    assert (run.spec.sparsity, run.spec.method) == (0.5, "sparsegpt")
    assert run.baselines_dir == Path("/project/gate/baselines") and run.calib_data == Path("/abs/calib.txt")
    assert settings({"sparsity": "0.5"}, {"sequential": "block"}).spec.sequential == "block"
    assert settings({"sparsity": "0.5", "sequential": "layer"}, {"sequential": "block"}).spec.sequential == "layer"


def test_tolerances_default_per_task_and_per_data_name():
    config = {"tolerance": 0.03, "tolerances": {"retrieval_qa": 0.5}}
    default, per_task = parse_tolerances(["0.1", "factoid_qa=0.2"], config)
    assert default == Tolerance(0.1) and per_task == {"retrieval_qa": Tolerance(0.5), "factoid_qa": Tolerance(0.2)}
    run = settings({"tolerance": ["retrieval_qa.open_book=0.01"]}, {"tolerances": {"retrieval_qa": 0.5}})
    assert run.tolerance_for("retrieval_qa.open_book") == Tolerance(0.01)
    assert run.tolerance_for("retrieval_qa.closed_book") == Tolerance(0.5)
    assert run.tolerance_for("factoid_qa") == Tolerance(0.05)
    _, kinds = parse_tolerances(["factoid_qa=abs:0.02", "perplexity=recovery:0.9", "multiple_choice=rel:0.1"], {})
    assert kinds == {"factoid_qa": Tolerance(0.02, "absolute"), "perplexity": Tolerance(0.9, "recovery"),
                     "multiple_choice": Tolerance(0.1, "relative")}


@pytest.mark.parametrize(
    ("options", "config", "expected"),
    [
        ({"tolerance": ["five"]}, {}, "--kick-tolerance 'five' is not a number"),
        ({"tolerance": ["factoid_qa=2"]}, {}, "is outside [0, 1]"),
        ({"tolerance": ["factoid_qa=max:2"]}, {}, "has an unknown kind: use VALUE, abs:VALUE or recovery:VALUE"),
        ({"tolerance": ["recovery:1.5"]}, {}, "is outside (0, 1]"),
        ({"sparsity": "1.5"}, {}, "--sparsity"),
        ({"sparsity": "0.5", "update_baselines": True}, {}, "--kick-update-baselines records the dense model"),
        ({"data": ["factoid_qa"]}, {}, "must be NAME=PATH"),
        ({"pattern": "3:2"}, {}, "--kick-pattern"),
    ],
)
def test_bad_values_are_one_line_errors(options, config, expected):
    assert expected in error_of(settings, options, config)


def test_tool_kick_table_is_checked(tmp_path):
    pyproject = tmp_path / "pyproject.toml"

    def error_for(table: str) -> str:
        pyproject.write_text(table)
        return error_of(read_tool_config, pyproject)

    pyproject.write_text("[tool.kick]\nsparsity = 0.5\ntolerances = {factoid_qa = 0.2}\n")
    assert read_tool_config(pyproject) == {"sparsity": 0.5, "tolerances": {"factoid_qa": 0.2}}
    unknown = error_for("[tool.kick]\nsparsty = 0.5\n")
    assert "key 'sparsty'" in unknown and "use one of" in unknown and "sparsity" in unknown
    assert "tolerance = [0.05]" in error_for("[tool.kick]\ntolerance = [0.05]\n")
    assert "must be a number" in error_for("[tool.kick]\ntolerance = [0.05]\n")
    assert "calib_samples = True" in error_for("[tool.kick]\ncalib_samples = true\n")
    assert "must be a whole number" in error_for("[tool.kick]\ncalib_samples = true\n")
    assert "is not valid TOML" in error_for("[tool.kick\n")
    assert read_tool_config(tmp_path / "missing.toml") == {}


def test_an_unquoted_dotted_tolerance_key_is_read_as_the_task_it_spells(tmp_path):
    """TOML turns ``retrieval_qa.closedbook = 0.2`` into a sub-table; the error must name the task, not a kind."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.kick]\ntolerances = { retrieval_qa.closedbook = 0.2 }\n")
    message = error_of(parse_tolerances, [], read_tool_config(pyproject))
    assert message.startswith("[tool.kick] tolerances: 'retrieval_qa.closedbook' is not a task: use one of ")
    assert message.endswith('quote the task as one key, e.g. "retrieval_qa.closed_book" = 0.2)')
    assert "unknown kind" not in message
    pyproject.write_text("[tool.kick]\ntolerances = { retrieval_qa.closed_book = 0.2, factoid_qa = 0.1 }\n")
    assert parse_tolerances([], read_tool_config(pyproject))[1] == {
        "retrieval_qa.closed_book": Tolerance(0.2), "factoid_qa": Tolerance(0.1)}
    quoted = error_of(parse_tolerances, [], {"tolerances": {"retrieval_qa.closedbook": 0.2}})
    assert "is not a task" in quoted and "TOML" not in quoted
