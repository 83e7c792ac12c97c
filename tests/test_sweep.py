"""kick sweep and kick report on the toy model: one run per configuration, tables from the JSON reports."""

import json
import os
import re

import pytest

from kick_checks.cli import main
from kick_checks.errors import KickError
from kick_checks.sweep import SweepPoint, markdown_table, plan, sweep_rows


def test_plan_covers_methods_sparsities_patterns_and_bits():
    points = plan(["wanda", "gptq"], [0.1, 0.5], ["2:4"], [8, 4])
    assert [point.name for point in points] == ["wanda-s10", "wanda-s50", "wanda-2of4", "gptq-8bit", "gptq-4bit"]
    assert SweepPoint("wanda", pattern="2:4").options() == ["--kick-method", "wanda", "--kick-pattern", "2:4"]
    with pytest.raises(KickError, match="sweep is empty"):
        plan(["gptq"], [0.5], [], [])


def test_sweep_then_report_on_the_toy_model(toy_sweep_options, tmp_path, capsys):
    common = toy_sweep_options
    out = tmp_path / "sweep"
    assert main(["sweep", "--out", str(out), "--methods", "magnitude", "--sparsities", "0.1,0.9", "--patterns", "",
                 "--", *common]) == 0
    printed = capsys.readouterr()
    assert re.search(r"\[2/2\] magnitude-s90: done in \d+s; 2 done \(0 before this run\), 0 running, 0 failed, "
                     r"0 waiting \(elapsed [\d.]+ min, about 0\.0 min left\)", printed.out)
    assert "sweep" not in printed.err  # no bar when nobody watches (captured output)
    rows = json.loads((out / "sweep.json").read_text())
    assert [(row["sparsity"], row["verdict"]) for row in rows] == [(0.1, "pass"), (0.9, "fail")]
    assert "| magnitude | 90% | unstructured |  | factoid_qa | 12 | 1.000 |" in (out / "sweep.md").read_text()
    (out / "sweep.md").unlink()
    assert main(["report", str(out)]) == 0 and (out / "sweep.md").is_file()
    assert "wrote" in capsys.readouterr().out


def test_report_of_an_empty_folder_says_what_to_do(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "run kick sweep --out" in capsys.readouterr().err


def test_markdown_table_formats_changes():
    rows = sweep_rows([{"spec": {"method": "wanda", "sparsity": 0.3, "pattern": "unstructured", "bits": None},
                        "tasks": [{"task": "factoid_qa", "metric": "exact_match", "dense": 0.5, "compressed": 0.4,
                                   "relative_loss": 0.2, "verdict": "fail", "n": 100},
                                  {"task": "perplexity", "verdict": "recorded"}]}])
    table = markdown_table(rows).splitlines()
    assert table[0].startswith("n: the items each point was scored on")
    assert table[4] == "| wanda | 30% | unstructured |  | factoid_qa | 100 | 0.500 | 0.400 | -20.0% | fail |"


def test_a_point_relays_its_progress_and_speaks_up_when_silent(tmp_path, monkeypatch):
    """``kick sweep`` printed nothing until its first point ended (3 minutes): the point's own progress lines now
    come through as they are printed, and a line of ours when it is silent for an interval."""
    import sys

    import compressors.progress as progress_module
    from kick_checks.sweep import runner

    child = ("import time; print('collecting ...'); print('kick-checks: evaluating factoid_qa'); time.sleep(1.5); "
             "print('1 passed')")
    monkeypatch.setattr(runner, "point_command", lambda point, report, args: [sys.executable, "-c", child])
    monkeypatch.setattr(progress_module, "LINE_INTERVAL_S", 0.5)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    heard: list[str] = []
    run = runner.run_point(SweepPoint("magnitude", 0.5), [], None, on_progress=heard.append)
    assert heard[0] == "magnitude-s50: evaluating factoid_qa"
    assert any(re.fullmatch(r"magnitude-s50: running, \d+ s elapsed", line) for line in heard[1:])
    assert run.report is None and run.returncode == 0 and run.tail == "collecting ... | kick-checks: evaluating " \
        "factoid_qa | 1 passed"
    assert list(tmp_path.iterdir()) == []  # the scratch folder goes with the point


def test_the_scratch_folder_of_a_killed_sweep_is_removed_by_the_next(tmp_path, monkeypatch, capsys):
    import sys

    from kick_checks.sweep import runner

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    killed = tmp_path / ".kick-sweep.999999999-abc123.tmp"  # its process is gone
    live = tmp_path / f".kick-sweep.{os.getpid()}-def456.tmp"
    other = tmp_path / ".something-else.999999999-ghi789.tmp"  # another program's: not ours to remove
    for folder in (killed, live, other):
        folder.mkdir()
    monkeypatch.setattr(runner, "point_command", lambda point, report, args: [sys.executable, "-c", "pass"])
    runner.run_point(SweepPoint("magnitude", 0.5), [], None)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([live.name, other.name])
    assert f"removed {killed}, left by a kick sweep that was killed" in capsys.readouterr().err
