"""The ``prompt`` strategy: one fixed recovery prompt, an instruction and k held-out demonstrations.

The simplest input-side repair the papers test: if compression displaced knowledge rather than erased it, a better
cue in the input should bring some of it back. Every item gets the same prompt (multiple choice: the same prompt
per subject), built by :func:`kick_checks.recovery.prompts.short_answer_prompts` /
:func:`~kick_checks.recovery.prompts.choice_prompts` from the task's pool.
"""

from __future__ import annotations

import time

from kick_checks.recovery.forms import form_of
from kick_checks.recovery.pools import load_pool, recovery_task
from kick_checks.recovery.prompts import PROMPT_VERSION, choice_prompts, short_answer_prompts
from kick_checks.recovery.protocol import RecoveredRun, RecoveryContext, token_counter
from kick_checks.tasks import Task, TaskOptions


class FixedPrompt:
    name = "prompt"

    def run(self, task: Task, model, tokenizer, options: TaskOptions, context: RecoveryContext) -> RecoveredRun:
        started = time.perf_counter()
        recovery_task(task.key)
        form = form_of(task)
        items, fingerprint = form.items(options)
        pool = load_pool(task, form.kind, form.questions(items), context.pool_paths.get(task.data_key()))
        if form.kind == "short_answer":
            fixed = short_answer_prompts(pool)[0]
            prompts = [fixed] * len(items)
        else:
            by_subject = {subject: choice_prompts(pool, subject)[0] for subject in dict.fromkeys(
                item.subject for item in items)}
            prompts = [by_subject[item.subject] for item in items]
        fingerprint = {**fingerprint, "recovery": {"strategy": self.name, "prompts": PROMPT_VERSION,
                                                   "pool": pool.sha256}}
        result = form.evaluate(model, tokenizer, items, prompts, fingerprint, options.batch_size)
        count = token_counter(tokenizer)
        extra = [count(prompt.text) - count(form.own_prompt(item).text) for item, prompt in zip(items, prompts)]
        return RecoveredRun(self.name, result, extra_tokens_per_item=sum(extra) / max(len(extra), 1),
                            seconds=time.perf_counter() - started,
                            details={"pool": pool.source, "pool_items_dropped": pool.dropped,
                                     "prompts_used": sorted({prompt.name for prompt in prompts})})
