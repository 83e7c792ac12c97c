"""Progress: a bar on a terminal, plain lines at a modest rate in logs, and never a change to what is iterated."""

import json

import pytest
import torch
from tiny_models import CHAT_TEMPLATE

import compressors.progress as progress_module
from compressors.progress import bars_enabled, lines_enabled, note, progress, progress_bar, set_line_sink, stage
from kick_checks.engine.generation import greedy_generate
from kick_checks.engine.window_loss import window_losses
from kick_checks.errors import KickWarning
from kick_checks.tasks import TaskOptions, get_task
from kick_checks.tasks.chat import ChatDecoding
from kick_checks.tasks.instruction_following import InstructionFollowing


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
    assert "generating answers" in capsys.readouterr().err
    monkeypatch.setenv("KICK_PROGRESS", "0")
    assert greedy_generate(tiny_loaded.model, tiny_loaded.tokenizer, prompts, max_new_tokens=3,
                           batch_size=2) == with_bar


@pytest.fixture
def slow_forward(tiny_loaded, lines):
    """The tiny model, each forward pass of it moving the test's clock by 7 s: a model that takes minutes."""
    collected, clock = lines

    def advance(*_):
        clock[0] += 7.0

    handle = tiny_loaded.model.register_forward_hook(advance)
    yield tiny_loaded, collected
    handle.remove()


def test_a_batch_whose_answers_all_end_late_still_prints_a_line_every_interval(slow_forward, monkeypatch):
    """Summarization once printed nothing for 287 s: its answers finished together at the end, and a line was only
    considered when one finished. The clock is now looked at after every forward pass."""
    loaded, collected = slow_forward
    monkeypatch.setattr(loaded.model.generation_config, "eos_token_id", None)  # every answer runs to the end
    with stage("summarization"):
        greedy_generate(loaded.model, loaded.tokenizer, ["a b", "c d e", "f"], max_new_tokens=8, batch_size=4)
    assert collected[0] == "kick-checks: summarization: generating answers: answer 0/3 (0%), 21 s elapsed"
    assert collected[-1].startswith("kick-checks: summarization: generating answers: answer 3/3 (100%), done in")
    assert len(collected) >= 3  # 9 forward passes of 7 s: a line at 21, 42 and 63 s, then the closing one


def test_the_second_turn_says_it_is_the_second_turn(slow_forward, monkeypatch):
    loaded, collected = slow_forward
    monkeypatch.setattr(loaded.tokenizer, "chat_template", CHAT_TEMPLATE)
    monkeypatch.setattr(InstructionFollowing, "decoding", ChatDecoding(max_new_tokens=4))
    rows = [{"question_id": index, "turns": [f"Name a colour {index}.", "And another?"]} for index in range(3)]
    with stage("instruction_following"):
        InstructionFollowing().answer(loaded.model, loaded.tokenizer, rows, TaskOptions())
    turns = {line.split(":")[1].strip() for line in collected}
    assert turns == {"instruction_following, turn 1 of 2", "instruction_following, turn 2 of 2"}
    assert all(": generating answers: answer " in line for line in collected)


def test_multiple_choice_says_how_many_subjects_are_done(slow_forward, tmp_path):
    loaded, collected = slow_forward
    rows = [{"id": f"q{index}", "subject": f"subject{index // 2}", "question": f"What colour is thing {index}?",
             "choices": ["red", "blue", "green", "yellow"], "answer": "ABCD"[index % 4]} for index in range(8)]
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.warns(KickWarning, match="fewer than 5 shots"), stage("multiple_choice"):
        get_task("multiple_choice").run(loaded.model, loaded.tokenizer, TaskOptions(data_path=data))
    assert any(line.startswith("kick-checks: multiple_choice: subjects: subject 1/4 (25%), scoring options: batch ")
               for line in collected)
    assert collected[-1].startswith("kick-checks: multiple_choice: subjects: subject 4/4 (100%), done in")


def test_perplexity_windows_are_counted(tiny_loaded, lines):
    collected, clock = lines
    windows = [torch.arange(10) for _ in range(3)]

    def advance(*_):
        clock[0] += 25.0

    handle = tiny_loaded.model.model.register_forward_hook(advance)  # the decoder body the window loss runs
    try:
        window_losses(tiny_loaded.model, windows)
    finally:
        handle.remove()
    assert collected[0] == "kick-checks: scoring windows: window 1/3 (33%), 25 s elapsed"


def test_between_loops_a_stage_still_prints_and_nested_loops_show_their_counts(lines):
    collected, clock = lines
    with stage("multiple_choice"):
        clock[0] += 30.0
        progress_module.tick()
        for _ in progress(range(2), description="subjects", unit="subject"):
            with progress_bar(4, description="scoring options", unit="batch") as bar:
                clock[0] += 21.0
                bar.update()
    assert collected == [
        "kick-checks: multiple_choice, 30 s elapsed",
        "kick-checks: multiple_choice: subjects: subject 0/2 (0%), scoring options: batch 1/4 (25%), 51 s elapsed",
        "kick-checks: multiple_choice: subjects: subject 1/2 (50%), scoring options: batch 1/4 (25%), 72 s elapsed",
        "kick-checks: multiple_choice: subjects: subject 2/2 (100%), done in 42 s",
    ]


def test_the_plugin_flushes_each_line_so_a_ci_log_gets_it_at_once():
    """Off a terminal pytest's output is block-buffered: a line written without a flush reached the log minutes
    later, when the test ended."""
    from kick_checks.plugin import _terminal_line_sink

    calls = []

    class Reporter:
        def write_line(self, line):
            calls.append(("write", line))

        def flush(self):
            calls.append(("flush", None))

    class Plugins:
        def get_plugin(self, name):
            return Reporter() if name == "terminalreporter" else None

    class Config:
        pluginmanager = Plugins()

    _terminal_line_sink(Config())("kick-checks: evaluating factoid_qa")
    assert calls == [("write", "kick-checks: evaluating factoid_qa"), ("flush", None)]


def test_on_a_terminal_the_bars_are_redrawn_so_their_elapsed_time_moves(lines, monkeypatch, capsys):
    collected, clock = lines
    monkeypatch.setenv("KICK_PROGRESS", "1")
    with stage("summarization"), progress_bar(3, description="generating answers", unit="answer") as bar:
        capsys.readouterr()
        clock[0] += 2.0
        progress_module.tick()
        drawn = capsys.readouterr().err
        bar.update(3)
    assert "summarization: generating answers" in drawn and collected == []
