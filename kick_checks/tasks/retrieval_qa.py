"""In-context retrieval QA (LLM-KICK's TriviaQA-rc task), closed book and open book.

Closed book asks the question alone; open book puts the evidence passage in the prompt. The gap between
the two shows how much a compressed model can still retrieve from its context when its stored knowledge is
gone. Bundled data: ``retrieval_qa.jsonl`` rows ``{"id", "passage", "question", "answers"}``, written for
this project.
"""

from __future__ import annotations

from kick_checks.tasks.base import TaskOptions, TaskResult, load_rows
from kick_checks.tasks.factoid_qa import qa_items
from kick_checks.tasks.qa import Decoding, QAShot, ShortAnswerQA

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
VARIANTS = ("closed_book", "open_book")


class RetrievalQA:
    data_name = "retrieval_qa"
    bundled_file = "retrieval_qa.jsonl"
    metric = "exact_match"

    def __init__(self, variant: str) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"retrieval_qa variant must be one of {VARIANTS}")
        self.variant = variant
        self.key = f"retrieval_qa.{variant}"
        self.engine = ShortAnswerQA(
            self.key,
            with_passage=variant == "open_book",
            shots=SHOTS,
            prompt_version=PROMPT_VERSION,
            decoding=Decoding(max_new_tokens=24),
        )

    def run(self, model, tokenizer, options: TaskOptions) -> TaskResult:
        data = load_rows(self.data_name, options, self.bundled_file, ("id", "passage", "question", "answers"))
        fingerprint = {
            "task_data": data.sha256,
            "data_source": data.source,
            "prompt_version": f"{PROMPT_VERSION}/{self.variant}",
        }
        return self.engine.evaluate(model, tokenizer, qa_items(data.rows), fingerprint, options.batch_size)
