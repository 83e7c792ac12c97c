"""Log-likelihood of continuations after a shared prefix, reusing the prefix's key-value cache.

Multiple-choice scoring asks, for each question, how likely each option's text is after the prompt. All
questions of a subject share the same few-shot prefix, so the prefix runs through the model once; every batch
of (question, option) rows then starts from a copy of its key-value cache. 5-shot costs little more than 0-shot.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from kick_checks.kv_cache import cache_keyword, returned_cache
from kick_checks.progress import progress


@dataclass(frozen=True)
class Continuation:
    """``context`` follows the shared prefix; ``continuation`` is the text whose likelihood is measured."""

    context: str
    continuation: str


@dataclass(frozen=True)
class Likelihood:
    logprob: float  # sum over the continuation's tokens
    tokens: int
    characters: int


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prefix_ids(tokenizer, prefix: str) -> list[int]:
    """The prefix with the tokenizer's start token (if it has one), as the model saw text in training."""
    ids = encode(tokenizer, prefix)
    bos = tokenizer.bos_token_id
    add_bos = getattr(tokenizer, "add_bos_token", bos is not None)
    if bos is not None and add_bos and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return ids


def continuation_likelihoods(
    model, tokenizer, prefix: str, requests: list[Continuation], *, batch_size: int = 16
) -> list[Likelihood]:
    """Likelihood of each request's continuation given ``prefix + context``, in request order."""
    device = next(model.parameters()).device
    start_ids = prefix_ids(tokenizer, prefix)
    rows = []
    for request in requests:
        context, continuation = encode(tokenizer, request.context), encode(tokenizer, request.continuation)
        if not continuation:
            raise ValueError(f"empty continuation after {request.context[-40:]!r}")
        if not context and not start_ids:
            raise ValueError("a continuation needs a prefix or a context to be conditioned on")
        rows.append((context, continuation))
    with torch.no_grad():
        if start_ids:
            prefix_out = model(torch.tensor([start_ids], device=device), use_cache=True)
            prefix_cache, prefix_last = returned_cache(prefix_out), prefix_out.logits[0, -1].float()
        else:
            prefix_cache, prefix_last = None, None
        results: list[Likelihood] = []
        starts = range(0, len(rows), batch_size)
        for start in progress(starts, description=f"scoring {len(rows)} options", unit="batch"):
            results.extend(
                _score_batch(model, rows[start : start + batch_size], len(start_ids), prefix_cache, prefix_last,
                             device)
            )
    return [
        Likelihood(result.logprob, result.tokens, len(request.continuation))
        for result, request in zip(results, requests)
    ]


def _score_batch(model, rows, prefix_length, prefix_cache, prefix_last, device) -> list[Likelihood]:
    lengths = [len(context) + len(continuation) for context, continuation in rows]
    width = max(lengths)
    pad = 0
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), prefix_length + width), dtype=torch.long, device=device)
    mask[:, :prefix_length] = 1
    for index, ((context, continuation), length) in enumerate(zip(rows, lengths)):
        input_ids[index, :length] = torch.tensor(context + continuation, device=device)
        mask[index, prefix_length : prefix_length + length] = 1
    positions = torch.arange(prefix_length, prefix_length + width, device=device).expand(len(rows), -1)
    kwargs = {}
    if prefix_cache is not None:
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(rows))
        kwargs[cache_keyword(model)] = cache
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, **kwargs).logits
    scored = []
    for index, (context, continuation) in enumerate(rows):
        # Token j of the row is predicted by the logits at j - 1; the row's first token by the prefix's last.
        first = len(context)
        predicting = logits[index, max(first - 1, 0) : first + len(continuation) - 1].float()
        if first == 0:
            predicting = torch.cat([prefix_last[None, :], predicting[: len(continuation) - 1]])
        targets = torch.tensor(continuation, device=device)
        logprob = torch.log_softmax(predicting, dim=-1).gather(1, targets[:, None]).sum().item()
        scored.append(Likelihood(logprob, len(continuation), 0))
    return scored
