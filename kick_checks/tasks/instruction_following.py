"""Instruction following (LLM-KICK's Vicuna-bench / MT-bench task): multi-turn chats, every turn one item.

Each conversation is answered turn by turn with the chat template, the model's own earlier replies kept in the
history, so a second turn that depends on the first tests both. Each turn is scored:

- with ``--kick-judge-model``: graded 1-10 by the LLM judge with the earlier turns as context and the reference
  answer when there is one (the better score, and the paper's);
- without a judge: ROUGE-L F1 of the reply against the turn's reference answer (``rouge-score``, stemmed), the
  same judge-free signal summarization uses. It rewards replies that say what the reference says and drops when
  a compressed model wanders, repeats itself or stops answering. Turns without a reference are not scored (real
  MT-bench has references for its math, reasoning and coding questions only) and are counted in the result's
  problems; a set with none at all needs the judge.

The scorer is in the fingerprint, so a judged baseline is never compared with a ROUGE one.

Bundled data: ``conversations.jsonl`` in MT-bench's ``question.jsonl`` format with a reference for every turn,
written for this project.
"""

from __future__ import annotations

import time

from compressors.progress import stage
from kick_checks.datasets import mt_bench
from kick_checks.judge.prompts import turns_messages
from kick_checks.tasks.chat import ChatDecoding, JudgeTally, chat_replies
from kick_checks.tasks.data import load_rows
from kick_checks.tasks.protocol import JUDGE_SCORE, ROUGE_L, ItemOutcome, Task, TaskOptions, TaskResult, TaskSkipped
from kick_checks.tasks.scoring import rouge_l

PROMPT_VERSION = "mt-chat-1"


class InstructionFollowing(Task):
    name = "instruction_following"
    data_name = "conversations"
    required_fields = ("question_id", "turns")
    bundled_file = "conversations.jsonl"
    readers = (mt_bench.READER,)  # our conversations schema is MT-bench's own
    metric = ROUGE_L  # against the reference answers without a judge; JUDGE_SCORE with one
    tags = ("instruction",)
    decoding = ChatDecoding(max_new_tokens=192)

    def run(self, model, tokenizer, options: TaskOptions) -> TaskResult:
        started = time.perf_counter()
        data = load_rows(self, options)
        judge = options.judge
        if judge is None and not any(row.get("reference") for row in data.rows):
            raise TaskSkipped(
                f"instruction_following: {data.source} has no reference answers to score against without a judge: "
                "set --kick-judge-model (and --kick-judge-base-url for a non-OpenAI endpoint, key in OPENAI_API_KEY)"
            )
        answers, decoding = self.answer(model, tokenizer, data.rows, options)
        turns = [(row, turn, row_answers) for row, row_answers in zip(data.rows, answers)
                 for turn in range(len(row["turns"]))]
        tally = JudgeTally()
        if judge is not None:
            prompts = [turns_messages(row["turns"][: turn + 1], row_answers[: turn + 1], _references(row, turn))
                       for row, turn, row_answers in turns]
            judgments = judge.judge_all(prompts, what=f"judging {self.key}")
            scores = [tally.record(_item_id(row, turn), judgment) for (row, turn, _), judgment in zip(turns, judgments)]
        else:
            scores = [None if _reference(row, turn) is None else rouge_l(row_answers[turn], _reference(row, turn))
                      for row, turn, row_answers in turns]
        outcomes = [ItemOutcome(_item_id(row, turn), float(score), row_answers[turn], str(row.get("category", "")),
                                row["turns"][turn], _reference(row, turn) or "")
                    for (row, turn, row_answers), score in zip(turns, scores) if score is not None]
        unreferenced = 0 if judge is not None else sum(score is None for score in scores)
        fingerprint = {**self.fingerprint_of(data, options), "data_source": data.source,
                       "decoding": decoding.to_dict()}
        problems = tally.problems() | ({"turns_without_reference": unreferenced} if unreferenced else {})
        return TaskResult(self.key, self.metric if judge is None else JUDGE_SCORE, outcomes, fingerprint,
                          time.perf_counter() - started, problems=problems)

    @staticmethod
    def fingerprint_of(data, options: TaskOptions) -> dict:
        judge = options.judge
        return {"task_data": data.sha256, "prompt_version": PROMPT_VERSION,
                "scorer": "rougeL-f1/reference" if judge is None else f"judge:{judge.config.model}"}

    def expected_fingerprint(self, options: TaskOptions) -> dict:
        return self.fingerprint_of(load_rows(self, options), options)

    def answer(self, model, tokenizer, rows: list[dict], options: TaskOptions) -> tuple[list[list[str]], ChatDecoding]:
        """Every conversation answered turn by turn, the model's own replies kept in its history."""
        whole = [[{"role": "user", "content": "\n".join(row["turns"])}] for row in rows]
        turns = max(len(row["turns"]) for row in rows)
        backend = options.evaluation_backend()
        decoding = self.decoding.sized(options.batch_size, model, tokenizer, whole, replies=turns, backend=backend)
        histories: list[list[dict[str, str]]] = [[] for _ in rows]
        answers: list[list[str]] = [[] for _ in rows]
        for turn in range(turns):
            active = [index for index, row in enumerate(rows) if turn < len(row["turns"])]
            for index in active:
                histories[index].append({"role": "user", "content": rows[index]["turns"][turn]})
            with stage(f"turn {turn + 1} of {turns}"):
                replies = chat_replies(model, tokenizer, [histories[index] for index in active], decoding, backend)
            for index, reply in zip(active, replies):
                histories[index].append({"role": "assistant", "content": reply})
                answers[index].append(reply)
        return answers, decoding


def _item_id(row: dict, turn: int) -> str:
    return f"{row['question_id']}.t{turn + 1}"


def _reference(row: dict, turn: int) -> str | None:
    references = row.get("reference") or []
    return references[turn] if turn < len(references) else None


def _references(row: dict, turn: int) -> list[str] | None:
    """The references of turns 1..turn+1, when the row has one for each."""
    references = row.get("reference") or []
    return references[: turn + 1] if len(references) > turn else None
