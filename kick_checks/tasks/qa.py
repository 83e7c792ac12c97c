"""Short-answer QA by greedy generation and exact match: the engine under factoid and retrieval QA.

The prompt is a plain few-shot completion ("Question: ... / Answer: ..."), which keeps chat models to terse
answers that exact match can judge (a chat template makes small models answer in full sentences).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from kick_checks.engine.batching import choose_batch_size
from kick_checks.tasks.protocol import EXACT_MATCH, ItemOutcome, Metric, TaskOptions, TaskResult
from kick_checks.tasks.scoring import exact_match, first_answer_line

INSTRUCTION = "Answer each question with a short answer."


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    answers: tuple[str, ...]
    passage: str | None = None
    category: str = ""


def qa_items(rows: list[dict]) -> list[QAItem]:
    """Items of our factoid and retrieval schemas (``passage`` only in the second)."""
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


@dataclass(frozen=True)
class QAShot:
    question: str
    answer: str
    passage: str | None = None


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 16
    stop: tuple[str, ...] = ("\n",)
    batch_size: int = 32  # rows decoded together: on a CPU a decoding step costs about the same for 16 or 32
    engine: str = ""

    def to_dict(self) -> dict:
        return {"greedy": True, "max_new_tokens": self.max_new_tokens, "stop": list(self.stop),
                "batch_size": self.batch_size, "engine": self.engine}


def question_block(question: str, passage: str | None = None, answer: str | None = None) -> str:
    """One question as the prompt shows it: with its passage (open book), and with its answer (a shot)."""
    text = f"Passage: {passage}\nQuestion: {question}\n" if passage is not None else f"Question: {question}\n"
    return text + ("Answer:" if answer is None else f"Answer: {answer}\n\n")


def few_shot_prefix(shots: tuple[QAShot, ...], with_passage: bool, instruction: str = INSTRUCTION) -> str:
    """The instruction and the worked shots: the part every item's prompt shares."""
    parts = [instruction + "\n\n"]
    for shot in shots:
        parts.append(question_block(shot.question, shot.passage if with_passage else None, shot.answer))
    return "".join(parts)


def build_prompt(item: QAItem, shots: tuple[QAShot, ...], with_passage: bool, instruction: str = INSTRUCTION) -> str:
    """Instruction, the worked shots, then the item's question (with its passage for open book)."""
    return few_shot_prefix(shots, with_passage, instruction) + question_block(
        item.question, item.passage if with_passage else None)


@dataclass
class ShortAnswerQA:
    """A generation QA task: prompt each item, take the first answer line, score exact match."""

    key: str
    with_passage: bool
    shots: tuple[QAShot, ...]
    prompt_version: str
    decoding: Decoding = field(default_factory=Decoding)
    metric: Metric = EXACT_MATCH

    def evaluate(self, model, tokenizer, items: list[QAItem], fingerprint: dict,
                 batch_size: int | str | None = None, backend=None) -> TaskResult:
        """``fingerprint`` gets the decoding settings, with the batch size actually used; ``backend`` computes
        the answers (:mod:`kick_checks.engine.backend`; None: transformers)."""
        prompts = [build_prompt(item, self.shots, self.with_passage) for item in items]
        return self.evaluate_prompts(model, tokenizer, items, prompts, fingerprint, batch_size, backend)

    def evaluate_prompts(self, model, tokenizer, items: list[QAItem], prompts: list[str], fingerprint: dict,
                         batch_size: int | str | None = None, backend=None,
                         groups: list[int] | None = None) -> TaskResult:
        """Score ``items`` answered after ``prompts`` (one per item): the task's own prompts, or the ones a
        knowledge-recovery strategy chose (:mod:`kick_checks.recovery`), labelled by ``groups`` with the
        template each starts with."""
        backend = backend or TaskOptions().evaluation_backend()
        started = time.perf_counter()
        longest = max(prompts, key=len, default="")
        tokens = len(tokenizer(longest).input_ids) + self.decoding.max_new_tokens
        decoding = replace(self.decoding, engine=backend.generation_engine(model),
                           batch_size=choose_batch_size(batch_size, self.decoding.batch_size, model, tokens))
        fingerprint = {**fingerprint, "decoding": decoding.to_dict()}
        generated = backend.generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=decoding.max_new_tokens,
            stop=decoding.stop,
            batch_size=decoding.batch_size,
            groups=groups,
        )
        outcomes = []
        for item, text in zip(items, generated):
            prediction = first_answer_line(text)
            score = float(exact_match(prediction, list(item.answers)))
            outcomes.append(ItemOutcome(item.id, score, prediction, item.category, item.question, item.answers[0]))
        return TaskResult(self.key, self.metric, outcomes, fingerprint, time.perf_counter() - started)
