"""Determinism, secrets, and the bad-input cases not covered next to their modules."""

import json

import pytest

from kick_checks.errors import KickError
from kick_checks.model.calibration import calibration_tokens
from kick_checks.tasks import get_task


def items_of(report) -> list:
    (task,) = json.loads(report.read_text())["tasks"]
    return task["result"]["items"]


def test_the_same_command_twice_and_under_xdist_gives_identical_items(pytester, toy_args, tmp_path):
    pytester.runpytest(*toy_args, "--kick-update-baselines").assert_outcomes(passed=1)
    run = [*toy_args, "--sparsity", "0.8", "--kick-method", "sparsegpt", "--kick-tolerance", "1.0",
           "--kick-no-compress-cache"]
    reports = [tmp_path / "first.json", tmp_path / "second.json", tmp_path / "xdist.json"]
    pytester.runpytest(*run, "--kick-json", str(reports[0])).assert_outcomes(passed=1)
    pytester.runpytest(*run, "--kick-json", str(reports[1])).assert_outcomes(passed=1)
    pytester.runpytest_subprocess(*run, "-n", "2", "--kick-json", str(reports[2])).assert_outcomes(passed=1)
    first = items_of(reports[0])
    assert first == items_of(reports[1]) == items_of(reports[2])
    assert len(first) == 12 and all(item["prediction"] for item in first)


def test_the_judge_key_appears_in_no_output(pytester, toy_args, tmp_path, monkeypatch):
    secret = "sk-kick-test-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    pytester.runpytest(*toy_args, "--kick-update-baselines").assert_outcomes(passed=1)
    report, summary = tmp_path / "kick.json", tmp_path / "kick.md"
    result = pytester.runpytest(*toy_args, "--sparsity", "0.2", "--kick-method", "magnitude",
                                "--kick-judge-model", "judge-model", "--kick-judge-base-url", "http://127.0.0.1:9/v1",
                                "--kick-json", str(report), "--kick-markdown", str(summary), "--kick-tolerance", "1")
    result.assert_outcomes(passed=1)
    assert json.loads(report.read_text())["judge_model"] == "judge-model"
    for text in (report.read_text(), summary.read_text(), result.stdout.str(), result.stderr.str()):
        assert secret not in text
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".lock", ""):
            assert secret.encode() not in path.read_bytes()


def test_unknown_task_is_one_line():
    with pytest.raises(KickError, match="task 'mmlu' is unknown: use one of factoid_qa"):
        get_task("mmlu")


def test_calibration_text_shorter_than_a_window(tiny_loaded):
    with pytest.raises(KickError, match="fewer than --kick-calib-seqlen 256: lower --kick-calib-seqlen"):
        calibration_tokens(tiny_loaded.tokenizer, 4, 256, 0, text="Too short to calibrate on.")


def test_a_limit_larger_than_the_data_runs_every_item(pytester, toy_args):
    """``--kick-limit N`` is at most N items per task: ``[tool.kick] limit = 40`` once stopped every run, because
    summarization has 32 items."""
    result = pytester.runpytest(*toy_args, "--kick-update-baselines", "--kick-limit", "500")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*factoid_qa: recorded dense 1.000 on 12 items, * (new)*"])


@pytest.mark.parametrize("full_at", ["weights", "staging folder"])
def test_a_full_disk_while_storing_the_compression_cache_leaves_no_entry(full_at, tiny_loaded, tmp_path,
                                                                         monkeypatch, caplog):
    import copy
    import errno

    import safetensors.torch
    import torch

    from compressors.report import measure_sparsity
    from kick_checks.model.compressed_cache import CompressedCache

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    def half_written(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"\x00" * 64)  # what a full disk leaves behind
        no_space()

    calls = []

    def compress(model):
        def run():
            calls.append(1)
            with torch.no_grad():
                for parameter in model.model.layers.parameters():
                    if parameter.dim() == 2:
                        parameter[:, ::2] = 0
            return measure_sparsity(model)
        return run

    with monkeypatch.context() as patched:
        if full_at == "weights":
            patched.setattr(safetensors.torch, "save_file", half_written)
        else:
            patched.setattr("tempfile.mkdtemp", no_space)
        model = copy.deepcopy(tiny_loaded.model)
        report, how = CompressedCache(tmp_path, "tiny", "k").compressed_once(model, compress(model))
    assert how == "compressed" and report.sparsity == pytest.approx(0.5)  # the run goes on with the model in memory
    assert "No space left on device" in caplog.text and "continuing without the cache" in caplog.text
    assert [path.name for path in (tmp_path / "compressed").iterdir() if path.is_dir()] == []  # nothing partial kept

    # with space again, the next run compresses (it cannot load a partial entry), stores, and the one after loads
    model = copy.deepcopy(tiny_loaded.model)
    assert CompressedCache(tmp_path, "tiny", "k").compressed_once(model, compress(model))[1] == "compressed"
    fresh = copy.deepcopy(tiny_loaded.model)
    report, how = CompressedCache(tmp_path, "tiny", "k").compressed_once(fresh, compress(fresh))
    assert how == "loaded" and len(calls) == 2
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))


