"""How a supported task is evaluated under other prompts: its items, its prompts' text, and label-free scores.

Recovery changes only what comes before an item's question (the *prefix*: an instruction and demonstrations),
never how the item is asked or scored, so a recovered result is comparable item by item with the task's own.
Two forms cover the knowledge tasks:

- :class:`ShortAnswerForm` (factoid QA, closed-book retrieval QA): greedy generation after
  ``prefix + "Question: ...\\nAnswer:"``, scored by the task's own exact match;
- :class:`ChoiceForm` (multiple choice): the likelihood of each option's text after ``prefix + question``, scored
  as the task scores it (per-character log-likelihood, the best option is the answer).

Each form also gives the two label-free signals inference-time dynamic prompting chooses by
(:mod:`kick_checks.recovery.dynamic`): how well a prefix *fits* the question (log-likelihood of the question text
after it) and how *confident* the model is of its answer after it. Neither looks at the gold answer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from kick_checks.engine.batching import choose_batch_size
from kick_checks.engine.likelihood import Continuation, continuation_likelihoods, encode, next_token_top
from kick_checks.errors import KickError
from kick_checks.tasks import Task, TaskOptions, TaskResult
from kick_checks.tasks.data import load_rows
from kick_checks.tasks.multiple_choice import LETTERS, ChoiceItem, MultipleChoice, build_prefix, question_block
from kick_checks.tasks.protocol import ItemOutcome
from kick_checks.tasks.qa import INSTRUCTION, QAItem, ShortAnswerQA, qa_items


@dataclass(frozen=True)
class Prompt:
    """One candidate prefix: ``header`` (an instruction, ending in a blank line) then worked demonstrations,
    each ``(question, answer)``, in the tasks' own ``Question: ...\\nAnswer: ...`` layout."""

    name: str
    header: str
    demos: tuple[tuple[str, str], ...] = ()

    @property
    def text(self) -> str:
        return self.header + "".join(f"Question: {question}\nAnswer: {answer}\n\n" for question, answer in self.demos)


def demo_of(row: dict, form: str) -> tuple[str, str]:
    """A pool row as a demonstration: its question and its (first, or correct) answer."""
    if form == "choice":
        return str(row["question"]).strip(), str(row["choices"][LETTERS.index(str(row["answer"]).strip().upper())])
    return str(row["question"]).strip(), str(row["answers"][0])


class ShortAnswerForm:
    """Factoid and closed-book retrieval QA: the task's :class:`ShortAnswerQA` engine, other prefixes."""

    kind = "short_answer"

    def __init__(self, task: Task) -> None:
        self.task = task
        self.engine: ShortAnswerQA = task.engine

    def items(self, options: TaskOptions) -> tuple[list[QAItem], dict]:
        data = load_rows(self.task, options)
        return qa_items(data.rows), {**self.task.fingerprint_of(data), "data_source": data.source}

    @staticmethod
    def questions(items: list[QAItem]) -> list[str]:
        return [item.question for item in items]

    def own_prompt(self, item: QAItem) -> Prompt:
        """The prefix the task itself uses (its instruction and shots), the baseline every prompt is counted from."""
        return Prompt("task", INSTRUCTION + "\n\n", tuple((shot.question, shot.answer) for shot in self.engine.shots))

    @staticmethod
    def query(item: QAItem) -> str:
        return f"Question: {item.question}\nAnswer:"

    def evaluate(self, model, tokenizer, items: list[QAItem], prompts: list[Prompt], fingerprint: dict,
                 batch_size: int | str | None) -> TaskResult:
        """Generate every item in one run, labelled with its prompt, so the engine computes each prompt's prefix
        once and decodes the items of all prompts in one batch."""
        labels: dict[str, int] = {}
        groups = [labels.setdefault(prompt.text, len(labels)) for prompt in prompts]
        texts = [prompt.text + self.query(item) for item, prompt in zip(items, prompts)]
        return self.engine.evaluate_prompts(model, tokenizer, items, texts, fingerprint, batch_size, groups=groups)

    def fit(self, model, tokenizer, items: list[QAItem], prompt: Prompt) -> list[float]:
        """Log-likelihood of each item's question text after ``prompt``."""
        requests = [Continuation("", self.query(item)) for item in items]
        return [score.logprob for score in continuation_likelihoods(model, tokenizer, prompt.text, requests,
                                                                    batch_size=self.engine.decoding.batch_size)]

    def confidence(self, model, tokenizer, items: list[QAItem], prompt: Prompt) -> list[float]:
        """Probability of the most likely first answer token after ``prompt`` and each question."""
        top = next_token_top(model, tokenizer, prompt.text, [self.query(item) for item in items],
                             batch_size=self.engine.decoding.batch_size)
        return [probability for _, probability in top]


