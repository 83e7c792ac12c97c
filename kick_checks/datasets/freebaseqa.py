"""FreebaseQA (LLM-KICK's factoid QA): the v1.0 JSON release and the v1.1 pre-release ``.txt`` and ``.tab`` files.

Rows: ``{"id", "question", "answers"}``, the question as asked and every accepted answer name.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kick_checks.datasets.common import (
    DatasetReader,
    existing_path,
    field_of,
    nonempty,
    read_json_document,
    read_text,
    unique_strings,
)
from kick_checks.errors import KickError

log = logging.getLogger(__name__)

FREEBASEQA_FORMAT = (
    'the FreebaseQA v1.0 JSON ({"Questions": [{"Question-ID", "RawQuestion", "Parses": [{"Answers": '
    '[{"AnswersName": [...]}]}]}]}), the v1.1 .txt with "question | answer" lines, or the v1.1 .tab with eight '
    "tab-separated fields ending in answer and question"
)


def load_freebaseqa(path: str | Path) -> list[dict]:
    """FreebaseQA as ``{"id", "question", "answers"}`` rows: the v1.0 JSON, or the v1.1 ``.txt`` or ``.tab``.

    The question is the raw question (as asked, with its capitals and punctuation); the answers are every
    parse's answer names, because FreebaseQA accepts any of them.
    """
    file = existing_path(path, FREEBASEQA_FORMAT)
    if file.suffix == ".txt":
        return _load_freebaseqa_txt(file)
    if file.suffix == ".tab":
        return _load_freebaseqa_tab(file)
    document = read_json_document(file, FREEBASEQA_FORMAT)
    questions = field_of(document, "Questions", str(file), FREEBASEQA_FORMAT)
    if not isinstance(questions, list):
        raise KickError(f"{file}: 'Questions' is not a list: expected {FREEBASEQA_FORMAT}")
    rows = []
    for number, question in enumerate(questions):
        where = f"{file} question {number}"
        names = (
            name
            for parse in field_of(question, "Parses", where, FREEBASEQA_FORMAT)
            for answer in field_of(parse, "Answers", where, FREEBASEQA_FORMAT)
            for name in field_of(answer, "AnswersName", where, FREEBASEQA_FORMAT)
        )
        rows.append(
            {
                "id": str(field_of(question, "Question-ID", where, FREEBASEQA_FORMAT)),
                "question": str(field_of(question, "RawQuestion", where, FREEBASEQA_FORMAT)).strip(),
                "answers": unique_strings(names),
            }
        )
    dropped = sum(not row["answers"] for row in rows)
    if dropped:
        log.warning("%s: dropped %d questions that have no answer names", file, dropped)
    return nonempty([row for row in rows if row["answers"]], file, FREEBASEQA_FORMAT)


def _load_freebaseqa_txt(file: Path) -> list[dict]:
    """The v1.1 pre-release lists one ``question | answer`` pair a line; a question with several accepted
    answers takes several lines. It has no ids, so rows are numbered ``<file stem>-<n>`` in order of appearance."""
    answers_by_question: dict[str, list[str]] = {}
    for number, line in enumerate(read_text(file, FREEBASEQA_FORMAT).split("\n"), start=1):
        if not line.strip():
            continue
        raw_question, bar, answer = line.rpartition("|")
        question = unquote_spreadsheet(raw_question.strip())
        if not bar or not question or not answer.strip():
            raise KickError(f"{file} line {number} is not 'question | answer': expected {FREEBASEQA_FORMAT}")
        answers_by_question.setdefault(question, []).append(answer)
    rows = [
        {"id": f"{file.stem}-{index}", "question": question, "answers": unique_strings(answers)}
        for index, (question, answers) in enumerate(answers_by_question.items())
    ]
    return nonempty(rows, file, FREEBASEQA_FORMAT)


def unquote_spreadsheet(field: str) -> str:
    """A field as a spreadsheet saved it, back to its text: ``"Who starred in ""Hud""?"`` is ``Who starred in "Hud"?``.

    The pre-release files passed through a spreadsheet, which wrapped every question holding a double quote in
    quotes and doubled the quotes inside (CSV quoting); the published JSON has the plain text, and a model asked the
    quoted form sees a question nobody wrote. A field counts as quoted when it is wholly wrapped and holds a doubled
    quote, so a question that starts and ends with quoted titles (``"Tosca" or "Aida"``) stays as it is, and the one
    dev line whose closing pair lost a quote (``""A Dance to the Music of Time"?"``) is still unquoted.
    """
    if len(field) < 2 or not (field.startswith('"') and field.endswith('"')) or '""' not in field[1:-1]:
        return field
    return field[1:-1].replace('""', '"').strip()


#: The pre-release ``.tab`` file's fields, one Freebase match a line.
TAB_FIELDS = ("mention", "freebase_name", "subject_mid", "predicate", "secondary_predicate", "answer_mid", "answer",
              "question")


def _load_freebaseqa_tab(file: Path) -> list[dict]:
    """The v1.1 pre-release ``.tab`` holds one Freebase match a line in eight tab-separated fields (subject mention,
    Freebase name, subject MID, predicate, secondary predicate, answer MID, answer, question); a question with
    several matches or accepted answers takes several lines. Rows are numbered like the ``.txt`` file's."""
    answers_by_question: dict[str, list[str]] = {}
    for number, line in enumerate(read_text(file, FREEBASEQA_FORMAT).split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(TAB_FIELDS):
            raise KickError(f"{file} line {number} has {len(fields)} tab-separated fields, not {len(TAB_FIELDS)}: "
                            f"expected {FREEBASEQA_FORMAT}")
        record = dict(zip(TAB_FIELDS, fields))
        question = unquote_spreadsheet(record["question"].strip())
        if not question or not record["answer"].strip():
            raise KickError(f"{file} line {number} has an empty question or answer: expected {FREEBASEQA_FORMAT}")
        answers_by_question.setdefault(question, []).append(record["answer"])
    rows = [
        {"id": f"{file.stem}-{index}", "question": question, "answers": unique_strings(answers)}
        for index, (question, answers) in enumerate(answers_by_question.items())
    ]
    return nonempty(rows, file, FREEBASEQA_FORMAT)


READER = DatasetReader("FreebaseQA", FREEBASEQA_FORMAT, load_freebaseqa)