def test_the_compression_cache_key_covers_the_shared_compressor_code(tmp_path):
    """Editing the calibration walk or the statistics changes what every method computes, although neither is a
    base class of any: their files are part of the key, for our methods and for plug-ins alike."""
    import sys

    from compressors.gptq import GPTQ
    from kick_checks.model.compressed_cache import code_hash, compressor_sources

    sys.path.insert(0, str(tmp_path))
    try:
        (tmp_path / "my_pruner.py").write_text("from compressors.base import LayerwisePruner\n"
                                               "class Mine(LayerwisePruner):\n    pass\n")
        from my_pruner import Mine
    finally:
        sys.path.remove(str(tmp_path))
    for compressor in (GPTQ(), Mine()):
        names = {path.name for path in compressor_sources([compressor])}
        assert {"layerwise.py", "statistics.py", "masks.py", "quantization.py", "base.py"} <= names
    assert "my_pruner.py" in {path.name for path in compressor_sources([Mine()])}
    before = code_hash([Mine()])
    (tmp_path / "my_pruner.py").write_text("from compressors.base import LayerwisePruner\n"
                                           "class Mine(LayerwisePruner):\n    needs_calibration = False\n")
    assert code_hash([Mine()]) != before
    assert code_hash([GPTQ()]) != code_hash([Mine()])


def test_a_staging_folder_left_by_a_killed_cache_write_is_removed_and_reported(tiny_loaded, tmp_path):
    """A kill during the write left a hidden folder the size of the model that no later run removed."""
    import copy
    import os

    from compressors.report import measure_sparsity
    from kick_checks.model.compressed_cache import CompressedCache

    root = tmp_path / "compressed"
    killed = root / ".tiny-k.999999999-abc123.tmp"  # its writer is gone
    writing = root / f".tiny-other.{os.getpid()}-def456.tmp"  # a live writer's: kept
    for folder in (killed, writing):
        folder.mkdir(parents=True)
        (folder / "weights.safetensors").write_bytes(b"\x00" * 1024)
    model = copy.deepcopy(tiny_loaded.model)
    cache = CompressedCache(tmp_path, "tiny", "k")
    assert cache.compressed_once(model, lambda: measure_sparsity(model))[1] == "compressed"
    assert not killed.exists() and writing.exists()
    assert cache.notes == [f"removed {killed}, left by an interrupted write of the compressed-weights cache"]
    assert not [path for path in root.iterdir() if path.name.startswith(".tiny-k.")]  # its own staging renamed


def test_a_damaged_cache_entry_is_a_warning_pytest_shows(tiny_loaded, tmp_path):
    """The warning went to the logging module only, which pytest shows for failed tests alone."""
    import copy

    from compressors.report import measure_sparsity
    from kick_checks.errors import KickWarning
    from kick_checks.model.compressed_cache import CompressedCache

    model = copy.deepcopy(tiny_loaded.model)
    cache = CompressedCache(tmp_path, "tiny", "k")
    cache.compressed_once(model, lambda: measure_sparsity(model))
    weights = cache.folder / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.warns(KickWarning, match=r"compression cache entry .*tiny-k is damaged \(.*\): rebuilding it"):
        assert cache.compressed_once(model, lambda: measure_sparsity(model))[1] == "compressed"
