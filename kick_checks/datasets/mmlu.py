"""MMLU (LLM-KICK's multiple-choice reasoning QA): the CSV release and the Hugging Face layout.

Rows: ``{"id", "subject", "question", "choices": [4], "answer": "A".."D"}``. The test split is evaluated and the
dev split gives the few-shot examples of each subject.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from kick_checks.datasets.common import (
    KNOWN_SPLITS,
    DatasetReader,
    existing_path,
    field_of,
    is_saved_dataset,
    nonempty,
    read_table,
    read_text,
    table_files,
)
from kick_checks.errors import KickError

MMLU_FORMAT = (
    "the MMLU CSV release (dev/, val/, test/ holding <subject>_<split>.csv rows question,A,B,C,D,answer letter) "
    "or a Hugging Face MMLU dataset (columns question, subject, choices [4], answer 0-3)"
)
LETTERS = ("A", "B", "C", "D")


def load_mmlu(path: str | Path, split: str = "test") -> list[dict]:
    """MMLU as ``{"id", "subject", "question", "choices", "answer"}`` rows for one split.

    ``split`` is ``test`` for evaluation and ``dev`` for the five few-shot examples per subject (``val`` also
    works). Reads the CSV release (the folder with ``dev/ val/ test/``, one split's folder, or one CSV file) or
    the Hugging Face layout. Ids are ``<subject>-<split>-<n>``, numbered within the subject in file order, so
    both layouts give the same ids for the same questions.
    """
    source = existing_path(path, MMLU_FORMAT)
    rows = _load_mmlu_csv(source, split) if _is_mmlu_csv(source) else _load_mmlu_table(source, split)
    return nonempty(rows, source, MMLU_FORMAT)


def _is_mmlu_csv(path: Path) -> bool:
    if path.is_file():
        return path.suffix == ".csv"
    return not is_saved_dataset(path) and next(path.rglob("*.csv"), None) is not None


def _mmlu_subject(file: Path) -> str:
    """``abstract_algebra_test.csv`` -> ``abstract_algebra``: the release names each file for its subject."""
    subject, _, split = file.stem.rpartition("_")
    return subject if subject and split in KNOWN_SPLITS else file.stem


def _mmlu_row(subject: str, split: str, index: int, question: str, choices: list, answer: str) -> dict:
    return {
        "id": f"{subject}-{split}-{index}",
        "subject": subject,
        "question": question.strip(),
        "choices": [str(choice).strip() for choice in choices],
        "answer": answer,
    }


def _load_mmlu_csv(path: Path, split: str) -> list[dict]:
    folder = path / split if (path / split).is_dir() else path
    rows = []
    for file in table_files(folder, split, (".csv",), MMLU_FORMAT):
        subject = _mmlu_subject(file)
        # The release has no header and fields that hold newlines and commas: only a CSV reader gets rows right.
        for index, record in enumerate(csv.reader(io.StringIO(read_text(file, MMLU_FORMAT)))):
            where = f"{file} row {index + 1}"
            if len(record) != 6:
                raise KickError(f"{where} has {len(record)} columns, not 6: expected {MMLU_FORMAT}")
            answer = record[5].strip()
            if answer not in LETTERS:
                raise KickError(f"{where} has the answer {record[5]!r}, not A-D: expected {MMLU_FORMAT}")
            rows.append(_mmlu_row(subject, split, index, record[0], record[1:5], answer))
    return rows


def _load_mmlu_table(path: Path, split: str) -> list[dict]:
    rows = []
    counts: dict[str, int] = {}
    for number, record in enumerate(read_table(path, split, MMLU_FORMAT)):
        where = f"{path} row {number}"
        subject = str(field_of(record, "subject", where, MMLU_FORMAT))
        choices = field_of(record, "choices", where, MMLU_FORMAT)
        answer = field_of(record, "answer", where, MMLU_FORMAT)
        if not isinstance(choices, list) or len(choices) != 4:
            raise KickError(f"{where} does not have 4 choices: expected {MMLU_FORMAT}")
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < 4:
            raise KickError(f"{where} has the answer {answer!r}, not 0-3: expected {MMLU_FORMAT}")
        index = counts[subject] = counts.get(subject, -1) + 1
        question = str(field_of(record, "question", where, MMLU_FORMAT))
        rows.append(_mmlu_row(subject, split, index, question, choices, LETTERS[answer]))
    return rows


READER = DatasetReader("MMLU", MMLU_FORMAT, load_mmlu)
