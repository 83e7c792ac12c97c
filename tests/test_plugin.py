"""The kick suite run through pytest itself (pytester) on a tiny model trained on a toy factoid set."""

import json
import re
from pathlib import Path

import pytest


@pytest.fixture
def kick_args(toy_qa, tmp_path):
    model_dir, data = toy_qa
    baselines = tmp_path / "baselines"
    return [
        "-m", "kick", "-k", "factoid", "-p", "no:cacheprovider",
        "--kick-model", str(model_dir), "--kick-dtype", "float32", "--kick-device", "cpu",
        "--kick-data", f"factoid_qa={data}", "--kick-baselines-dir", str(baselines),
        "--kick-calib-samples", "4", "--kick-calib-seqlen", "32",
    ]


def record(pytester, kick_args):
    result = pytester.runpytest(*kick_args, "--kick-update-baselines")
    result.assert_outcomes(passed=1)
    return result


def test_update_writes_a_baseline_with_fingerprint(pytester, kick_args, toy_qa, tmp_path):
    result = record(pytester, kick_args)
    path = tmp_path / "baselines" / toy_qa[0].name / "factoid_qa.json"
    document = json.loads(path.read_text())
    assert document["schema"] == 2 and document["n"] == 12 and document["score"] == 1.0
    assert document["environment"]["dtype"] == "float32" and "noise_floor" in document
    assert set(document["fingerprint"]) >= {"model", "task_data", "prompt_version", "decoding", "kick_checks_version"}
    assert document["fingerprint"]["model"]["dtype"] == "float32"
    assert len(document["items"]) == 12
    result.stdout.fnmatch_lines(["*factoid_qa: recorded dense 1.000 on 12 items, * (new)*"])


def test_low_sparsity_passes_and_high_sparsity_fails(pytester, kick_args):
    record(pytester, kick_args)
    low = pytester.runpytest(*kick_args, "--sparsity", "0.1", "--kick-method", "magnitude")
    low.assert_outcomes(passed=1)
    low.stdout.fnmatch_lines(["*achieved sparsity 10.0*", "*factoid_qa: exact_match dense 1.000 -> 1.000*PASS*"])

    high = pytester.runpytest(*kick_args, "--sparsity", "0.9", "--kick-method", "magnitude")
    high.assert_outcomes(failed=1)
    high.stdout.fnmatch_lines([
        "*factoid_qa lost more than the tolerance under magnitude 90% unstructured*",
        "*dense 1.000 -> compressed*relative drop*; tolerance 5.0%) on 12 items*",
        "*lost toy-00: dense 'red' -> compressed*",
        "*--kick-update-baselines*",
    ])


def test_wanda_and_sparsegpt_run_through_the_suite(pytester, kick_args):
    record(pytester, kick_args)
    for method, sequential in (("wanda", []), ("sparsegpt", []), ("sparsegpt", ["--kick-sequential", "block"])):
        result = pytester.runpytest(*kick_args, "--sparsity", "0.2", "--kick-method", method,
                                    "--kick-tolerance", "1.0", *sequential)
        result.assert_outcomes(passed=1)
        label = f"{method} 20% unstructured" + (" block-sequential" if sequential else "")
        result.stdout.fnmatch_lines([f"*compression: {label}"])
        achieved = re.search(r"achieved sparsity ([0-9.]+)% over", result.stdout.str())
        assert achieved and abs(float(achieved.group(1)) - 20.0) < 0.01  # whole weights per matrix


