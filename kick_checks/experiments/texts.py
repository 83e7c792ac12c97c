"""What an item asked and what the right answer was, for reports that did not store it.

Reports written before items carried ``question`` and ``gold`` (the committed sweep, for one) still name their
data: ``data_source`` ``bundled:FILE`` and its sha256. When the bundled file of this installation has the same
hash, its rows are the items the run answered, so the texts can be filled in by item id. Any other data source
(a user's file, a changed bundled file) fills nothing: a text is never guessed.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources

from kick_checks.datasets.common import parse_json_lines

LETTERS = "ABCDEFGHIJ"
#: How much of a long input (an article to summarize) is kept as the item's "question".
QUESTION_CHARACTERS = 300


def _texts_of(row: dict) -> tuple[str, str]:
    question = row.get("question") or row.get("article") or ""
    if isinstance(question, list):  # conversation turns
        question = question[0] if question else ""
    gold = ""
    if row.get("answers"):
        gold = str(row["answers"][0])
    elif "choices" in row and str(row.get("answer", "")) in LETTERS:
        index = LETTERS.index(str(row["answer"]))
        gold = f"{row['answer']}: {row['choices'][index]}" if index < len(row["choices"]) else str(row["answer"])
    elif "summary" in row:
        gold = str(row["summary"])
    question = str(question)
    if len(question) > QUESTION_CHARACTERS:
        question = question[:QUESTION_CHARACTERS].rstrip() + " ..."
    return question, gold


@lru_cache(maxsize=32)
def bundled_texts(file_name: str, sha256: str) -> dict[str, tuple[str, str]]:
    """``{item id: (question, gold)}`` of a bundled JSONL file, when its hash is ``sha256``; else empty."""
    try:
        raw = resources.files("kick_checks.data").joinpath(file_name).read_bytes()
    except (FileNotFoundError, OSError):
        return {}
    if hashlib.sha256(raw).hexdigest() != sha256:
        return {}
    try:
        rows = parse_json_lines(raw.decode("utf-8"), file_name, "rows")
    except Exception:  # a bundled file that does not parse is a packaging bug, not something to show here
        return {}
    return {str(row["id"]): _texts_of(row) for row in rows if isinstance(row, dict) and "id" in row}


def texts_for(fingerprint: dict) -> dict[str, tuple[str, str]]:
    """The texts of the items a task result with ``fingerprint`` answered, where they can be known."""
    source = str(fingerprint.get("data_source", ""))
    sha256 = fingerprint.get("task_data")
    if not source.startswith("bundled:") or not sha256:
        return {}
    return bundled_texts(source.removeprefix("bundled:"), str(sha256))
