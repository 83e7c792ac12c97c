"""Multiple-choice reasoning QA (LLM-KICK's MMLU task), scored by the likelihood of each option's text.

The reference code reads the answer letter from the last character of one generated token; small models answer
"A" whatever the question, so letter scoring sits at chance. We ask instead which option's *text* the model
finds most likely after ``Question: ...\\nAnswer:``, normalised by the option's length in characters so long
options are not penalised for having more tokens (lm-evaluation-harness calls this ``acc_norm``). The k shots
(default 5) come from the dev split of the same subject and form a prefix shared by all of that subject's
questions, whose key-value cache is computed once. Shots are dropped, last first, while the longest prompt would
not fit the model's context.

Bundled data: ``multiple_choice_test.jsonl`` and ``multiple_choice_dev.jsonl``, rows
``{"id", "subject", "question", "choices": [4], "answer": "A".."D"}``, written for this project.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from compressors.progress import progress
from kick_checks.datasets import mmlu
from kick_checks.datasets.common import kick_jsonl_reader, resolve_data_source
from kick_checks.engine.batching import choose_batch_size
from kick_checks.engine.likelihood import Continuation, encode
from kick_checks.errors import KickError, KickWarning
from kick_checks.tasks.data import load_rows, read_bundled_jsonl
from kick_checks.tasks.protocol import ACCURACY, ItemOutcome, Task, TaskOptions, TaskResult

PROMPT_VERSION = "mc-cloze-1"
LETTERS = "ABCD"
REQUIRED = ("id", "subject", "question", "choices", "answer")


def _four_choices(row: dict, where: str) -> None:
    if len(row["choices"]) != 4 or row["answer"] not in LETTERS:
        raise KickError(f"{where} needs 4 choices and an answer letter A-D: expected our multiple_choice JSON lines")


@dataclass(frozen=True)
class ChoiceItem:
    id: str
    subject: str
    question: str
    choices: tuple[str, ...]
    answer: int

    @classmethod
    def from_row(cls, row: dict, source: str) -> ChoiceItem:
        choices, answer = row["choices"], str(row["answer"]).strip().upper()
        if not isinstance(choices, list) or len(choices) < 2 or answer not in LETTERS[: len(choices)]:
            raise KickError(
                f"{source} item {row['id']}: needs a list of choices and an answer letter among them, "
                f"got {len(choices) if isinstance(choices, list) else choices!r} choices and {answer!r}"
            )
        return cls(str(row["id"]), str(row["subject"]), str(row["question"]).strip(),
                   tuple(str(choice).strip() for choice in choices), LETTERS.index(answer))


def subject_header(subject: str) -> str:
    return f"The following are questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def question_block(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def shot_block(item: ChoiceItem) -> str:
    return f"{question_block(item.question)} {item.choices[item.answer]}\n\n"


def build_prefix(subject: str, shots: list[ChoiceItem]) -> str:
    return subject_header(subject) + "".join(shot_block(shot) for shot in shots)


@dataclass(frozen=True)
class SubjectGroup:
    subject: str
    prefix: str
    items: list[ChoiceItem]
    requests: list[Continuation]
    shots: int = 0


class MultipleChoice(Task):
    name = "multiple_choice"
    required_fields = REQUIRED
    bundled_file = "multiple_choice_test.jsonl"
    bundled_shots_file = "multiple_choice_dev.jsonl"
    readers = (kick_jsonl_reader("multiple_choice", REQUIRED, _four_choices), mmlu.READER)
    metric = ACCURACY
    tags = ("knowledge",)
    recovery_pool = "recovery_mc_pool.jsonl"

    def __init__(self, variant: str | None = None, shots: int = 5, batch_size: int = 16) -> None:
        super().__init__(variant)
        self.shots = shots
        self.batch_size = batch_size

    def load(self, options: TaskOptions) -> tuple[list[ChoiceItem], dict[str, list[ChoiceItem]], str]:
        """Test items, dev shots by subject, and a hash of both.

        Shots come from the bundled dev file, or from the dev split of a real MMLU folder given with
        ``--kick-data multiple_choice=PATH``; a user's JSONL file without a dev split runs 0-shot.
        """
        test_data = load_rows(self, options)
        if options.data_path is None:
            dev_rows = read_bundled_jsonl(self.bundled_shots_file, REQUIRED).rows
        else:
            dev_rows = self._real_dev_rows(options.data_path)
        items = [ChoiceItem.from_row(row, test_data.source) for row in test_data.rows]
        shots: dict[str, list[ChoiceItem]] = {}
        for row in dev_rows:
            shot = ChoiceItem.from_row(row, "dev split")
            shots.setdefault(shot.subject, []).append(shot)
        dev_hash = hashlib.sha256(json.dumps(dev_rows, sort_keys=True).encode()).hexdigest()
        return items, shots, hashlib.sha256(f"{test_data.sha256}|{dev_hash}".encode()).hexdigest()

    @staticmethod
    def _real_dev_rows(path: Path) -> list[dict]:
        """The dev split beside a real MMLU test set; none for a JSONL file or a folder without one (the subjects
        then run with fewer shots, which the fingerprint and a warning say)."""
        path = resolve_data_source(str(path), "MMLU data")
        if Path(path).suffix == ".jsonl":
            return []
        try:
            return mmlu.load_mmlu(path, split="dev")
        except KickError:
            return []

    def subject_groups(self, model, tokenizer, items: list[ChoiceItem],
                       dev_shots: dict[str, list[ChoiceItem]]) -> list[SubjectGroup]:
        """Items grouped by subject, each group with its few-shot prefix (shots dropped to fit the context)
        and one likelihood request per option, in item order."""
        context_limit = _context_limit(model)
        by_subject: dict[str, list[ChoiceItem]] = {}
        for item in items:
            by_subject.setdefault(item.subject, []).append(item)
        groups = []
        for subject, subject_items in by_subject.items():
            shots = self._fitting_shots(tokenizer, subject, dev_shots.get(subject, [])[: self.shots],
                                        subject_items, context_limit)
            requests = [Continuation(question_block(item.question), f" {choice}")
                        for item in subject_items for choice in item.choices]
            groups.append(SubjectGroup(subject, build_prefix(subject, shots), subject_items, requests, len(shots)))
        return groups

    @staticmethod
    def top_options(item: ChoiceItem, logprobs: list[float]) -> list[int]:
        """The options with the highest log-likelihood per character (longer options are not penalised): one, or
        several when their normalised scores are exactly equal. A tie is not a choice and scores as wrong whichever
        option is gold: a rule that favoured the first or the longest option would credit a broken model that
        scores every option alike with whatever share of gold answers sits in that place."""
        normalised = [logprob / max(len(choice), 1) for logprob, choice in zip(logprobs, item.choices)]
        best = max(normalised)
        return [index for index, value in enumerate(normalised) if value == best]

    def run(self, model, tokenizer, options: TaskOptions) -> TaskResult:
        started = time.perf_counter()
        items, dev_shots, data_hash = self.load(options)
        outcomes: list[ItemOutcome] = []
        groups = self.subject_groups(model, tokenizer, items, dev_shots)
        fewer = {group.subject: group.shots for group in groups if group.shots < self.shots}
        if fewer:
            source = options.data_path or "the bundled dev set"
            warnings.warn(KickWarning(
                f"multiple_choice: {len(fewer)} of {len(groups)} subjects run with fewer than {self.shots} shots "
                f"({', '.join(f'{subject} {count}' for subject, count in sorted(fewer.items())[:5])}"
                f"{', ...' if len(fewer) > 5 else ''}): {source} lacks their dev examples, or they do not fit the "
                "context; the shots used are in the fingerprint"), stacklevel=2)
        backend = options.evaluation_backend()
        for group in progress(groups, description="subjects", unit="subject"):  # MMLU has 57
            longest = max((request.context + request.continuation for request in group.requests), key=len)
            batch_size = choose_batch_size(options.batch_size, self.batch_size, model,
                                           len(tokenizer(group.prefix + longest).input_ids), all_logits=True)
            likelihoods = backend.likelihoods(model, tokenizer, group.prefix, group.requests, batch_size=batch_size)
            position = 0
            for item in group.items:
                option_scores = likelihoods[position : position + len(item.choices)]
                position += len(item.choices)
                top = self.top_options(item, [option.logprob for option in option_scores])
                chosen = top[0] if len(top) == 1 else None
                prediction = (f"{LETTERS[chosen]}: {item.choices[chosen]}" if chosen is not None
                              else "tie between " + "/".join(LETTERS[index] for index in top))
                outcomes.append(ItemOutcome(item.id, float(chosen == item.answer), prediction, group.subject,
                                            item.question, f"{LETTERS[item.answer]}: {item.choices[item.answer]}"))
        order = {item.id: index for index, item in enumerate(items)}
        outcomes.sort(key=lambda outcome: order[outcome.id])
        decoding = {"scoring": "loglik/char", "shots": self.shots, **({"shots_used": fewer} if fewer else {}),
                    **backend.fingerprint()}
        fingerprint = {
            **self.fingerprint_of(data_hash),
            "data_source": str(options.data_path) if options.data_path else f"bundled:{self.bundled_file}",
            "decoding": decoding,
        }
        return TaskResult(self.key, self.metric, outcomes, fingerprint, time.perf_counter() - started)

    @staticmethod
    def fingerprint_of(data_hash: str) -> dict:
        return {"task_data": data_hash, "prompt_version": PROMPT_VERSION}

    def expected_fingerprint(self, options: TaskOptions) -> dict:
        return self.fingerprint_of(self.load(options)[2])

    def _fitting_shots(self, tokenizer, subject, shots, items, context_limit) -> list[ChoiceItem]:
        """Drop shots (last first) until the longest question with its longest option fits the context."""
        longest = max(
            len(encode(tokenizer, question_block(item.question))) + max(len(encode(tokenizer, f" {c}")) for c in
                                                                        item.choices)
            for item in items
        )
        shots = list(shots)
        while shots and len(encode(tokenizer, build_prefix(subject, shots))) + longest + 1 > context_limit:
            shots.pop()
        return shots


def _context_limit(model) -> int:
    config = getattr(model, "config", None)
    return int(getattr(config, "max_position_embeddings", 0) or 2048)
