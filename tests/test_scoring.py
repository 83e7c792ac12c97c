"""Exact-match scoring on hand-made cases, including the reference code's three scoring bugs."""

import pytest

from kick_checks.engine.generation import cut_at_stop
from kick_checks.tasks.scoring import exact_match, first_answer_line, normalize_answer


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("  Paris.  ", "paris"),
        ("Leonardo da Vinci!", "leonardo da vinci"),
        ("an apple a day", "apple day"),
        ("St. Louis", "st louis"),
        ("rock_and_roll", "rock and roll"),
        ("“Quoted”", "quoted"),
        ("ＰＡＲＩＳ", "paris"),
        ("", ""),
        ("...", ""),
    ],
)
def test_normalize_answer(raw, normalized):
    assert normalize_answer(raw) == normalized


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("Paris", ["Paris"], True),
        ("paris.", ["Paris"], True),
        ("The Pacific", ["Pacific Ocean", "Pacific"], True),
        ("Leonardo", ["Leonardo da Vinci", "Leonardo"], True),
        ("8", ["eight", "8"], True),
        ("Paris, France", ["Paris"], False),  # exact match, not containment
        ("The capital of France is Paris", ["Paris"], False),
        ("Rome", ["Paris"], False),
    ],
)
def test_exact_match(prediction, answers, expected):
    assert exact_match(prediction, answers) is expected


def test_empty_prediction_never_matches():
    # The reference code counts an empty prediction as a match when an alias normalizes to "" too.
    assert not exact_match("", ["Paris"])
    assert not exact_match("   ", ["Paris"])
    assert not exact_match("", [""])
    assert not exact_match("The", ["a", "the"])  # both sides normalize to nothing


def test_empty_alias_is_ignored():
    assert not exact_match("anything", ["", "..."])
    assert exact_match("Paris", ["", "Paris"])


def test_first_answer_line_takes_only_the_first_nonblank_line():
    assert first_answer_line(" Paris\nQuestion: What is the capital of Spain?\nAnswer: Madrid") == "Paris"
    assert first_answer_line("\n\n  Rome  \nmore") == "Rome"
    assert first_answer_line("") == ""


def test_answer_in_prompt_earns_nothing():
    # Scoring sees only generated text: an open-book passage holding the answer is never part of it.
    prompt = "Passage: Canberra is the capital of Australia.\nQuestion: What is the capital of Australia?\nAnswer:"
    generated = " Sydney"
    assert not exact_match(first_answer_line(generated), ["Canberra"])
    assert "Canberra" in prompt


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [(" Paris\nQuestion", ("\n",), " Paris"), ("abc", ("\n",), "abc"), ("a.b\nc", ("\n", "."), "a")],
)
def test_cut_at_stop(text, stop, expected):
    assert cut_at_stop(text, stop) == expected
