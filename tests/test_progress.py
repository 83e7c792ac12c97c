"""Progress bars appear only where someone watches, and never change what is iterated."""

import pytest

from kick_checks.generation import greedy_generate
from kick_checks.progress import bars_enabled, progress


def test_no_bar_under_capture_and_the_iterable_is_untouched(monkeypatch):
    monkeypatch.delenv("KICK_PROGRESS", raising=False)
    items = [3, 1, 2]
    assert not bars_enabled()  # pytest captures standard error: not a terminal
    assert progress(items, description="x") is items


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
