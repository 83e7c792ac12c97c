"""An example task from outside kick-checks: does the model still prefer the right answer to a distractor?

Each row is a question with its answer and one plausible wrong answer. The model reads the question in the same
few-shot format as factoid QA and the item counts as right when the answer's log-likelihood beats the
distractor's. It needs no generation, so it is cheap; it is a knowledge probe, so it carries the ``knowledge`` tag.

Installed with ``pip install -e examples/kick-example-task``, its entry point (``kick_checks.tasks``) makes
``pytest -m kick`` run ``test_task[answer_preference]`` beside kick-checks' own tasks, with its own baseline,
``--kick-data answer_preference=...`` and ``--kick-tolerance answer_preference=...``.
"""

from __future__ import annotations

import time

from kick_checks.datasets.common import kick_jsonl_reader
from kick_checks.engine.likelihood import Continuation, continuation_likelihoods
from kick_checks.tasks import ItemOutcome, Task, TaskOptions, TaskResult
from kick_checks.tasks.data import TaskData, load_rows
from kick_checks.tasks.factoid_qa import SHOTS
from kick_checks.tasks.protocol import ACCURACY
from kick_checks.tasks.qa import few_shot_prefix, question_block

PROMPT_VERSION = "answer-preference-1"
FIELDS = ("id", "question", "answer", "distractor")


class AnswerPreference(Task):
    name = "answer_preference"
    required_fields = FIELDS
    bundled_file = "answer_preference.jsonl"
    bundled_package = "kick_example_task"
    readers = (kick_jsonl_reader("answer_preference", FIELDS),)
    metric = ACCURACY
    tags = ("knowledge",)

    def run(self, model, tokenizer, options: TaskOptions) -> TaskResult:
        started = time.perf_counter()
        data = load_rows(self, options)
        requests = [Continuation(question_block(row["question"]), f" {row[side]}")
                    for row in data.rows for side in ("answer", "distractor")]
        likelihoods = continuation_likelihoods(model, tokenizer, few_shot_prefix(SHOTS, False), requests)
        outcomes = []
        for index, row in enumerate(data.rows):
            right, wrong = likelihoods[2 * index].logprob, likelihoods[2 * index + 1].logprob
            outcomes.append(ItemOutcome(str(row["id"]), float(right > wrong), row["answer" if right > wrong else
                                                                                  "distractor"],
                                        question=row["question"], gold=row["answer"]))
        fingerprint = {**self.fingerprint_of(data), "data_source": data.source}
        return TaskResult(self.key, self.metric, outcomes, fingerprint, time.perf_counter() - started)

    def fingerprint_of(self, data: TaskData) -> dict:
        return {"task_data": data.sha256, "prompt_version": PROMPT_VERSION}

    def expected_fingerprint(self, options: TaskOptions) -> dict:
        return self.fingerprint_of(load_rows(self, options))
