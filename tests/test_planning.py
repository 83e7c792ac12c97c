"""What a gate can see at its n: pure functions on hand-made numbers, and their lines in summaries and `kick plan`."""

import pytest

from kick_checks.gate.comparison import compare_items
from kick_checks.gate.planning import _tail, detectable_share, losses_needed, plan, tolerance_items
from kick_checks.gate.tolerance import Tolerance
from kick_checks.tasks.protocol import EXACT_MATCH, ROUGE_L, ItemOutcome, TaskResult


def scores(right: int, n: int) -> list[float]:
    return [1.0] * right + [0.0] * (n - right)


def test_mcnemar_needs_five_losses_at_alpha_005_and_seven_at_001():
    assert (losses_needed(0.05), losses_needed(0.01), losses_needed(0.5)) == (5, 7, 2)


def test_the_detectable_share_has_the_planned_power():
    share = detectable_share(17, 0.05)
    assert _tail(17, share, 5) == pytest.approx(0.8, abs=1e-6)
    assert _tail(17, share * 0.95, 5) < 0.8
    assert detectable_share(4, 0.05) is None  # fewer right answers than the test needs


@pytest.mark.parametrize(("tolerance", "items"), [("0.05", 0.85), ("abs:0.01", 2.0), ("recovery:0.9", 1.7)])
def test_one_tolerance_in_items(tolerance, items):
    assert tolerance_items(Tolerance.parse(tolerance, "t"), 17 / 200, 200) == pytest.approx(items)


def test_freebaseqa_sized_run_is_a_hair_trigger_for_threshold_and_blind_for_significant():
    threshold = plan(scores(17, 200), [True] * 200, Tolerance(0.05), "threshold", 0.05)
    assert threshold.hair_trigger and threshold.needed_n() == 236
    assert "hair-trigger: one lost item is more than the tolerance 5.0%" in threshold.warning()
    significant = plan(scores(17, 200), [True] * 200, Tolerance(0.05), "significant", 0.05)
    assert significant.blind and "blind: at n=200" in significant.warning() and "n >= " in significant.warning()
    bigger = plan(scores(17 * 8, 1600), [True] * 1600, Tolerance(0.05), "significant", 0.05)
    assert significant.needed_n() <= 1600 and not bigger.blind


def test_a_comfortable_gate_warns_of_nothing_and_graded_scores_have_no_plan():
    comfortable = plan(scores(600, 1000), [True] * 1000, Tolerance(0.05), "threshold", 0.05)
    assert not comfortable.warning() and comfortable.summary() == "one tolerance = 30.0 items"
    assert plan([0.2, 0.5], [True, True], Tolerance(0.05), "threshold", 0.05) is None


def test_unstable_items_are_left_out_of_the_planned_power():
    with_unstable = plan(scores(20, 40), [True] * 10 + [False] * 30, Tolerance(0.05), "significant", 0.05)
    assert (with_unstable.n, with_unstable.right) == (10, 10)


def test_the_summary_line_says_what_the_gate_can_see_and_warns_on_its_own_line():
    dense = TaskResult("factoid_qa", EXACT_MATCH, [ItemOutcome(f"i{k}", s, "") for k, s in enumerate(scores(17, 200))])
    comparison = compare_items(dense.items, dense, Tolerance(0.05), "dense")
    first, second = comparison.line().split("\n")
    assert "one tolerance = 0.9 items" in first and first.endswith("PASS")
    assert second.startswith("  factoid_qa: hair-trigger:")
    assert comparison.to_report()["plan"]["hair_trigger"] is True
    graded = TaskResult("summarization", ROUGE_L, [ItemOutcome("a", 0.3, ""), ItemOutcome("b", 0.4, "")])
    assert "\n" not in compare_items(graded.items, graded, Tolerance(0.05), "dense").line()


def test_kick_plan_answers_for_a_score_and_for_the_shipped_baselines(capsys):
    from kick_checks.cli import main

    assert main(["plan", "--score", "0.085", "--n", "200"]) == 0
    out = capsys.readouterr().out
    assert "score 0.085 on n=200, tolerance 5.0%: threshold: one tolerance = 0.9 items" in out
    assert "hair-trigger" in out and "blind" in out
    assert main(["plan", "--task", "factoid_qa,summarization", "--tolerance", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "factoid_qa (dense 0." in out and "summarization (dense" in out and "graded scores, no plan" in out
    assert main(["plan", "--score", "0.5"]) == 2
