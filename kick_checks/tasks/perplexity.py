"""Perplexity on WikiText-style text: the number compression papers report, kept beside the tasks to show how
little it moves while knowledge falls away.

The text is tokenized once and cut into non-overlapping windows of ``--kick-ppl-seqlen`` tokens (default: the
model's context, at most 2048, the length SparseGPT and Wanda evaluate at); a trailing partial window is
dropped so every window weighs the same. ``--kick-limit`` does not apply (the bundled text is nine windows).
Each window is one item, scored by its mean negative log-likelihood; the task's score is ``exp`` of their mean.
Lower is better.

Bundled text: ``perplexity.txt``, our own encyclopedia-style articles in the WikiText-2 raw layout.
"""

from __future__ import annotations

import hashlib
import math
import time

import torch

from kick_checks.datasets import wikitext
from kick_checks.errors import KickError
from kick_checks.tasks.data import load_text
from kick_checks.tasks.protocol import PERPLEXITY, ItemOutcome, Task, TaskOptions, TaskResult

PROMPT_VERSION = "ppl-windows-1"
DEFAULT_MAX_SEQLEN = 2048


def window_seqlen(model, requested: int | None) -> int:
    context = int(getattr(model.config, "max_position_embeddings", 0) or DEFAULT_MAX_SEQLEN)
    if requested is None:
        return min(context, DEFAULT_MAX_SEQLEN)
    if requested > context:
        raise KickError(f"--kick-ppl-seqlen {requested} exceeds the model's context of {context}: lower it")
    return requested


class Perplexity(Task):
    name = "perplexity"
    bundled_file = "perplexity.txt"
    readers = (wikitext.READER,)
    metric = PERPLEXITY
    tags = ("language-modelling",)

    def run(self, model, tokenizer, options: TaskOptions) -> TaskResult:
        started = time.perf_counter()
        text, source = load_text(self, options)
        seqlen = window_seqlen(model, options.ppl_seqlen)
        ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
        count = len(ids) // seqlen
        if count == 0:
            raise KickError(
                f"the perplexity text ({source}) has {len(ids)} tokens, fewer than one window of {seqlen}: "
                "lower --kick-ppl-seqlen or give a longer text"
            )
        # all the windows, whatever --kick-limit says: a few windows cost little
        windows = [ids[index * seqlen : (index + 1) * seqlen] for index in range(count)]
        backend = options.evaluation_backend()
        losses = backend.window_losses(model, windows)
        outcomes = [ItemOutcome(f"window-{index:04d}", loss, f"ppl {math.exp(loss):.3f}")
                    for index, loss in enumerate(losses)]
        fingerprint = {
            **self.fingerprint_of(text),
            "data_source": source,
            "decoding": {"seqlen": seqlen, "windows": count, **backend.fingerprint()},
        }
        return TaskResult(self.key, self.metric, outcomes, fingerprint, time.perf_counter() - started)

    @staticmethod
    def fingerprint_of(text: str) -> dict:
        return {"task_data": hashlib.sha256(text.encode("utf-8")).hexdigest(), "prompt_version": PROMPT_VERSION}

    def expected_fingerprint(self, options: TaskOptions) -> dict:
        return self.fingerprint_of(load_text(self, options)[0])
