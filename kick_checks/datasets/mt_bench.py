"""MT-bench and Vicuna-bench (LLM-KICK's instruction following): ``question.jsonl`` with FastChat's references.

Rows: ``{"question_id", "category", "turns", "reference"?}``. Our bundled conversations use MT-bench's own schema.
"""

from __future__ import annotations

from pathlib import Path

from kick_checks.datasets.common import (
    DatasetReader,
    existing_path,
    field_of,
    first_json_row,
    nonempty,
    read_json_lines,
)
from kick_checks.errors import KickError

MT_BENCH_FORMAT = 'MT-bench question.jsonl rows {"question_id", "category", "turns": [...]}'
MT_BENCH_REFERENCE_FORMAT = 'FastChat reference answers {"question_id", "choices": [{"index": 0, "turns": [...]}]}'
VICUNA_BENCH_FORMAT = 'Vicuna-bench question.jsonl rows {"question_id", "text", "category"}'
# Where FastChat keeps MT-bench's GPT-4 reference answers, next to question.jsonl (the second is a flat copy).
MT_BENCH_REFERENCE_FILES = ("reference_answer/gpt-4.jsonl", "reference_answer_gpt-4.jsonl")


def load_mt_bench(path: str | Path, reference_path: str | Path | None = None) -> list[dict]:
    """MT-bench ``question.jsonl`` as ``{"question_id", "category", "turns", "reference"?}`` rows.

    ``reference_path`` is FastChat's ``reference_answer/gpt-4.jsonl``; its answers replace a question's inline
    ``reference``, because they are the references MT-bench's judge prompts are written for.
    """
    file = existing_path(path, MT_BENCH_FORMAT)
    rows = []
    for number, record in enumerate(read_json_lines(file, MT_BENCH_FORMAT)):
        where = f"{file} row {number}"
        row = {
            "question_id": field_of(record, "question_id", where, MT_BENCH_FORMAT),
            "category": str(field_of(record, "category", where, MT_BENCH_FORMAT)),
            "turns": _turns(field_of(record, "turns", where, MT_BENCH_FORMAT), where, MT_BENCH_FORMAT),
        }
        if "reference" in record:
            row["reference"] = _turns(record["reference"], where, MT_BENCH_FORMAT)
        rows.append(row)
    nonempty(rows, file, MT_BENCH_FORMAT)
    if reference_path is not None:
        _merge_references(rows, existing_path(reference_path, MT_BENCH_REFERENCE_FORMAT))
    return rows


def _turns(value: object, where: str, expected: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(turn, str) for turn in value):
        raise KickError(f"{where}: turns must be a non-empty list of strings: expected {expected}")
    return list(value)


def _merge_references(rows: list[dict], file: Path) -> None:
    by_id = {row["question_id"]: row for row in rows}
    for number, record in enumerate(read_json_lines(file, MT_BENCH_REFERENCE_FORMAT)):
        where = f"{file} row {number}"
        question_id = field_of(record, "question_id", where, MT_BENCH_REFERENCE_FORMAT)
        choices = field_of(record, "choices", where, MT_BENCH_REFERENCE_FORMAT)
        if not isinstance(choices, list) or not choices:
            raise KickError(f"{where} has no choices: expected {MT_BENCH_REFERENCE_FORMAT}")
        if question_id not in by_id:
            raise KickError(f"{where} answers question {question_id}, which the questions lack: pair matching files")
        turns = field_of(choices[0], "turns", where, MT_BENCH_REFERENCE_FORMAT)
        by_id[question_id]["reference"] = _turns(turns, where, MT_BENCH_REFERENCE_FORMAT)


def load_vicuna_bench(path: str | Path) -> list[dict]:
    """Vicuna-bench ``question.jsonl`` as one-turn conversations ``{"question_id", "category", "turns": [text]}``."""
    file = existing_path(path, VICUNA_BENCH_FORMAT)
    rows = []
    for number, record in enumerate(read_json_lines(file, VICUNA_BENCH_FORMAT)):
        where = f"{file} row {number}"
        text = field_of(record, "text", where, VICUNA_BENCH_FORMAT)
        rows.append(
            {
                "question_id": field_of(record, "question_id", where, VICUNA_BENCH_FORMAT),
                "category": str(field_of(record, "category", where, VICUNA_BENCH_FORMAT)),
                "turns": _turns([text], where, VICUNA_BENCH_FORMAT),
            }
        )
    return nonempty(rows, file, VICUNA_BENCH_FORMAT)


def load_conversations(source: Path) -> list[dict]:
    """MT-bench or Vicuna-bench, told apart by their rows; a folder is read through its ``question.jsonl``."""
    question_file = source / "question.jsonl" if source.is_dir() else source
    if not question_file.is_file():
        raise KickError(f"{source} has no question.jsonl: expected {MT_BENCH_FORMAT} or {VICUNA_BENCH_FORMAT}")
    first = first_json_row(question_file) or {}
    if "text" in first and "turns" not in first:
        return load_vicuna_bench(question_file)
    references = [question_file.parent / name for name in MT_BENCH_REFERENCE_FILES]
    return load_mt_bench(question_file, next((file for file in references if file.is_file()), None))


READER = DatasetReader("MT-bench / Vicuna-bench", f"{MT_BENCH_FORMAT} or {VICUNA_BENCH_FORMAT}", load_conversations)
