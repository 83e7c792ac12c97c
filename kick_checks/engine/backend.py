"""The evaluation backend: what computes the tasks' generations, option likelihoods and perplexity windows.

Tasks build their prompts, stop rules and requests, and score what comes back; the backend only computes. Two
exist, chosen with ``--kick-backend``:

- ``transformers`` (the default): the engines of this package on the model in memory, continuous batching
  for generation (:mod:`~kick_checks.engine.generation`), shared-prefix scoring for likelihoods
  (:mod:`~kick_checks.engine.likelihood`), one forward pass per perplexity window with the loss taken a slice
  of positions at a time (:mod:`~kick_checks.engine.window_loss`);
- ``vllm`` / ``vllm-gptq``: the compressed model served by vLLM's offline engine on a GPU
  (:mod:`~kick_checks.engine.vllm_backend`).

A backend names itself in every decoding fingerprint, so a baseline recorded through one is never compared with a
run through the other. The default adds nothing to today's fingerprints (generation tasks already carry their
engine's name), which keeps the shipped baselines valid.
"""

from __future__ import annotations

import torch

from kick_checks.engine.generation import generation_engine, greedy_generate
from kick_checks.engine.likelihood import Continuation, Likelihood, continuation_likelihoods
from kick_checks.engine.window_loss import window_losses


class Backend:
    """The transformers backend; the base of the others, which override every method."""

    name = "transformers"

    def generation_engine(self, model) -> str:
        """The name generation tasks put in their decoding fingerprint."""
        return generation_engine(model)

    def fingerprint(self) -> dict:
        """Fields added to the decoding fingerprint of likelihood and perplexity tasks (none for the default)."""
        return {}

    def generate(self, model, tokenizer, prompts: list[str], *, max_new_tokens: int, stop: tuple[str, ...] = (),
                 batch_size: int = 16, add_special_tokens: bool = True, draft_tokens: int = 0,
                 groups: list[int] | None = None) -> list[str]:
        """Greedy continuations of ``prompts`` in input order, each cut at its first stop string; with
        ``draft_tokens``, decoded with prompt-lookup drafts of up to that many tokens (the same greedy answers
        in fewer forward passes); ``groups`` labels each prompt with the template whose prefix it shares with
        the others of its label (the same answers, each prefix computed once)."""
        return greedy_generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, stop=stop,
                               batch_size=batch_size, add_special_tokens=add_special_tokens,
                               draft_tokens=draft_tokens, groups=groups)

    def likelihoods(self, model, tokenizer, prefix: str, requests: list[Continuation], *,
                    batch_size: int = 16) -> list[Likelihood]:
        """Log-likelihood of each request's continuation after ``prefix + context``, in request order."""
        return continuation_likelihoods(model, tokenizer, prefix, requests, batch_size=batch_size)

    def window_losses(self, model, windows: list[torch.Tensor]) -> list[float]:
        """Mean negative log-likelihood of each window's tokens (each predicted from the ones before it)."""
        return window_losses(model, windows)


TRANSFORMERS = Backend()