def test_missing_baseline_fails_at_session_start_and_names_the_update_command(pytester, kick_args):
    result = pytester.runpytest(*kick_args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # before any model is loaded
    result.stderr.fnmatch_lines(["*no dense baseline at*factoid_qa.json: record it with pytest -m kick "
                                 "--kick-update-baselines*"])


def test_mismatched_baseline_names_what_changed_before_the_model_loads(pytester, kick_args):
    record(pytester, kick_args)
    args = [arg if arg != "float32" else "bfloat16" for arg in kick_args]
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*recorded under other settings (model dtype: 'float32' -> 'bfloat16')*"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sparsity", "1.5"], "*--sparsity 1.5 is outside [[]0, 1)*"),
        (["--kick-pattern", "3:2"], "*not a valid N:M pattern*"),
        (["--kick-method", "nosuch", "--sparsity", "0.5"], "*--kick-method 'nosuch' is unknown*"),
        (["--kick-model", "/no/such/dir"], "*is not an embedded model*"),
        (["--kick-tolerance", "lots"], "*--kick-tolerance 'lots' is not a number*"),
        (["--sparsity", "0.5", "--kick-sequential", "row"], "*--kick-sequential 'row' is not a choice*"),
        (["--sparsity", "0.5", "--kick-update-baselines"], "*records the dense model*"),
    ],
)
def test_bad_options_are_one_line_usage_errors(pytester, kick_args, extra, message):
    result = pytester.runpytest(*kick_args, *extra)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str()


def test_tool_kick_config_sets_tolerance_and_rejects_unknown_keys(pytester, kick_args):
    record(pytester, kick_args)
    pytester.makepyprojecttoml("[tool.kick]\ntolerances = { factoid_qa = 1.0 }\n")
    result = pytester.runpytest(*kick_args, "--sparsity", "0.9", "--kick-method", "magnitude")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*tolerance 100.0%*PASS*"])

    pytester.makepyprojecttoml("[tool.kick]\ntolerence = 0.1\n")
    result = pytester.runpytest(*kick_args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *key 'tolerence'*is unknown*"])


def test_plain_run_without_kick_marker_does_not_collect_the_suite(pytester):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


PLUGIN_PRUNERS = '''
import torch

from compressors.masks import smallest_k_mask, target_count
from compressors.layerwise import walk_blocks


def prune_by_magnitude(model, spec, calibration):
    """An outside pruner: per-matrix magnitude through the shared layer-by-layer walk."""
    def compress(name, layer, statistic):
        weight = layer.weight.data
        mask = smallest_k_mask(weight.abs().float(), target_count(weight.numel(), spec.sparsity))
        weight[mask] = 0

    walk_blocks(model, None, statistic=None, compress=compress)


def prune_nothing(model, spec, calibration):
    """A broken pruner: claims success without removing anything."""
'''


def test_a_pruner_given_by_import_path_runs_and_a_wrong_one_is_caught(pytester, kick_args):
    record(pytester, kick_args)
    pytester.makepyfile(my_pruners=PLUGIN_PRUNERS)
    pytester.syspathinsert()
    good = pytester.runpytest(*kick_args, "--sparsity", "0.3", "--kick-method", "my_pruners:prune_by_magnitude",
                              "--kick-tolerance", "1.0")
    good.assert_outcomes(passed=1)
    good.stdout.fnmatch_lines(["*compression: my_pruners:prune_by_magnitude 30% unstructured*",
                               "*achieved sparsity 30.0*"])
    broken = pytester.runpytest(*kick_args, "--sparsity", "0.3", "--kick-method", "my_pruners:prune_nothing")
    broken.assert_outcomes(failed=1)
    broken.stdout.fnmatch_lines(["*reached 0.0000% sparsity, not the requested 30.0000%*"])


def test_a_failed_compression_is_reported_by_every_test_without_compressing_again(pytester, kick_args):
    calls = pytester.path / "calls.txt"
    pytester.makepyfile(counting_pruner=f"""
def prune(model, spec, calibration):
    with open({str(calls)!r}, "a") as handle:
        handle.write("called\\n")
""")
    pytester.syspathinsert()
    args = [arg if arg != "factoid" else "factoid or retrieval" for arg in kick_args]
    pytester.runpytest(*args, "--kick-update-baselines").assert_outcomes(passed=3)
    result = pytester.runpytest(*args, "--sparsity", "0.3", "--kick-method", "counting_pruner:prune")
    result.assert_outcomes(failed=3)
    assert calls.read_text().count("called") == 1
    assert result.stdout.str().count("reached 0.0000% sparsity") >= 3


def test_a_pruner_that_raises_is_one_line(pytester, kick_args):
    record(pytester, kick_args)
    pytester.makepyfile(bad_pruner="def prune(model, spec, calibration):\n    raise ValueError('shape (3,) != (4,)')\n")
    pytester.syspathinsert()
    result = pytester.runpytest(*kick_args, "--sparsity", "0.3", "--kick-method", "bad_pruner:prune")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*compressor 'bad_pruner:prune' failed: ValueError: shape (3,) != (4,)*"])


def test_json_markdown_and_junit_reports(pytester, kick_args, tmp_path):
    record(pytester, kick_args)
    report, summary, junit = tmp_path / "out" / "kick.json", tmp_path / "summary.md", tmp_path / "junit.xml"
    result = pytester.runpytest(*kick_args, "--sparsity", "0.9", "--kick-method", "magnitude",
                                "--kick-json", str(report), "--kick-markdown", str(summary), f"--junitxml={junit}")
    result.assert_outcomes(failed=1)
    document = json.loads(report.read_text())
    assert document["spec"]["sparsity"] == 0.9 and document["compression"]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    (task,) = document["tasks"]
    assert task["task"] == "factoid_qa" and task["verdict"] == "fail" and task["dense"] == 1.0
    assert len(task["result"]["items"]) == 12 and task["lost"]
    assert "sha256" in document["model"] and document["environment"]["device"] == "cpu"
    text = summary.read_text()
    assert "| factoid_qa | exact_match | 1.000 |" in text and "fail" in text
    xml = junit.read_text()
    assert 'name="kick_dense" value="1"' in xml and 'name="kick_metric" value="exact_match"' in xml


def test_compression_is_cached_and_a_damaged_entry_is_rebuilt(pytester, kick_args, tmp_path):
    record(pytester, kick_args)
    cache = tmp_path / "cache"
    args = [*kick_args, "--sparsity", "0.3", "--kick-method", "wanda", "--kick-tolerance", "1.0",
            "--kick-cache-dir", str(cache)]
    first = pytester.runpytest(*args)
    first.assert_outcomes(passed=1)
    assert "loaded from the compression cache" not in first.stdout.str()
    (entry,) = [path for path in (cache / "compressed").iterdir() if path.is_dir()]
    second = pytester.runpytest(*args)
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["*loaded from the compression cache: achieved sparsity 30.0*"
                                 " when it was compressed, in *s*"])
    def verdict(run):
        return re.search(r"factoid_qa: exact_match .*", run.stdout.str()).group(0)

    assert verdict(first) == verdict(second)  # the cached weights give the same result
    weights = entry / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # a truncated write
    third = pytester.runpytest(*args)
    third.assert_outcomes(passed=1)
    assert "loaded from the compression cache" not in third.stdout.str()
    third.stdout.fnmatch_lines(["*KickWarning: compression cache entry*is damaged*: rebuilding it*"])
    other = pytester.runpytest(*[a if a != "0.3" else "0.4" for a in args])  # another spec, another entry
    other.assert_outcomes(passed=1)
    assert len([path for path in (cache / "compressed").iterdir() if path.is_dir()]) == 2


