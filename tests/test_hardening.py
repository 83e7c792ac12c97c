"""A gate that never ignores what it was told, and baselines that cannot be damaged or misread (issues 16, 20).

Each case is a way a user once got a silent pass, a traceback, or a damaged baseline; each must now give one line
that names the fix, before any model work where the problem can be seen that early.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kick_checks.atomic import remove_stale_temporaries, write_text_atomically
from kick_checks.errors import KickError
from kick_checks.gate.baselines import read_baseline
from kick_checks.model.loading import load_model, resolve_model
from kick_checks.settings import build_settings, read_tool_config


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(KickError) as raised:
        call(*args, **kwargs)
    message = str(raised.value)
    assert "\n" not in message
    return message


def baseline_file(tmp_path: Path, toy_qa) -> Path:
    return tmp_path / "baselines" / toy_qa[0].name / "factoid_qa.json"


# -- settings keyed by task: a misspelt key is an error, never ignored ------------------------------------------
@pytest.mark.parametrize(("options", "config", "expected"), [
    ({"tolerance": ["nosuchtask=0.1"]}, {}, "--kick-tolerance nosuchtask=0.1: 'nosuchtask' is not a task"),
    ({"tolerance": ["retrieval_qa.nosuch=0.1"]}, {}, "'retrieval_qa.nosuch' is not a task"),
    ({}, {"tolerances": {"factoid": 0.1}}, "[tool.kick] tolerances: 'factoid' is not a task"),
    ({"data": ["trivia=x.json"]}, {}, "--kick-data trivia=x.json: 'trivia' is not a data name"),
    ({}, {"data": {"mmlu": "x"}}, "[tool.kick.data] mmlu: 'mmlu' is not a data name"),
])
def test_keys_that_name_no_task_are_errors_listing_the_known_ones(options, config, expected):
    message = one_line_error(build_settings, options, config, Path("/project"))
    assert expected in message
    assert "use one of" in message and "factoid_qa" in message


def test_whole_tasks_and_their_variants_are_accepted_keys():
    settings = build_settings({"tolerance": ["retrieval_qa=0.2", "retrieval_qa.open_book=0.3", "perplexity=0.1"],
                               "data": ["conversations=c.jsonl"]}, {}, Path("/p"))
    assert settings.tolerance_for("retrieval_qa.closed_book").value == 0.2
    assert settings.tolerance_for("retrieval_qa.open_book").value == 0.3
    assert settings.data_paths == {"conversations": Path("c.jsonl")}


def test_a_misspelt_tolerance_stops_pytest_instead_of_passing(pytester, toy_args):
    result = pytester.runpytest(*toy_args, "--kick-tolerance", "nosuchtask=0.1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'nosuchtask' is not a task: use one of factoid_qa, *"])


def test_the_old_toml_key_symmetric_still_works_with_a_deprecation_line(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.kick]\nsymmetric = false\nmethod = 'gptq'\n")
    with pytest.warns(UserWarning, match=r"symmetric = False .* is deprecated: write asym = true instead"):
        table = read_tool_config(pyproject)
    assert table == {"asym": True, "method": "gptq"}
    assert not build_settings({}, table, tmp_path).spec.symmetric
    pyproject.write_text("[tool.kick]\nsymmetric = false\nasym = true\n")
    assert "sets both symmetric (its old name) and asym" in one_line_error(read_tool_config, pyproject)


# -- models that cannot be read: one line about the file --------------------------------------------------------
def test_a_file_named_gguf_that_is_not_gguf_is_one_line(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"<html>not a model</html>")
    message = one_line_error(resolve_model, str(fake))
    assert "is not a GGUF file (it does not start with the bytes 'GGUF')" in message


def test_a_truncated_gguf_is_one_line_naming_the_file(tmp_path):
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00\x07")
    message = one_line_error(load_model, resolve_model(str(truncated)), dtype="float32", device="cpu",
                             cache_dir=tmp_path / "cache")
    assert message.startswith(f"cannot read the GGUF file {truncated}")
    assert "hub" not in message


@pytest.mark.parametrize(("config", "expected"), [
    ("{ not json", "config.json is not valid JSON"),
    ('{"hidden_size": 8}', "config.json has no model_type"),
])
def test_a_local_model_with_a_broken_config_says_what_is_wrong_with_it(tiny_model_dir, tmp_path, config, expected):
    import shutil

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "config.json").write_text(config)
    message = one_line_error(resolve_model, str(broken))
    assert expected in message and "hub" not in message


def tiny_model_args(model_dir: Path, tmp_path: Path) -> list[str]:
    """``pytest -m kick`` arguments for factoid QA on ``model_dir``, a one-question data file, no baseline yet."""
    data = tmp_path / "questions.jsonl"
    data.write_text(json.dumps({"id": "q0", "question": "What is the capital of Italy?", "answers": ["Rome"]}) + "\n")
    return ["-m", "kick", "-k", "factoid", "-p", "no:cacheprovider", "--kick-model", str(model_dir),
            "--kick-dtype", "float32", "--kick-device", "cpu", "--kick-data", f"factoid_qa={data}",
            "--kick-baselines-dir", str(tmp_path / "baselines"), "--kick-cache-dir", str(tmp_path / "cache")]


def test_a_broken_config_is_the_first_line_at_session_start_not_a_missing_baseline(pytester, tiny_model_dir,
                                                                                  tmp_path):
    """Without a baseline, the run used to say "no dense baseline ... record it"; recording then met the config."""
    import shutil

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "config.json").write_text('{"hidden_size": 8}')
    for extra in ([], ["--kick-update-baselines"]):
        result = pytester.runpytest(*tiny_model_args(broken, tmp_path), *extra)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"ERROR: --kick-model {broken}: {broken}/config.json has no model_type*"])
        assert "no dense baseline" not in result.stderr.str() + result.stdout.str()
        assert "kick-checks: loading" not in result.stdout.str()


def test_a_model_that_fails_to_load_in_a_test_is_said_once(pytester, tiny_model_dir, tmp_path):
    """A KickError raised while a test runs is its failure message, printed once, not twice around pytest's
    "During handling of the above exception"."""
    import shutil

    damaged = tmp_path / "damaged-model"
    shutil.copytree(tiny_model_dir, damaged)
    (damaged / "model.safetensors").write_bytes(b"not safetensors")
    result = pytester.runpytest(*tiny_model_args(damaged, tmp_path), "--kick-update-baselines")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    # the short test summary repeats a failure's first line (in full when CI is set): leave it out of the count
    body = "\n".join(line for line in output.splitlines() if not line.startswith("FAILED "))
    assert body.count(f"cannot load model '{damaged}'") == 1 and "During handling" not in output


# -- baselines: checked before any model work ---------------------------------------------------------------------
def test_a_truncated_baseline_fails_before_the_model_loads(pytester, toy_args, toy_qa, tmp_path):
    pytester.runpytest(*toy_args, "--kick-update-baselines").assert_outcomes(passed=1)
    path = baseline_file(tmp_path, toy_qa)
    path.write_text(path.read_text()[:200])
    result = pytester.runpytest(*toy_args, "--sparsity", "0.5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*a baseline cannot be used, so nothing was run:*",
                                 "*is not valid JSON (truncated?): re-record it with*"])
    assert "kick-checks: loading" not in result.stdout.str() and "compressing" not in result.stdout.str()


def test_an_unwritable_baselines_folder_fails_before_the_model_loads(pytester, toy_args, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the baselines folder should be")
    args = [arg if not arg.endswith("baselines") else str(blocker / "baselines") for arg in toy_args]
    result = pytester.runpytest(*args, "--kick-update-baselines")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*cannot write baselines to {blocker}/baselines/*: make the folder writable, or "
                                 "record into another with --kick-baselines-dir*"])
    assert "kick-checks: loading" not in result.stdout.str()


def test_a_write_that_fails_keeps_the_stored_baseline_and_is_one_line(tmp_path, monkeypatch):
    from kick_checks.gate.store import BaselineStore
    from kick_checks.tasks.protocol import EXACT_MATCH, ItemOutcome, TaskResult

    store = BaselineStore("m", tmp_path, tmp_path, tmp_path, update=True)
    result = TaskResult("factoid_qa", EXACT_MATCH, [ItemOutcome("a", 1.0, "x")], {"task_data": "d"})
    store.record(result, {"alias": "m"})
    before = store.writing_path("factoid_qa").read_bytes()

    def refuse(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("kick_checks.atomic.tempfile.NamedTemporaryFile", refuse)
    message = one_line_error(store.record, result, {"alias": "m"})
    assert "(Permission denied); the stored file is unchanged" in message
    assert store.writing_path("factoid_qa").read_bytes() == before


# -- an update from a sample never shrinks a baseline silently ----------------------------------------------------
def test_updating_from_a_sample_refuses_merges_or_replaces_as_told(pytester, toy_args, toy_qa, tmp_path):
    pytester.runpytest(*toy_args, "--kick-update-baselines").assert_outcomes(passed=1)
    path = baseline_file(tmp_path, toy_qa)
    full = json.loads(path.read_text())
    assert full["n"] == 12
    refused = pytester.runpytest(*toy_args, "--kick-update-baselines", "--kick-limit", "5")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*the stored baseline has 12 items and this run 5 (--kick-limit): updating would "
                                  "shrink it; rerun without --kick-limit, or pass --kick-update-sample merge*"])
    assert json.loads(path.read_text()) == full
    merged = pytester.runpytest(*toy_args, "--kick-update-baselines", "--kick-limit", "5",
                                "--kick-update-sample", "merge")
    merged.assert_outcomes(passed=1)
    merged.stdout.fnmatch_lines(["*factoid_qa: recorded dense 1.000 on 12 items, * (was 1.000 on 12 items)*"])
    assert [item["id"] for item in json.loads(path.read_text())["items"]] == [item["id"] for item in full["items"]]
    replaced = pytester.runpytest(*toy_args, "--kick-update-baselines", "--kick-limit", "5",
                                  "--kick-update-sample", "replace")
    replaced.assert_outcomes(passed=1)
    replaced.stdout.fnmatch_lines(["*recorded dense 1.000 on 5 items, * (was 1.000 on 12 items; 7 items removed)*"])
    assert json.loads(path.read_text())["n"] == 5


# -- what an interrupted write leaves behind is cleaned up --------------------------------------------------------
def test_stale_temporary_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    write_text_atomically(tmp_path / "factoid_qa.json", "{}")
    dead = tmp_path / ".factoid_qa.json.999999999-abc123.tmp"
    live = tmp_path / f".perplexity.json.{os.getpid()}-def456.tmp"
    foreign_live = tmp_path / ".summarization.json.1-ghi789.tmp"  # pid 1 is alive
    unrelated = tmp_path / "notes.tmp"
    for path in (dead, live, foreign_live, unrelated):
        path.write_text("partial")
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["factoid_qa.json", live.name, foreign_live.name, unrelated.name])
    old = time_shifted(foreign_live, hours=2)
    assert remove_stale_temporaries(tmp_path) == [old]


def time_shifted(path: Path, hours: float) -> Path:
    stamp = path.stat().st_mtime - hours * 3600
    os.utime(path, (stamp, stamp))
    return path


def test_a_kill_during_a_baseline_write_is_cleaned_on_the_next_run(pytester, toy_args, toy_qa, tmp_path):
    pytester.runpytest(*toy_args, "--kick-update-baselines").assert_outcomes(passed=1)
    folder = baseline_file(tmp_path, toy_qa).parent
    leftover = folder / ".factoid_qa.json.999999999-x1y2z3.tmp"
    leftover.write_text('{"schema": 1, "n": 2')
    result = pytester.runpytest(*toy_args)
    result.assert_outcomes(passed=1)
    assert not leftover.exists()
    result.stdout.fnmatch_lines([f"*removed {leftover}, left by an interrupted baseline write*"])
    assert read_baseline(baseline_file(tmp_path, toy_qa)).n == 12


@pytest.fixture
def umask():
    """Set the process's umask for a test, and put the previous one back."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_reports_and_baselines_get_the_mode_the_umask_gives(umask, tmp_path, mask):
    """Written through a temporary file, they were 0600 whatever the umask: unreadable to the rest of a team."""
    from kick_checks.report.documents import write_reports

    umask(mask)
    baseline = write_text_atomically(tmp_path / "baselines" / "factoid_qa.json", "{}")
    written = write_reports({"model": {}, "spec_label": "dense", "tasks": []}, tmp_path / "kick.json",
                            tmp_path / "kick.md")
    for path in (baseline, *written):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path


def test_a_compressed_cache_entry_gets_the_mode_the_umask_gives(umask, tiny_loaded, tmp_path):
    import copy

    from compressors.report import measure_sparsity
    from kick_checks.model.compressed_cache import CompressedCache

    umask(0o022)
    model = copy.deepcopy(tiny_loaded.model)
    cache = CompressedCache(tmp_path, "tiny", "k")
    cache.compressed_once(model, lambda: measure_sparsity(model))
    assert cache.folder.stat().st_mode & 0o777 == 0o755
    assert {path.stat().st_mode & 0o777 for path in cache.folder.iterdir()} == {0o644}
