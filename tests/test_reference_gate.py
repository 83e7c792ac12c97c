"""Gating against a reference run (a previous release, another method) instead of dense alone, on the toy model."""

import json

import pytest

LOOSE = ["--kick-tolerance", "1.0"]  # a reference is recorded whatever it lost against dense


@pytest.fixture
def dense_baseline(pytester, toy_args):
    pytester.runpytest(*toy_args, "--kick-update-baselines", "--kick-noise-floor", "batch").assert_outcomes(passed=1)
    return toy_args


def test_the_worse_method_fails_against_the_better_ones_reference_at_the_same_sparsity(pytester, dense_baseline,
                                                                                      tmp_path):
    # on the toy model at 60%, magnitude keeps 11 of 12 answers and Wanda 9 (both fail against dense)
    reference = tmp_path / "magnitude-60"
    recorded = pytester.runpytest(*dense_baseline, *LOOSE, "--sparsity", "0.6", "--kick-method", "magnitude",
                                  "--kick-record-reference", str(reference))
    recorded.assert_outcomes(passed=1)
    stored = json.loads((reference / "factoid_qa.json").read_text())
    assert stored["label"] == "magnitude 60% unstructured" and len(stored["result"]["items"]) == 12
    gated = pytester.runpytest(*dense_baseline, "--sparsity", "0.6", "--kick-method", "wanda",
                               "--kick-reference", str(reference))
    gated.assert_outcomes(failed=1)
    gated.stdout.fnmatch_lines([  # the failure, then the summary; ? for the brackets fnmatch reads as a set
        "*factoid_qa lost more than the tolerance under wanda 60% unstructured against the reference (*",
        "*the reference is magnitude 60% unstructured; against the dense baseline: *",
        "*factoid_qa: against reference magnitude 60% unstructured: exact_match reference 0.917 -> 0.750 *FAIL "
        "?vs dense: exact_match dense 1.000 -> 0.750, drop +25.0%?",
    ])
    wanda = tmp_path / "wanda-60"
    pytester.runpytest(*dense_baseline, *LOOSE, "--sparsity", "0.6", "--kick-method", "wanda",
                       "--kick-record-reference", str(wanda)).assert_outcomes(passed=1)
    better = pytester.runpytest(*dense_baseline, "--sparsity", "0.6", "--kick-method", "magnitude",
                                "--kick-reference", str(wanda))
    better.assert_outcomes(passed=1)


def test_a_spec_passes_against_itself(pytester, dense_baseline, tmp_path):
    reference = tmp_path / "v1"
    options = [*dense_baseline, "--sparsity", "0.6", "--kick-method", "magnitude"]
    pytester.runpytest(*options, "--kick-tolerance", "1.0", "--kick-record-reference", str(reference)).assert_outcomes(
        passed=1)
    again = pytester.runpytest(*options, "--kick-reference", str(reference), "--kick-json", str(tmp_path / "r.json"))
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["*factoid_qa: against reference magnitude 60% unstructured: exact_match reference "
                                "* (drop +0.0%,*PASS ?vs dense:*"])
    report = json.loads((tmp_path / "r.json").read_text())["tasks"][0]
    assert report["verdict"] == "pass" and report["reference"]["label"] == "magnitude 60% unstructured"
    # a --kick-json report serves as a reference too
    pytester.runpytest(*options, "--kick-reference", str(tmp_path / "r.json")).assert_outcomes(passed=1)


def test_a_reference_made_under_another_model_is_refused_before_the_model_loads(pytester, dense_baseline, tmp_path,
                                                                               tiny_model_dir):
    reference = tmp_path / "other"
    reference.mkdir()
    stored = {"reference_schema": 1, "task": "factoid_qa", "label": "wanda 50% unstructured",
              "model": {"alias": tiny_model_dir.name, "source": "local", "dtype": "float32", "sha256": "0" * 64},
              "environment": {"device": "cpu", "dtype": "float32"},
              "result": {"fingerprint": {}, "items": [{"id": "q1", "score": 1.0, "prediction": "x"}]}}
    (reference / "factoid_qa.json").write_text(json.dumps(stored))
    refused = pytester.runpytest(*dense_baseline, "--sparsity", "0.5", "--kick-reference", str(reference))
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*the reference */factoid_qa.json (wanda 50% unstructured) for factoid_qa was made "
                                  "under other settings (model alias: *): record a reference with this model*"])


def test_a_path_that_is_no_reference_is_one_line(pytester, dense_baseline, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    for path, expected in ((bad, "is not a readable reference"), (tmp_path / "missing", "does not exist")):
        result = pytester.runpytest(*dense_baseline, "--sparsity", "0.5", "--kick-reference", str(path))
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*--kick-reference {path} {expected}*"])


def test_recovery_and_a_reference_do_not_mix():
    from pathlib import Path

    from kick_checks.errors import KickError
    from kick_checks.settings import build_settings

    with pytest.raises(KickError, match="run it without --kick-reference"):
        build_settings({"recovery": "prompt", "reference": "refs", "sparsity": 0.5}, {}, Path("."))
    with pytest.raises(KickError, match="drop them from a baseline update"):
        build_settings({"update_baselines": True, "record_reference": "refs"}, {}, Path("."))
