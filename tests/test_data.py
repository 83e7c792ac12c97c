"""The bundled task sets: sizes, shapes, and the properties that keep their scores honest."""

import json
import re
from collections import Counter
from importlib import resources

from kick_checks.tasks import factoid_qa, retrieval_qa
from kick_checks.tasks.scoring import normalize_answer

DATA = resources.files("kick_checks.data")


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in DATA.joinpath(name).read_text(encoding="utf-8").splitlines() if line.strip()]


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether the normalized phrase stands in the normalized text as whole words."""
    phrase = normalize_answer(phrase)
    return bool(phrase) and re.search(rf"(^| ){re.escape(phrase)}( |$)", normalize_answer(text)) is not None


def check_qa_rows(items: list[dict], minimum: int) -> None:
    assert len(items) >= minimum
    ids = [item["id"] for item in items]
    assert len(set(ids)) == len(ids)
    for item in items:
        answers = item["answers"]
        assert isinstance(answers, list) and answers
        assert all(isinstance(answer, str) and normalize_answer(answer) for answer in answers)
        # Crediting an answer that already stands in the prompt is the reference code's bug; our data avoids
        # questions that give their answer away.
        assert not any(contains_phrase(item["question"], answer) for answer in answers), item["id"]
    questions = Counter(normalize_answer(item["question"]) for item in items)
    assert questions.most_common(1)[0][1] == 1


def test_factoid_set():
    items = rows("factoid_qa.jsonl")
    check_qa_rows(items, 200)
    shots = {normalize_answer(shot.question) for shot in factoid_qa.SHOTS}
    assert not shots & {normalize_answer(item["question"]) for item in items}


def test_retrieval_set_passages_hold_their_answers():
    items = rows("retrieval_qa.jsonl")
    check_qa_rows(items, 150)
    for item in items:
        assert contains_phrase(item["passage"], item["answers"][0]), item["id"]
    shot_answers = {normalize_answer(shot.answer) for shot in retrieval_qa.SHOTS}
    assert not shot_answers & {normalize_answer(item["answers"][0]) for item in items}


def test_calibration_text_is_long_and_varied():
    text = DATA.joinpath("calibration.txt").read_text(encoding="utf-8")
    words = text.split()
    assert len(words) >= 15_000
    assert len(set(words)) / len(words) > 0.1
    assert text.isascii() or sum(not c.isascii() for c in text) < 100


def test_multiple_choice_sets():
    test, dev = rows("multiple_choice_test.jsonl"), rows("multiple_choice_dev.jsonl")
    assert len(test) >= 200
    for item in test + dev:
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4 and item["answer"] in "ABCD"
    subjects = Counter(item["subject"] for item in test)
    dev_subjects = Counter(item["subject"] for item in dev)
    assert len(subjects) >= 5 and all(dev_subjects[subject] >= 5 for subject in subjects)
    letters = Counter(item["answer"] for item in test)
    assert max(letters.values()) - min(letters.values()) <= len(test) * 0.05
    assert not {item["question"] for item in test} & {item["question"] for item in dev}


def test_summarization_set():
    items = rows("summarization.jsonl")
    assert len(items) >= 30
    for item in items:
        assert len(item["article"].split()) > 3 * len(item["summary"].split()) > 0


def test_conversations_are_multi_turn():
    items = rows("conversations.jsonl")
    assert len(items) >= 40
    assert len({item["question_id"] for item in items}) == len(items)
    for item in items:
        assert len(item["turns"]) >= 2 and all(turn.strip() for turn in item["turns"])
