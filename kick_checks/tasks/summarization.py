"""In-context summarization (LLM-KICK's CNN/DailyMail task): summarize a news article with the chat template.

Scored by the LLM judge against the reference summary (1-10) when ``--kick-judge-model`` is set; otherwise by
ROUGE-L F1 against the reference (``rouge-score``, with stemming), a weaker but free and deterministic signal.
The scorer is part of the baseline fingerprint, so a judged run is never compared with a ROUGE baseline.

Bundled data: ``summarization.jsonl`` rows ``{"id", "article", "summary"}``: invented news written for this
project.
"""

from __future__ import annotations

import time

from kick_checks.datasets import cnn_dailymail
from kick_checks.datasets.common import kick_jsonl_reader
from kick_checks.judge.prompts import summary_messages
from kick_checks.tasks.chat import ChatDecoding, JudgeTally, chat_replies
from kick_checks.tasks.data import load_rows
from kick_checks.tasks.protocol import JUDGE_SCORE, ROUGE_L, ItemOutcome, Task, TaskOptions, TaskResult
from kick_checks.tasks.scoring import rouge_l

PROMPT_VERSION = "summarize-chat-1"
INSTRUCTION = "Summarize the following news article in two or three sentences.\n\n"
FIELDS = ("id", "article", "summary")


class Summarization(Task):
    name = "summarization"
    required_fields = FIELDS
    bundled_file = "summarization.jsonl"
    readers = (kick_jsonl_reader("summarization", FIELDS), cnn_dailymail.READER)
    metric = ROUGE_L  # without a judge; JUDGE_SCORE with one
    tags = ("in-context",)
    decoding = ChatDecoding(max_new_tokens=128)

    def run(self, model, tokenizer, options: TaskOptions) -> TaskResult:
        started = time.perf_counter()
        data = load_rows(self, options)
        conversations = [[{"role": "user", "content": INSTRUCTION + row["article"].strip()}] for row in data.rows]
        backend = options.evaluation_backend()
        decoding = self.decoding.sized(options.batch_size, model, tokenizer, conversations, backend=backend)
        summaries = chat_replies(model, tokenizer, conversations, decoding, backend)
        judge = options.judge
        tally = JudgeTally()
        if judge is None:
            scores: list[float | None] = [rouge_l(summary, row["summary"])
                                          for row, summary in zip(data.rows, summaries)]
        else:
            prompts = [summary_messages(row["article"], summary, row["summary"])
                       for row, summary in zip(data.rows, summaries)]
            judgments = judge.judge_all(prompts, what=f"judging {self.key}")
            scores = [tally.record(str(row["id"]), judgment) for row, judgment in zip(data.rows, judgments)]
        outcomes = [ItemOutcome(str(row["id"]), float(score), summary, str(row.get("topic", "")), gold=row["summary"])
                    for row, summary, score in zip(data.rows, summaries, scores) if score is not None]
        fingerprint = {**self.fingerprint_of(data, options), "data_source": data.source,
                       "decoding": decoding.to_dict()}
        return TaskResult(self.key, self.metric if judge is None else JUDGE_SCORE, outcomes, fingerprint,
                          time.perf_counter() - started, problems=tally.problems())

    @staticmethod
    def fingerprint_of(data, options: TaskOptions) -> dict:
        judge = options.judge
        return {"task_data": data.sha256, "prompt_version": PROMPT_VERSION,
                "scorer": "rougeL-f1" if judge is None else f"judge:{judge.config.model}"}

    def expected_fingerprint(self, options: TaskOptions) -> dict:
        return self.fingerprint_of(load_rows(self, options), options)
