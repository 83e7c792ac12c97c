"""Instruction following (LLM-KICK's Vicuna-bench / MT-bench task): multi-turn chats graded by an LLM judge.

Each conversation is answered turn by turn with the chat template, the model's own earlier replies kept in the
history, so a second turn that depends on the first tests both. Every turn is one item, graded 1-10 by the
judge with the earlier turns as context and the reference answer when there is one. There is no fair
judge-free score for open-ended answers, so without ``--kick-judge-model`` the task is skipped with the reason.

Bundled data: ``conversations.jsonl`` in MT-bench's ``question.jsonl`` format, written for this project.
"""

from __future__ import annotations

import time

from kick_checks.tasks.base import ItemOutcome, TaskOptions, TaskResult, TaskSkipped, load_rows
from kick_checks.tasks.chat import ChatDecoding, JudgeTally, chat_replies

PROMPT_VERSION = "mt-chat-1"


class InstructionFollowing:
    key = "instruction_following"
    data_name = "conversations"
    metric = "judge_score"
    bundled_file = "conversations.jsonl"
    decoding = ChatDecoding(max_new_tokens=192)

    def run(self, model, tokenizer, options: TaskOptions) -> TaskResult:
        judge = options.judge
        if judge is None:
            raise TaskSkipped(
                "instruction_following is scored by an LLM judge: set --kick-judge-model (and --kick-judge-base-url "
                "for a non-OpenAI endpoint, key in OPENAI_API_KEY), or deselect it with -m 'kick and not judge'"
            )
        started = time.perf_counter()
        data = load_rows(self.data_name, options, self.bundled_file, ("question_id", "turns"))
        whole = [[{"role": "user", "content": "\n".join(row["turns"])}] for row in data.rows]
        decoding = self.decoding.sized(options.batch_size, model, tokenizer, whole,
                                       replies=max(len(row["turns"]) for row in data.rows))
        histories: list[list[dict[str, str]]] = [[] for _ in data.rows]
        answers: list[list[str]] = [[] for _ in data.rows]
        for turn in range(max(len(row["turns"]) for row in data.rows)):
            active = [index for index, row in enumerate(data.rows) if turn < len(row["turns"])]
            for index in active:
                histories[index].append({"role": "user", "content": data.rows[index]["turns"][turn]})
            replies = chat_replies(model, tokenizer, [histories[index] for index in active], decoding)
            for index, reply in zip(active, replies):
                histories[index].append({"role": "assistant", "content": reply})
                answers[index].append(reply)
        tally = JudgeTally()
        outcomes = []
        for row, row_answers in zip(data.rows, answers):
            references = row.get("reference") or None
            for turn in range(len(row["turns"])):
                item_id = f"{row['question_id']}.t{turn + 1}"
                turn_references = references[: turn + 1] if references and len(references) > turn else None
                judgment = judge.grade_turns(row["turns"][: turn + 1], row_answers[: turn + 1], turn_references)
                score = tally.record(item_id, judgment)
                if score is not None:
                    outcomes.append(ItemOutcome(item_id, float(score), row_answers[turn], str(row.get("category", ""))))
        fingerprint = {
            "task_data": data.sha256,
            "data_source": data.source,
            "prompt_version": PROMPT_VERSION,
            "decoding": decoding.to_dict(),
            "scorer": f"judge:{judge.config.model}",
        }
        return TaskResult(self.key, self.metric, outcomes, fingerprint, time.perf_counter() - started,
                          problems=tally.problems())
