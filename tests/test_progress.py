"""Progress: a bar on a terminal, plain lines at a modest rate in logs, and never a change to what is iterated."""

import pytest

import compressors.progress as progress_module
from compressors.progress import bars_enabled, lines_enabled, note, progress, progress_bar, set_line_sink
from kick_checks.engine.generation import greedy_generate


@pytest.fixture
def lines(monkeypatch):
    """Plain progress lines collected, with a clock the test moves."""
    monkeypatch.delenv("KICK_PROGRESS", raising=False)
    clock = [0.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: clock[0])
    collected: list[str] = []
    previous = set_line_sink(collected.append)
    yield collected, clock
    set_line_sink(previous)


def test_off_a_terminal_a_long_loop_prints_plain_lines_and_a_short_one_nothing(lines):
    collected, clock = lines
    assert not bars_enabled() and lines_enabled()  # pytest captures standard error: not a terminal
    assert list(progress([3, 1, 2], description="quick")) == [3, 1, 2]
    assert collected == []  # a loop shorter than the interval says nothing
    seen = []
    for item in progress(range(6), description="compressing", unit="block"):
        seen.append(item)
        clock[0] += 9.0  # 9 s per block: a line at 27 s (3 blocks), 54 s (6 blocks), and a closing one
    assert seen == list(range(6))
    assert collected == ["kick-checks: compressing: block 3/6 (50%), 27 s elapsed",
                         "kick-checks: compressing: block 6/6 (100%), 54 s elapsed",
                         "kick-checks: compressing: block 6/6 (100%), done in 54 s"]
    collected.clear()
    with progress_bar(10, description="generating 10 answers", unit="answer") as bar:
        clock[0] += 25.0
        bar.update(4)
    assert collected == ["kick-checks: generating 10 answers: answer 4/10 (40%), 25 s elapsed",
                         "kick-checks: generating 10 answers: answer 4/10 (40%), done in 25 s"]
    collected.clear()
    note("loading smollm2-135m")
    assert collected == ["kick-checks: loading smollm2-135m"]


def test_kick_progress_0_silences_lines_too(lines, monkeypatch):
    collected, clock = lines
    monkeypatch.setenv("KICK_PROGRESS", "0")
    items = [3, 1, 2]
    assert progress(items, description="x") is items
    note("anything")
    assert collected == []


@pytest.mark.parametrize("value,enabled", [("1", True), ("0", False), ("no", False), ("yes", True)])
def test_kick_progress_forces_bars_on_or_off(monkeypatch, value, enabled):
    monkeypatch.setenv("KICK_PROGRESS", value)
    assert bars_enabled() is enabled


def test_a_forced_bar_draws_on_standard_error_and_yields_every_item(tiny_loaded, monkeypatch, capsys):
    monkeypatch.setenv("KICK_PROGRESS", "1")
    assert list(progress(range(5), description="counting", unit="thing")) == [0, 1, 2, 3, 4]
    assert "counting" in capsys.readouterr().err
    prompts = ["a b", "c d e", "f"]
    with_bar = greedy_generate(tiny_loaded.model, tiny_loaded.tokenizer, prompts, max_new_tokens=3, batch_size=2)
    assert "generating 3 answers" in capsys.readouterr().err
    monkeypatch.setenv("KICK_PROGRESS", "0")
    assert greedy_generate(tiny_loaded.model, tiny_loaded.tokenizer, prompts, max_new_tokens=3,
                           batch_size=2) == with_bar