def test_under_xdist_one_worker_compresses_and_the_controller_reports_all_tasks(pytester, toy_qa, tmp_path):
    model_dir, data = toy_qa
    common = [
        "-p", "no:cacheprovider", "--kick-model", str(model_dir), "--kick-dtype", "float32",
        "--kick-device", "cpu", "--kick-data", f"factoid_qa={data}", "--kick-data", f"retrieval_qa={data}",
        "--kick-baselines-dir", str(tmp_path / "baselines"), "--kick-cache-dir", str(tmp_path / "cache"),
    ]
    # retrieval_qa reads the toy rows as passages-less items; give them a passage for the open-book variant
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    with_passages = tmp_path / "retrieval.jsonl"
    with_passages.write_text("".join(json.dumps({**row, "passage": row["question"]}) + "\n" for row in rows))
    common[common.index(f"retrieval_qa={data}")] = f"retrieval_qa={with_passages}"
    selection = ["-m", "kick", "-k", "factoid or retrieval"]
    pytester.runpytest(*selection, *common, "--kick-update-baselines").assert_outcomes(passed=3)
    report = tmp_path / "kick.json"
    result = pytester.runpytest_subprocess(*selection, *common, "-n", "2", "--sparsity", "0.2",
                                           "--kick-tolerance", "1.0", "--kick-json", str(report))
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    assert out.count("loaded from the compression cache") == 1  # one worker compressed, the other loaded
    result.stdout.fnmatch_lines(["*factoid_qa: exact_match dense*PASS*", "*retrieval_qa.closed_book*PASS*",
                                 "*retrieval_qa.open_book*PASS*"])
    tasks = [task["task"] for task in json.loads(report.read_text())["tasks"]]
    assert tasks == ["factoid_qa", "retrieval_qa.closed_book", "retrieval_qa.open_book"]


