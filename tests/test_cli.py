"""The ``kick`` command."""

import json
import subprocess
import sys

import pytest

from kick_checks.cli import main


def test_info_lists_models_tasks_and_shipped_baselines(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m (default)" in out and "factoid_qa" in out and "retrieval_qa.open_book" in out
    assert "device: " in out and "baselines shipped" in out


def test_info_lists_compressors_tasks_and_plugins_with_their_distribution(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from entry_points import install_entry_point

    from kick_checks.tasks import all_tasks

    examples = Path(__file__).resolve().parents[1] / "examples"
    (tmp_path / "pruner").mkdir()
    (tmp_path / "task").mkdir()
    install_entry_point(monkeypatch, tmp_path / "pruner", "kick-example-pruner", "kick_checks.compressors",
                        "row-magnitude = kick_example_pruner:RowMagnitude", examples / "kick-example-pruner")
    install_entry_point(monkeypatch, tmp_path / "task", "kick-example-task", "kick_checks.tasks",
                        "answer_preference = kick_example_task:AnswerPreference", examples / "kick-example-task")
    all_tasks.cache_clear()
    try:
        assert main(["info"]) == 0
    finally:
        all_tasks.cache_clear()
    lines = capsys.readouterr().out.splitlines()
    compressors = next(line for line in lines if line.startswith("compressors: "))
    assert {"wanda", "sparsegpt", "gptq", "row-magnitude"} <= set(compressors.split(": ")[1].split(", "))
    assert "answer_preference" in next(line for line in lines if line.startswith("tasks: "))
    assert "  compressor row-magnitude = kick_example_pruner:RowMagnitude (from kick-example-pruner 0.1.0)" in lines
    assert "  task answer_preference = kick_example_task:AnswerPreference (from kick-example-task 0.1.0)" in lines


def test_sweep_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default magnitude,wanda,sparsegpt;" in text and "(default 0.1,0.2,0.3,0.4,0.5,0.6,0.7)" in text


def test_prepare_prints_the_fingerprint(tiny_model_dir, capsys):
    assert main(["prepare", "--model", str(tiny_model_dir), "--dtype", "float32", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "parameters on cpu in float32" in out
    fingerprint = json.loads(out[out.index("{"):])
    assert fingerprint["source"] == "local" and fingerprint["dtype"] == "float32"


def test_bad_input_is_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["prepare", "--model", str(tmp_path / "nowhere.gguf")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kick: error: --kick-model") and err.count("\n") == 1


def test_console_script_runs_pytest_with_the_kick_marker(toy_qa, tmp_path):
    model_dir, data = toy_qa
    command = [
        sys.executable, "-c", "import sys; from kick_checks.cli import main; sys.exit(main())", "run",
        "-p", "no:cacheprovider", "-k", "factoid", "--kick-model", str(model_dir), "--kick-dtype", "float32",
        "--kick-device", "cpu", "--kick-data", f"factoid_qa={data}", "--kick-baselines-dir", str(tmp_path),
        "--kick-update-baselines",
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "factoid_qa: recorded dense 1.000 on 12 items, " in done.stdout and "(new)" in done.stdout
    assert (tmp_path / model_dir.name / "factoid_qa.json").is_file()


@pytest.mark.parametrize("argv", [["--version"], ["info", "--help"]])
def test_help_and_version(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0


def test_cache_clear_removes_compressed_entries(tmp_path, capsys):
    entry = tmp_path / "compressed" / "model-abc"
    entry.mkdir(parents=True)
    (entry / "weights.safetensors").write_bytes(b"x")
    assert main(["cache", "clear", "--cache-dir", str(tmp_path)]) == 0
    assert "removed 1 compressed-weight entries" in capsys.readouterr().out
    assert not (tmp_path / "compressed").exists()
    assert main(["cache", "clear", "--cache-dir", str(tmp_path)]) == 0
