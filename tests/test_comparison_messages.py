"""What a comparison says: why a loss passed, short excerpts of long answers, empty answers, JUnit units."""

from kick_checks.gate.comparison import compare_items
from kick_checks.gate.tolerance import Tolerance
from kick_checks.tasks.protocol import EXACT_MATCH, ROUGE_L, ItemOutcome, TaskResult


def _result(scores, predictions, metric=EXACT_MATCH, task="factoid_qa"):
    return TaskResult(task, metric, [ItemOutcome(f"i{k}", score, prediction)
                                     for k, (score, prediction) in enumerate(zip(scores, predictions))])


def test_a_loss_beyond_the_tolerance_that_is_not_significant_says_why_it_passed():
    dense = _result([1, 1, 1, 0], ["a"] * 4)
    compressed = _result([1, 1, 0, 0], ["a"] * 4)
    comparison = compare_items(dense.items, compressed, Tolerance(0.05), "x", gate="significant")
    assert comparison.beyond_tolerance and comparison.passed
    assert "PASS (loss not significant at alpha 0.05)" in comparison.line()
    threshold = compare_items(dense.items, compressed, Tolerance(0.05), "x")
    assert threshold.line().split("\n")[0].endswith("FAIL")


def test_long_lost_answers_are_shown_as_short_excerpts():
    long_answer = "The assistant answers at great length. " * 30
    dense = _result([0.9, 0.8], [long_answer, long_answer], metric=ROUGE_L, task="instruction_following")
    compressed = _result([0.1, 0.1], ["short", long_answer], metric=ROUGE_L, task="instruction_following")
    message = compare_items(dense.items, compressed, Tolerance(0.05), "x").failure_message()
    lost_lines = [line for line in message.splitlines() if line.startswith("  lost ")]
    assert len(lost_lines) == 2 and all(len(line) < 320 for line in lost_lines)
    assert "..." in lost_lines[0]


def test_all_empty_compressed_answers_are_said_in_one_line():
    dense = _result([0.3, 0.4, 0.2], ["a summary", "another", "third"], metric=ROUGE_L, task="summarization")
    compressed = _result([0.0, 0.0, 0.0], ["", " ", ""], metric=ROUGE_L, task="summarization")
    message = compare_items(dense.items, compressed, Tolerance(0.05), "x").failure_message()
    assert "every one of the 3 compressed answers is empty" in message


def test_more_lost_items_than_shown_are_counted():
    dense = _result([1] * 8, ["a"] * 8)
    compressed = _result([0] * 8, ["b"] * 8)
    assert "... and 3 more lost items (all in --kick-json)" in compare_items(
        dense.items, compressed, Tolerance(0.05), "x").failure_message()


def test_junit_properties_give_the_tolerance_as_a_fraction_like_the_loss():
    dense = _result([1, 1], ["a", "a"])
    properties = dict(compare_items(dense.items, dense, Tolerance(0.05), "x").junit_properties())
    assert properties["kick_tolerance"] == "0.05" and properties["kick_tolerance_kind"] == "relative"
    assert properties["kick_relative_loss"] == "0" and properties["kick_unstable"] == "0"