class ChoiceForm:
    """Multiple choice: the options' likelihood after another prefix, chosen as the task chooses."""

    kind = "choice"

    def __init__(self, task: MultipleChoice) -> None:
        self.task = task
        self._dev: dict[str, list[ChoiceItem]] = {}

    def items(self, options: TaskOptions) -> tuple[list[ChoiceItem], dict]:
        items, dev_shots, data_hash = self.task.load(options)
        self._dev = dev_shots
        source = str(options.data_path) if options.data_path else f"bundled:{self.task.bundled_file}"
        return items, {**self.task.fingerprint_of(data_hash), "data_source": source}

    @staticmethod
    def questions(items: list[ChoiceItem]) -> list[str]:
        return [item.question for item in items]

    def own_prompt(self, item: ChoiceItem) -> Prompt:
        shots = self._dev.get(item.subject, [])[: self.task.shots]
        header = build_prefix(item.subject, [])
        return Prompt("task", header, tuple((shot.question, shot.choices[shot.answer]) for shot in shots))

    @staticmethod
    def query(item: ChoiceItem) -> str:
        return question_block(item.question)

    def _likelihoods(self, model, tokenizer, items: list[ChoiceItem], prompts: list[Prompt],
                     batch_size: int | str | None) -> list[list[float]]:
        """Per item, each option's per-character log-likelihood, items grouped by their prefix."""
        groups: dict[str, list[int]] = {}
        for index, prompt in enumerate(prompts):
            groups.setdefault(prompt.text, []).append(index)
        scores: list[list[float]] = [[] for _ in items]
        for prefix, indices in groups.items():
            requests = [Continuation(self.query(items[i]), f" {choice}")
                        for i in indices for choice in items[i].choices]
            longest = max((request.context + request.continuation for request in requests), key=len)
            rows = choose_batch_size(batch_size, self.task.batch_size, model,
                                     len(encode(tokenizer, prefix + longest)) + 1, all_logits=True)
            likelihoods = continuation_likelihoods(model, tokenizer, prefix, requests, batch_size=rows)
            position = 0
            for i in indices:
                options = likelihoods[position : position + len(items[i].choices)]
                position += len(items[i].choices)
                scores[i] = [option.logprob / max(len(choice), 1) for option, choice in
                             zip(options, items[i].choices)]
        return scores

    def evaluate(self, model, tokenizer, items: list[ChoiceItem], prompts: list[Prompt], fingerprint: dict,
                 batch_size: int | str | None, scores: list[list[float]] | None = None) -> TaskResult:
        """The task's outcomes under ``prompts``; ``scores`` when the option likelihoods are already known."""
        started = time.perf_counter()
        scores = scores if scores is not None else self._likelihoods(model, tokenizer, items, prompts, batch_size)
        outcomes = []
        for item, option_scores in zip(items, scores):
            chosen = max(range(len(option_scores)), key=option_scores.__getitem__)
            outcomes.append(ItemOutcome(item.id, float(chosen == item.answer), f"{LETTERS[chosen]}: "
                                        f"{item.choices[chosen]}", item.subject, item.question,
                                        f"{LETTERS[item.answer]}: {item.choices[item.answer]}"))
        fingerprint = {**fingerprint, "decoding": {"scoring": "loglik/char"}}
        return TaskResult(self.task.key, self.task.metric, outcomes, fingerprint, time.perf_counter() - started)

    def fit(self, model, tokenizer, items: list[ChoiceItem], prompt: Prompt) -> list[float]:
        requests = [Continuation("", self.query(item)) for item in items]
        return [score.logprob for score in continuation_likelihoods(model, tokenizer, prompt.text, requests,
                                                                    batch_size=self.task.batch_size)]

    def option_scores(self, model, tokenizer, items: list[ChoiceItem], prompt: Prompt,
                      batch_size: int | str | None) -> list[list[float]]:
        return self._likelihoods(model, tokenizer, items, [prompt] * len(items), batch_size)

    @staticmethod
    def confidence_of(option_scores: list[float]) -> float:
        """The chosen option's share of the options' probability (softmax of the per-character scores)."""
        top = max(option_scores)
        weights = [math.exp(score - top) for score in option_scores]
        return 1.0 / sum(weights)


def form_of(task: Task) -> ShortAnswerForm | ChoiceForm:
    """The form of a task that supports recovery (see :func:`kick_checks.recovery.pools.recovery_task`)."""
    if isinstance(task, MultipleChoice):
        return ChoiceForm(task)
    if isinstance(getattr(task, "engine", None), ShortAnswerQA):
        return ShortAnswerForm(task)
    raise KickError(f"knowledge recovery knows how to re-prompt short-answer and multiple-choice tasks, not "
                    f"{task.key} ({type(task).__name__})")
