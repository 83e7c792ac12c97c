"""Factoid QA (LLM-KICK's FreebaseQA task): closed-book questions, exact match against answer aliases.

Bundled data: ``factoid_qa.jsonl``, written for this project about facts a small model can know, so that
compression has knowledge to lose. Rows: ``{"id", "question", "answers": [canonical, aliases...]}``.
"""

from __future__ import annotations

from kick_checks.tasks.base import TaskOptions, TaskResult, load_rows
from kick_checks.tasks.qa import QAItem, QAShot, ShortAnswerQA

PROMPT_VERSION = "factoid-fewshot-1"
SHOTS = (
    QAShot("What is the capital of Italy?", "Rome"),
    QAShot("Which planet is closest to the Sun?", "Mercury"),
    QAShot("Who wrote the play Romeo and Juliet?", "William Shakespeare"),
)


def qa_items(rows: list[dict]) -> list[QAItem]:
    return [
        QAItem(
            id=str(row["id"]),
            question=row["question"],
            answers=tuple(row["answers"]),
            passage=row.get("passage"),
            category=row.get("category") or row.get("topic") or "",
        )
        for row in rows
    ]


class FactoidQA:
    key = "factoid_qa"
    data_name = "factoid_qa"
    bundled_file = "factoid_qa.jsonl"
    metric = "exact_match"

    def __init__(self) -> None:
        self.engine = ShortAnswerQA(self.key, with_passage=False, shots=SHOTS, prompt_version=PROMPT_VERSION)

    def run(self, model, tokenizer, options: TaskOptions) -> TaskResult:
        data = load_rows(self.data_name, options, self.bundled_file, ("id", "question", "answers"))
        fingerprint = {
            "task_data": data.sha256,
            "data_source": data.source,
            "prompt_version": PROMPT_VERSION,
        }
        return self.engine.evaluate(model, tokenizer, qa_items(data.rows), fingerprint, options.batch_size)