def test_update_missing_records_only_absent_baselines_and_update_shows_the_diff(pytester, kick_args, toy_qa, tmp_path):
    first = pytester.runpytest(*kick_args, "--kick-update-missing")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*factoid_qa: recorded dense 1.000 on 12 items, * (new)*"])
    path = tmp_path / "baselines" / toy_qa[0].name / "factoid_qa.json"
    document = json.loads(path.read_text())
    document["items"][0]["score"], document["score"] = 0.0, 11 / 12  # pretend the old baseline had one item wrong
    document["fingerprint"]["prompt_version"] = "older-prompt"
    path.write_text(json.dumps(document))
    again = pytester.runpytest(*kick_args, "--kick-update-missing")  # present: compared, not rewritten
    assert again.ret == pytest.ExitCode.USAGE_ERROR
    again.stderr.fnmatch_lines(["*recorded under other settings (prompt_version: 'older-prompt' -> *"])
    update = pytester.runpytest(*kick_args, "--kick-update-baselines")
    update.assert_outcomes(passed=1)
    update.stdout.fnmatch_lines(["*recorded dense 1.000 on 12 items, * (was 0.917 on 12 items; "
                                 "prompt_version: 'older-prompt' -> *, 1 items changed score)*"])


def test_xdist_workers_inherit_sleeping_idle_threads(monkeypatch):
    import os

    from kick_checks.plugin import _quiet_idle_threads

    class Config:
        def __init__(self, workers):
            self.workers = workers

        def getoption(self, name, default=None):
            return self.workers if name == "numprocesses" else default

    environ = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    monkeypatch.setattr(os, "environ", environ)
    _quiet_idle_threads(Config(None))  # no xdist: torch's own behaviour
    assert "OMP_WAIT_POLICY" not in environ
    worker = Config(2)
    worker.workerinput = {}
    _quiet_idle_threads(worker)  # a worker changes nothing (it inherited the controller's setting)
    assert "OMP_WAIT_POLICY" not in environ
    _quiet_idle_threads(Config(2))
    assert environ["OMP_WAIT_POLICY"] == "PASSIVE"
    environ["OMP_WAIT_POLICY"] = "ACTIVE"
    _quiet_idle_threads(Config("auto"))  # the user's own choice stands
    assert environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_users_kick_check_of_a_task_the_suite_checks_gives_one_outcome_and_one_write(
        pytester, kick_args, tmp_path, monkeypatch):
    """A user's own ``kick_check("factoid_qa")`` beside the installed suite's test of it: the task is evaluated once,
    so it is one line in the summary, one entry in each report and one baseline write."""
    import kick_checks.gate.store as store
    import tests_kick

    writes = []
    original = store.write_baseline
    monkeypatch.setattr(store, "write_baseline", lambda *args, **kwargs: writes.append(args) or original(*args,
                                                                                                           **kwargs))
    mine = pytester.makepyfile(test_mine="""
        import pytest

        @pytest.mark.kick
        def test_my_factoid_gate(kick_check):
            assert kick_check("factoid_qa").verdict == "recorded"
    """)
    report, summary = tmp_path / "kick.json", tmp_path / "kick.md"
    suite = str(Path(tests_kick.__file__).parent)
    result = pytester.runpytest(str(mine), suite, *kick_args, "--kick-update-baselines", "--kick-json", str(report),
                                "--kick-markdown", str(summary))
    result.assert_outcomes(passed=2)
    assert result.stdout.str().count("factoid_qa: recorded dense") == 1
    assert [task["task"] for task in json.loads(report.read_text())["tasks"]] == ["factoid_qa"]
    assert summary.read_text().count("| factoid_qa |") == 1
    assert len(writes) == 1
