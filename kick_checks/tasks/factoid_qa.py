"""Factoid QA (LLM-KICK's FreebaseQA task): closed-book questions, exact match against answer aliases.

Bundled data: ``factoid_qa.jsonl``, written for this project about facts a small model can know, so that
compression has knowledge to lose. Rows: ``{"id", "question", "answers": [canonical, aliases...]}``.
"""

from __future__ import annotations

from kick_checks.datasets import freebaseqa
from kick_checks.datasets.common import kick_jsonl_reader
from kick_checks.tasks.data import TaskData, load_rows
from kick_checks.tasks.protocol import EXACT_MATCH, Task, TaskOptions, TaskResult
from kick_checks.tasks.qa import QAShot, ShortAnswerQA, qa_items

PROMPT_VERSION = "factoid-fewshot-1"
SHOTS = (
    QAShot("What is the capital of Italy?", "Rome"),
    QAShot("Which planet is closest to the Sun?", "Mercury"),
    QAShot("Who wrote the play Romeo and Juliet?", "William Shakespeare"),
)
FIELDS = ("id", "question", "answers")


class FactoidQA(Task):
    name = "factoid_qa"
    required_fields = FIELDS
    bundled_file = "factoid_qa.jsonl"
    readers = (kick_jsonl_reader("factoid_qa", FIELDS), freebaseqa.READER)
    metric = EXACT_MATCH
    tags = ("knowledge",)
    recovery_pool = "recovery_qa_pool.jsonl"

    def __init__(self, variant: str | None = None) -> None:
        super().__init__(variant)
        self.engine = ShortAnswerQA(self.key, with_passage=False, shots=SHOTS, prompt_version=PROMPT_VERSION)

    def run(self, model, tokenizer, options: TaskOptions) -> TaskResult:
        data = load_rows(self, options)
        fingerprint = {**self.fingerprint_of(data), "data_source": data.source}
        return self.engine.evaluate(model, tokenizer, qa_items(data.rows), fingerprint, options.batch_size,
                                    options.evaluation_backend())

    def fingerprint_of(self, data: TaskData) -> dict:
        return {"task_data": data.sha256, "prompt_version": PROMPT_VERSION}

    def expected_fingerprint(self, options: TaskOptions) -> dict:
        return self.fingerprint_of(load_rows(self, options))
