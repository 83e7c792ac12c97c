"""Knowledge-recovery accounting and pools, on hand-made item lists (no model)."""

from __future__ import annotations

import json
import re

import pytest

from kick_checks.errors import KickError
from kick_checks.recovery.accounting import account, counting_recovered_as_kept, wilson_interval
from kick_checks.recovery.dynamic import choose
from kick_checks.recovery.pools import load_pool, recovery_task, supported_tasks
from kick_checks.tasks import ItemOutcome, TaskResult, get_task
from kick_checks.tasks.data import read_bundled_jsonl
from kick_checks.tasks.protocol import EXACT_MATCH
from kick_checks.tasks.scoring import normalize_answer


def outcomes(scores: str) -> list[ItemOutcome]:
    """``"1100"`` -> items i0..i3 scored 1, 1, 0, 0."""
    return [ItemOutcome(f"i{index}", float(mark), "") for index, mark in enumerate(scores)]


def test_lost_items_split_into_recovered_and_forgotten_and_the_rest_is_counted():
    dense = outcomes("11110100")
    compressed = outcomes("10000110")
    recovered = outcomes("11010011")
    accounting = account(dense, compressed, recovered)
    assert accounting.n == 8
    assert accounting.lost == ["i1", "i2", "i3"]  # right dense, wrong compressed
    assert accounting.recovered == ["i1", "i3"]  # and right again under recovery: displaced
    assert accounting.forgotten == ["i2"]
    assert accounting.broken == ["i5"]  # right compressed, wrong under recovery
    assert accounting.gained == ["i7"]  # wrong dense and compressed, right under recovery
    assert accounting.recovered_fraction == pytest.approx(2 / 3)
    assert "2 of 3 lost items recovered (67%" in accounting.describe()
    assert "1 forgotten, 1 broken, 1 gained" in accounting.describe()
    report = accounting.to_dict()
    assert (report["lost"], report["recovered"], report["forgotten"]) == (3, 2, 1)
    assert report["items"]["recovered"] == ["i1", "i3"]


def test_only_items_all_three_runs_have_are_accounted():
    dense = outcomes("111")
    compressed = outcomes("00")  # i0, i1 (a --kick-limit sample)
    recovered = [ItemOutcome("i1", 1.0, ""), ItemOutcome("i9", 1.0, "")]
    accounting = account(dense, compressed, recovered)
    assert accounting.n == 1 and accounting.lost == ["i1"] and accounting.recovered == ["i1"]


def test_nothing_lost_has_no_recovered_fraction():
    accounting = account(outcomes("10"), outcomes("10"), outcomes("10"))
    assert accounting.lost == [] and accounting.recovered_fraction is None
    assert accounting.describe().startswith("no items lost")


def test_wilson_interval_matches_the_textbook_values_and_stays_in_range():
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(50, 100)
    assert low < 0.5 < high and high - low == pytest.approx(0.192, abs=0.002)


def test_the_recoverable_gate_scores_recovered_items_as_dense_and_nothing_else():
    dense = outcomes("1111")
    compressed = TaskResult("factoid_qa", EXACT_MATCH, outcomes("1000"))
    accounting = account(dense, compressed.items, outcomes("1100"))
    kept = counting_recovered_as_kept(compressed, dense, accounting)
    assert [item.score for item in kept.items] == [1.0, 1.0, 0.0, 0.0]
    assert kept.score == 0.5 and compressed.score == 0.25  # the original is unchanged


def test_dynamic_choice_takes_the_best_candidate_per_item_and_keeps_the_first_on_ties():
    scores = [[0.5, 0.1, 0.3], [0.5, 0.9, 0.2], [0.4, 0.9, 0.8]]  # scores[candidate][item]
    assert choose(scores) == [0, 1, 2]
    assert choose([]) == []


def test_recovery_supports_the_knowledge_tasks_and_names_them_for_any_other():
    assert supported_tasks() == ["factoid_qa", "multiple_choice", "retrieval_qa.closed_book"]
    for key in ("summarization", "retrieval_qa.open_book", "perplexity"):
        with pytest.raises(KickError, match="recovery supports factoid_qa, multiple_choice, retrieval_qa.closed_book"):
            recovery_task(key)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", normalize_answer(text))


def test_bundled_pools_are_held_out_from_every_evaluated_item():
    evaluated_questions, evaluated_answers = set(), set()
    for name, fields in (("factoid_qa.jsonl", ("question",)), ("retrieval_qa.jsonl", ("question",)),
                         ("multiple_choice_test.jsonl", ("question",)), ("multiple_choice_dev.jsonl", ("question",))):
        for row in read_bundled_jsonl(name, fields).rows:
            evaluated_questions.add(_norm(row["question"]))
            evaluated_answers.update(_norm(answer) for answer in row.get("answers", []))
    qa_pool = read_bundled_jsonl("recovery_qa_pool.jsonl", ("id", "question", "answers", "category")).rows
    mc_pool = read_bundled_jsonl("recovery_mc_pool.jsonl", ("id", "subject", "question", "choices", "answer")).rows
    assert len(qa_pool) == 40 and len(mc_pool) == 32
    for row in qa_pool + mc_pool:
        assert _norm(row["question"]) not in evaluated_questions, row
    for row in qa_pool:
        assert not {_norm(answer) for answer in row["answers"]} & evaluated_answers, row
        assert not any(_norm(answer) in _norm(row["question"]).split() for answer in row["answers"]), row
    subjects = {row["subject"] for row in read_bundled_jsonl("multiple_choice_test.jsonl", ("subject",)).rows}
    assert {row["subject"] for row in mc_pool} == subjects


def test_a_pool_item_that_repeats_an_evaluated_question_is_dropped(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(row) + "\n" for row in (
        {"id": "p1", "question": "What colour is the cat?", "answers": ["red"]},
        {"id": "p2", "question": "What colour is the emu?", "answers": ["gold"]},
    )))
    loaded = load_pool(get_task("factoid_qa"), "short_answer", ["what colour is the CAT"], pool)
    assert [row["id"] for row in loaded.rows] == ["p2"] and loaded.dropped == 1
    with pytest.raises(KickError, match="every item repeats an evaluated question"):
        load_pool(get_task("factoid_qa"), "short_answer", ["What colour is the cat?", "What colour is the emu?"], pool)
    with pytest.raises(KickError, match="lacks answers"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps({"id": "x", "question": "q"}) + "\n")
        load_pool(get_task("factoid_qa"), "short_answer", [], bad)
    with pytest.raises(KickError, match="no such file"):
        load_pool(get_task("factoid_qa"), "short_answer", [], tmp_path / "missing.jsonl")
