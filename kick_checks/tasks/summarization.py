"""In-context summarization (LLM-KICK's CNN/DailyMail task): summarize a news article with the chat template.

Scored by the LLM judge against the reference summary (1-10) when ``--kick-judge-model`` is set; otherwise by
ROUGE-L F1 against the reference (``rouge-score``, with stemming), a weaker but free and deterministic signal.
The scorer is part of the baseline fingerprint, so a judged run is never compared with a ROUGE baseline.

Bundled data: ``summarization.jsonl`` rows ``{"id", "article", "summary"}``: invented news written for this
project.
"""

from __future__ import annotations

import time

from kick_checks.tasks.base import ItemOutcome, TaskOptions, TaskResult, load_rows
from kick_checks.tasks.chat import ChatDecoding, JudgeTally, chat_replies

PROMPT_VERSION = "summarize-chat-1"
INSTRUCTION = "Summarize the following news article in two or three sentences.\n\n"


def rouge_l(prediction: str, reference: str) -> float:
    from rouge_score import rouge_scorer

    if not prediction.strip():
        return 0.0
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(reference, prediction)["rougeL"].fmeasure


class Summarization:
    key = "summarization"
    data_name = "summarization"
    bundled_file = "summarization.jsonl"
    decoding = ChatDecoding(max_new_tokens=128)

    def run(self, model, tokenizer, options: TaskOptions) -> TaskResult:
        started = time.perf_counter()
        data = load_rows(self.data_name, options, self.bundled_file, ("id", "article", "summary"))
        conversations = [[{"role": "user", "content": INSTRUCTION + row["article"].strip()}] for row in data.rows]
        decoding = self.decoding.sized(options.batch_size, model, tokenizer, conversations)
        summaries = chat_replies(model, tokenizer, conversations, decoding)
        judge = options.judge
        tally = JudgeTally()
        outcomes = []
        for row, summary in zip(data.rows, summaries):
            item_id = str(row["id"])
            if judge is None:
                score: float | None = rouge_l(summary, row["summary"])
            else:
                score = tally.record(item_id, judge.grade_summary(row["article"], summary, row["summary"]))
            if score is not None:
                outcomes.append(ItemOutcome(item_id, float(score), summary, str(row.get("topic", ""))))
        scorer = "rougeL-f1" if judge is None else f"judge:{judge.config.model}"
        fingerprint = {
            "task_data": data.sha256,
            "data_source": data.source,
            "prompt_version": PROMPT_VERSION,
            "decoding": decoding.to_dict(),
            "scorer": scorer,
        }
        metric = "rougeL" if judge is None else "judge_score"
        return TaskResult(self.key, metric, outcomes, fingerprint, time.perf_counter() - started,
                          problems=tally.problems())
