"""The ``idp`` strategy: inference-time dynamic prompting, one curated prompt per input, chosen without labels.

The papers (arXiv 2310.00867, "Do compressed LLMs forget knowledge?") let each input pick its prompt from a
small curated pool at inference time, because no single prompt suits every input of a compressed model. Their
pool is of trained soft prompts and their pick is made inside the model's forward pass; we could read their
abstracts but not the selection rule itself, so kick-checks uses hard (text) prompts and one of three documented
rules, each label-free and run before any answer is generated:

- ``similarity`` (default): the prompt whose demonstrations' questions are closest to the input's question in the
  model's own input-embedding space (cosine of mean token embeddings). No forward pass at all, so IDP costs only
  the generation under the chosen prompts: 1.3x the plain evaluation of the three knowledge tasks on the default
  model (bf16), within the 2x a gate can afford.
- ``fit``: the prompt after which the input's own text (``Question: ...\nAnswer:``) is most likely. It looks
  only at the input: the prompt whose demonstrations the question most resembles wins. It runs every question
  once under every candidate (seven for short-answer QA), about 4x the plain evaluation in all, and recovered
  a little more than ``similarity`` and broke fewer items on the default model (Wanda 30%, all items: 42 of 92
  lost items recovered and 24 broken, against 37 and 30).
- ``confidence``: the prompt under which the compressed model is most sure of its answer: the probability of
  its most likely first answer token (short-answer QA), or of its chosen option among the four (multiple choice;
  the options are scored under every prompt, and the chosen prompt's scores are the answer, so nothing is
  scored twice). About the cost of ``fit``.

Ties keep the earlier prompt; the task's own prompt comes first, so an input keeps it unless another prompt does
strictly better. Only the chosen prompt is generated from, the items of every prompt in one run of the
generation engine (each prompt's prefix computed once).
"""

from __future__ import annotations

import time

import torch

from kick_checks.errors import KickError
from kick_checks.recovery.forms import ChoiceForm, Prompt, form_of
from kick_checks.recovery.pools import load_pool, recovery_task
from kick_checks.recovery.prompts import PROMPT_VERSION, choice_prompts, short_answer_prompts
from kick_checks.recovery.protocol import IDP_RULES, RecoveredRun, RecoveryContext, token_counter
from kick_checks.tasks import Task, TaskOptions


def choose(scores: list[list[float]]) -> list[int]:
    """Per item, the index of the best-scoring candidate (``scores[candidate][item]``); ties keep the first."""
    if not scores:
        return []
    chosen = []
    for item in range(len(scores[0])):
        best = 0
        for candidate in range(1, len(scores)):
            if scores[candidate][item] > scores[best][item]:
                best = candidate
        chosen.append(best)
    return chosen


def similarity_scores(model, tokenizer, questions: list[str], candidates: list[Prompt]) -> list[list[float]]:
    """``scores[candidate][item]``: cosine between the mean input embedding of each question and of each
    candidate's demonstration questions (its header for a prompt without demonstrations)."""
    embeddings = model.get_input_embeddings().weight

    def vector(text: str) -> torch.Tensor:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] or [0]
        with torch.no_grad():
            mean = embeddings[torch.tensor(ids, device=embeddings.device)].float().mean(dim=0)
        return mean / mean.norm().clamp_min(1e-12)

    asked = torch.stack([vector(question) for question in questions])
    shown = torch.stack([vector(" ".join(question for question, _ in prompt.demos) or prompt.header)
                         for prompt in candidates])
    return (shown @ asked.T).tolist()


class DynamicPrompting:
    name = "idp"

    def run(self, task: Task, model, tokenizer, options: TaskOptions, context: RecoveryContext) -> RecoveredRun:
        if context.idp_rule not in IDP_RULES:
            raise KickError(f"--kick-idp-rule {context.idp_rule!r} is unknown: use {', '.join(IDP_RULES)}")
        started = time.perf_counter()
        recovery_task(task.key)
        form = form_of(task)
        items, fingerprint = form.items(options)
        pool = load_pool(task, form.kind, form.questions(items), context.pool_paths.get(task.data_key()))
        groups: dict[str, list[int]] = {}  # items sharing one list of candidates: all, or one subject
        for index, item in enumerate(items):
            groups.setdefault(getattr(item, "subject", ""), []).append(index)
        count = token_counter(tokenizer)
        prompts: list[Prompt] = [form.own_prompt(item) for item in items]
        option_scores: list[list[float]] | None = [[] for _ in items] if isinstance(form, ChoiceForm) else None
        scored_tokens = 0
        for subject, indices in groups.items():
            members = [items[index] for index in indices]
            own = form.own_prompt(members[0])
            offered = short_answer_prompts(pool) if form.kind == "short_answer" else choice_prompts(pool, subject)
            candidates = [own, *offered]
            scores, per_candidate = self._scores(form, model, tokenizer, members, candidates, context.idp_rule,
                                                 options)
            scored = 0 if context.idp_rule == "similarity" else sum(count(form.query(item)) for item in members)
            if per_candidate is not None:  # the options were scored too
                scored += sum(count(f" {choice}") for item in members for choice in item.choices)
            scored_tokens += len(candidates) * scored
            for offset, (position, choice) in enumerate(zip(indices, choose(scores))):
                prompts[position] = candidates[choice]
                if per_candidate is not None:
                    option_scores[position] = per_candidate[choice][offset]
        fingerprint = {**fingerprint, "recovery": {"strategy": self.name, "rule": context.idp_rule,
                                                   "prompts": PROMPT_VERSION, "pool": pool.sha256}}
        if isinstance(form, ChoiceForm):
            known = option_scores if context.idp_rule == "confidence" else None
            result = form.evaluate(model, tokenizer, items, prompts, fingerprint, options.batch_size, scores=known)
        else:
            result = form.evaluate(model, tokenizer, items, prompts, fingerprint, options.batch_size)
        extra = [count(prompt.text) - count(form.own_prompt(item).text) for item, prompt in zip(items, prompts)]
        chosen: dict[str, int] = {}
        for prompt in prompts:
            chosen[prompt.name] = chosen.get(prompt.name, 0) + 1
        return RecoveredRun(self.name, result, extra_tokens_per_item=sum(extra) / max(len(extra), 1),
                            scored_tokens_per_item=scored_tokens / max(len(items), 1),
                            seconds=time.perf_counter() - started,
                            details={"rule": context.idp_rule, "chosen": dict(sorted(chosen.items())),
                                     "pool": pool.source, "pool_items_dropped": pool.dropped})

    @staticmethod
    def _scores(form, model, tokenizer, items, candidates: list[Prompt], rule: str, options: TaskOptions):
        """``scores[candidate][item]`` by ``rule``; for the confidence rule on multiple choice also every
        candidate's option scores, which are then the answers."""
        if rule == "fit":
            return [form.fit(model, tokenizer, items, prompt) for prompt in candidates], None
        if rule == "similarity":
            return similarity_scores(model, tokenizer, [item.question for item in items], candidates), None
        if isinstance(form, ChoiceForm):
            options_by_candidate = [form.option_scores(model, tokenizer, items, prompt, options.batch_size)
                                    for prompt in candidates]
            return [[form.confidence_of(scores) for scores in per_item] for per_item in options_by_candidate], \
                options_by_candidate
        return [form.confidence(model, tokenizer, items, prompt) for prompt in candidates], None
