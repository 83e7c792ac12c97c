"""TriviaQA rc (LLM-KICK's in-context retrieval QA): the Hugging Face layout and the official JSON with evidence.

Rows: ``{"id", "passage", "question", "answers"}``: the passage is the evidence window around an answer.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from kick_checks.datasets.common import (
    DatasetReader,
    existing_path,
    field_of,
    first_json_row,
    nonempty,
    read_json_document,
    read_table,
    read_text,
    unique_strings,
)
from kick_checks.errors import KickError

log = logging.getLogger(__name__)

TRIVIAQA_FORMAT = (
    "a Hugging Face trivia_qa rc dataset (columns question, question_id, answer {value, aliases}, "
    'entity_pages {wiki_context}, search_results {search_context}) or the official TriviaQA JSON ({"Data": [...]})'
)


def load_triviaqa(
    path: str | Path,
    split: str = "validation",
    max_passage_words: int = 300,
    evidence_dir: str | Path | None = None,
) -> list[dict]:
    """TriviaQA rc as ``{"id", "passage", "question", "answers"}`` rows.

    Answers are the answer's value and its aliases. The passage is the first evidence document (Wikipedia pages
    first, then web results) in which an answer stands as a whole word, case-insensitively, cut to
    ``max_passage_words`` words around that first occurrence with whitespace collapsed: whole TriviaQA documents
    run to thousands of words, far past a small model's context. Questions whose evidence holds no answer
    cannot be answered from the passage, so they are dropped and the count is logged.

    Reads the Hugging Face ``trivia_qa`` layout (config ``rc`` or ``rc.wikipedia``; the default split is
    ``validation`` because the test split has no answers) or the official JSON, whose evidence lives in separate
    files under ``evidence_dir`` (the folder holding ``wikipedia/`` and ``web/``).
    """
    if max_passage_words < 1:
        raise KickError(f"max_passage_words is {max_passage_words}: give a positive number of words")
    source = existing_path(path, TRIVIAQA_FORMAT)
    first = first_json_row(source) if source.is_file() and source.suffix == ".json" else {}
    if first is None or "Data" in first:
        items = _triviaqa_official_items(source, evidence_dir)
    else:
        items = _triviaqa_table_items(source, split)
    rows, dropped = [], 0
    for question_id, question, answers, documents in items:
        row = _triviaqa_row(question_id, question, answers, documents, max_passage_words)
        if row is None:
            dropped += 1
        else:
            rows.append(row)
    if dropped:
        total = dropped + len(rows)
        log.warning("%s: dropped %d of %d questions whose evidence holds no answer", source, dropped, total)
    if not rows and dropped:
        hint = (
            "pass evidence_dir, the folder holding wikipedia/ and web/"
            if evidence_dir is None and source.suffix == ".json"
            else "use the rc or rc.wikipedia config, which carry evidence text"
        )
        raise KickError(f"{source}: none of its {dropped} questions has evidence text holding an answer: {hint}")
    return nonempty(rows, source, TRIVIAQA_FORMAT)


TriviaItem = tuple[str, str, list[str], Iterable[str]]


def _triviaqa_table_items(path: Path, split: str) -> Iterator[TriviaItem]:
    for number, record in enumerate(read_table(path, split, TRIVIAQA_FORMAT)):
        where = f"{path} row {number}"
        answer = field_of(record, "answer", where, TRIVIAQA_FORMAT)
        answers = _triviaqa_answers(answer, "value", "aliases", where)
        if "entity_pages" not in record and "search_results" not in record:
            raise KickError(f"{where} has neither entity_pages nor search_results: expected {TRIVIAQA_FORMAT}")
        pages, results = record.get("entity_pages") or {}, record.get("search_results") or {}
        documents = [*(pages.get("wiki_context") or []), *(results.get("search_context") or [])]
        question_id = str(field_of(record, "question_id", where, TRIVIAQA_FORMAT))
        yield question_id, str(field_of(record, "question", where, TRIVIAQA_FORMAT)), answers, documents


def _triviaqa_answers(answer: object, value_key: str, aliases_key: str, where: str) -> list[str]:
    """The answer's value first (the canonical answer), then its aliases."""
    value = field_of(answer, value_key, where, TRIVIAQA_FORMAT)
    return unique_strings([value, *(answer.get(aliases_key) or [])])


def _triviaqa_official_items(file: Path, evidence_dir: str | Path | None) -> Iterator[TriviaItem]:
    document = read_json_document(file, TRIVIAQA_FORMAT)
    data = field_of(document, "Data", str(file), TRIVIAQA_FORMAT)
    evidence = None if evidence_dir is None else existing_path(evidence_dir, "the TriviaQA evidence folder")
    if evidence is None:
        log.warning("%s: the official TriviaQA JSON keeps its evidence in separate files; no evidence_dir given", file)
    for number, item in enumerate(data):
        where = f"{file} item {number}"
        answer = field_of(item, "Answer", where, TRIVIAQA_FORMAT)
        answers = _triviaqa_answers(answer, "Value", "Aliases", where)
        pages = [("wikipedia", page) for page in item.get("EntityPages") or []]
        results = [("web", result) for result in item.get("SearchResults") or []]
        documents = () if evidence is None else _evidence_texts(evidence, [*pages, *results], where)
        question_id = str(field_of(item, "QuestionId", where, TRIVIAQA_FORMAT))
        yield question_id, str(field_of(item, "Question", where, TRIVIAQA_FORMAT)), answers, documents


def _evidence_texts(evidence: Path, entries: list[tuple[str, dict]], where: str) -> Iterator[str]:
    """Evidence documents read lazily, so a question stops reading files at its first document with an answer."""
    for kind, entry in entries:
        file = evidence / kind / str(field_of(entry, "Filename", where, TRIVIAQA_FORMAT))
        if file.is_file():
            yield read_text(file, "UTF-8 evidence text")


def _triviaqa_row(
    question_id: str, question: str, answers: list[str], documents: Iterable[str], max_words: int
) -> dict | None:
    if not answers:
        return None
    longest_first = sorted(answers, key=len, reverse=True)
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(answer)}(?!\w)" for answer in longest_first), re.IGNORECASE)
    for document in documents:
        match = pattern.search(document)
        if match:
            passage = _window(document, match.start(), match.end(), max_words)
            return {"id": question_id, "passage": passage, "question": question.strip(), "answers": answers}
    return None


def _window(text: str, start: int, end: int, max_words: int) -> str:
    """At most ``max_words`` words of ``text`` around the characters ``start:end``, centred on them where the
    text allows, always including them when they are shorter than the window."""
    words = list(re.finditer(r"\S+", text))
    starts = [word.start() for word in words]
    first = bisect.bisect_right(starts, start) - 1
    last = bisect.bisect_right(starts, end - 1) - 1
    before = max(0, (max_words - (last - first + 1)) // 2)
    begin = max(0, min(first - before, len(words) - max_words))
    return " ".join(word.group() for word in words[begin : begin + max_words])


def evidence_dir_near(source: Path) -> Path | None:
    """TriviaQA's download puts ``qa/wikipedia-dev.json`` beside ``evidence/``."""
    for folder in (source.parent, source.parent.parent):
        if (folder / "evidence").is_dir():
            return folder / "evidence"
    return None


READER = DatasetReader("TriviaQA rc", TRIVIAQA_FORMAT,
                       lambda path: load_triviaqa(path, evidence_dir=evidence_dir_near(path)))
