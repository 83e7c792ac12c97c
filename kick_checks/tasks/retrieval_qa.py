"""In-context retrieval QA (LLM-KICK's TriviaQA-rc task), closed book and open book.

Closed book asks the question alone; open book puts the evidence passage in the prompt. The gap between
the two shows how much a compressed model can still retrieve from its context when its stored knowledge is
gone. Bundled data: ``retrieval_qa.jsonl`` rows ``{"id", "passage", "question", "answers"}``, written for
this project.
"""

from __future__ import annotations

from kick_checks.datasets import triviaqa
from kick_checks.datasets.common import kick_jsonl_reader
from kick_checks.tasks.data import TaskData, load_rows
from kick_checks.tasks.protocol import EXACT_MATCH, Task, TaskOptions, TaskResult
from kick_checks.tasks.qa import Decoding, QAShot, ShortAnswerQA, qa_items

PROMPT_VERSION = "retrieval-fewshot-1"
SHOTS = (
    QAShot(
        "Which river runs through the city of Budapest?",
        "Danube",
        "Budapest, the capital of Hungary, grew from the towns of Buda and Pest, which face each other across "
        "the Danube. Its parliament building stands on the east bank of the river.",
    ),
    QAShot(
        "What metal is the Statue of Liberty's outer skin made of?",
        "copper",
        "The Statue of Liberty was a gift from France, dedicated in 1886. Its outer skin is made of thin copper "
        "sheets, which turned green as they weathered over the following decades.",
    ),
)
FIELDS = ("id", "passage", "question", "answers")


class RetrievalQA(Task):
    name = "retrieval_qa"
    variants = ("closed_book", "open_book")
    required_fields = FIELDS
    bundled_file = "retrieval_qa.jsonl"
    readers = (kick_jsonl_reader("retrieval_qa", FIELDS), triviaqa.READER)
    metric = EXACT_MATCH

    def __init__(self, variant: str | None = None) -> None:
        super().__init__(variant)
        self.engine = ShortAnswerQA(
            self.key,
            with_passage=variant == "open_book",
            shots=SHOTS,
            prompt_version=PROMPT_VERSION,
            decoding=Decoding(max_new_tokens=24),
        )

    @property
    def tags(self) -> tuple[str, ...]:
        """Closed book asks what the model knows; open book what it can read from its context."""
        return ("knowledge",) if self.variant == "closed_book" else ("in-context",)

    @property
    def recovery_pool(self) -> str:
        """Closed book shares the short-answer pool of factoid QA; open book has its answer in the passage."""
        return "recovery_qa_pool.jsonl" if self.variant == "closed_book" else ""

    def run(self, model, tokenizer, options: TaskOptions) -> TaskResult:
        data = load_rows(self, options)
        fingerprint = {**self.fingerprint_of(data), "data_source": data.source}
        return self.engine.evaluate(model, tokenizer, qa_items(data.rows), fingerprint, options.batch_size,
                                    options.evaluation_backend())

    def fingerprint_of(self, data: TaskData) -> dict:
        return {"task_data": data.sha256, "prompt_version": f"{PROMPT_VERSION}/{self.variant}"}

    def expected_fingerprint(self, options: TaskOptions) -> dict:
        return self.fingerprint_of(load_rows(self, options))
