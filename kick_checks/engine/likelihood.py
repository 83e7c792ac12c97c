"""Log-likelihood of continuations after a shared prefix and a shared context, each computed once.

Multiple-choice scoring asks, for each question, how likely each option's text is after the prompt. All
questions of a subject share the same few-shot prefix, and the options of one question share its context, so
the work is done at three levels: the prefix runs through the model once; each batch of distinct contexts runs
once from a copy of the prefix's key-value cache; each option then runs only its own tokens from its context's
cache. 5-shot costs little more than 0-shot, and four options little more than one.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from compressors.progress import progress, ticking
from kick_checks.engine.grouped_attention import grouped_decoding
from kick_checks.engine.kv_cache import cache_keyword, returned_cache
from kick_checks.errors import NonFiniteOutput


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


def encode_requests(tokenizer, prefix: str, requests: list[Continuation]) -> tuple[list[int], list[tuple]]:
    """The prefix's token ids, and each request's ``(context ids, continuation ids)``: prefix, context and
    continuation are tokenized apart, so every backend scores the same tokens."""
    start_ids = prefix_ids(tokenizer, prefix)
    encoded = []
    for request in requests:
        context, continuation = encode(tokenizer, request.context), encode(tokenizer, request.continuation)
        if not continuation:
            raise ValueError(f"empty continuation after {request.context[-40:]!r}")
        if not context and not start_ids:
            raise ValueError("a continuation needs a prefix or a context to be conditioned on")
        encoded.append((context, continuation))
    return start_ids, encoded


def continuation_likelihoods(
    model, tokenizer, prefix: str, requests: list[Continuation], *, batch_size: int = 16
) -> list[Likelihood]:
    """Likelihood of each request's continuation given ``prefix + context``, in request order.

    ``batch_size`` rows go through the model at a time: distinct contexts, then continuations."""
    device = next(model.parameters()).device
    start_ids, encoded = encode_requests(tokenizer, prefix, requests)
    context_index: dict[tuple[int, ...], int] = {}
    contexts: list[list[int]] = []
    rows: list[tuple[int, list[int]]] = []  # (context number, continuation ids) per request
    for context, continuation in encoded:
        number = context_index.setdefault(tuple(context), len(contexts))
        if number == len(contexts):
            contexts.append(context)
        rows.append((number, continuation))
    rows_of: dict[int, list[int]] = {}
    for row, (number, _) in enumerate(rows):
        rows_of.setdefault(number, []).append(row)

    logprobs: list[float] = [0.0] * len(rows)
    with torch.no_grad(), grouped_decoding(model), ticking(model):
        if start_ids:
            prefix_out = model(torch.tensor([start_ids], device=device), use_cache=True)
            prefix_cache, prefix_last = returned_cache(prefix_out), prefix_out.logits[0, -1].float()
        else:
            prefix_cache, prefix_last = None, None
        starts = range(0, len(contexts), batch_size)
        for start in progress(starts, description="scoring options", unit="batch"):
            numbers = list(range(start, min(start + batch_size, len(contexts))))
            cache, mask, last = _run_contexts(model, [contexts[n] for n in numbers], len(start_ids), prefix_cache,
                                              prefix_last, device)
            batch_rows = [(position, row) for position, number in enumerate(numbers) for row in rows_of[number]]
            for chunk in range(0, len(batch_rows), batch_size):
                selected = batch_rows[chunk : chunk + batch_size]
                scored = _score_continuations(model, cache, mask, last,
                                              [(position, rows[row][1]) for position, row in selected], device)
                for (_, row), logprob in zip(selected, scored):
                    logprobs[row] = logprob
    broken = next((row for row, logprob in enumerate(logprobs) if not math.isfinite(logprob)), None)
    if broken is not None:
        raise NonFiniteOutput(f"the log-likelihood of request {broken + 1} of {len(requests)} is {logprobs[broken]} "
                              f"(option {requests[broken].continuation.strip()[:40]!r} after "
                              f"{requests[broken].context[-80:]!r})")
    return [
        Likelihood(logprob, len(continuation), len(request.continuation))
        for logprob, (_, continuation), request in zip(logprobs, rows, requests)
    ]


def _run_contexts(model, contexts, prefix_length, prefix_cache, prefix_last, device):
    """Run distinct contexts (right-padded) from the prefix's cache. Returns their key-value cache, its attention
    mask ``[rows, prefix + width]`` and, per context, the float logits that predict the continuation's first
    token (the prefix's last logits for an empty context)."""
    width = max(len(context) for context in contexts)
    input_ids = torch.zeros((len(contexts), max(width, 1)), dtype=torch.long, device=device)
    mask = torch.zeros((len(contexts), prefix_length + max(width, 1)), dtype=torch.long, device=device)
    mask[:, :prefix_length] = 1
    for index, context in enumerate(contexts):
        input_ids[index, : len(context)] = torch.tensor(context, device=device)
        mask[index, prefix_length : prefix_length + len(context)] = 1
    positions = torch.arange(prefix_length, prefix_length + input_ids.shape[1], device=device).expand(len(contexts), -1)
    kwargs = {}
    if prefix_cache is not None:
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(contexts))
        kwargs[cache_keyword(model)] = cache
    output = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, **kwargs)
    last = torch.stack([
        output.logits[index, len(context) - 1].float() if context else prefix_last
        for index, context in enumerate(contexts)
    ])
    return returned_cache(output), mask, last


#: Cache layers whose update replaces their tensors (``torch.cat``) instead of writing into them: a copy of the
#: cache may share their tensors with the original.
_REPLACING_LAYERS = {"DynamicLayer", "DynamicSlidingWindowLayer"}


def _rows_of(cache, index: torch.Tensor):
    """A cache holding rows ``index`` (repeats allowed) of ``cache``, which stays as it was."""
    layers = getattr(cache, "layers", None)
    if layers and all(type(layer).__name__ in _REPLACING_LAYERS for layer in layers):
        selected = copy.copy(cache)
        selected.layers = [copy.copy(layer) for layer in layers]
    else:
        selected = copy.deepcopy(cache)
    selected.batch_select_indices(index)
    return selected


def _score_continuations(model, context_cache, context_mask, context_last, rows, device) -> list[float]:
    """Sum of log-probabilities of each row's continuation tokens; a row is (its context's position in the
    context batch, continuation ids)."""
    index = torch.tensor([position for position, _ in rows], device=device)
    cache = _rows_of(context_cache, index)
    width = max(len(continuation) for _, continuation in rows)
    input_ids = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    own = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for line, (_, continuation) in enumerate(rows):
        input_ids[line, : len(continuation)] = torch.tensor(continuation, device=device)
        own[line, : len(continuation)] = 1
    mask = torch.cat([context_mask[index], own], dim=1)
    ends = context_mask[index].sum(dim=1, keepdim=True)  # prefix + context tokens: the first own position
    positions = ends + torch.arange(width, device=device)[None, :]
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                   **{cache_keyword(model): cache}).logits
    scored = []
    for line, (position, continuation) in enumerate(rows):
        # Token j is predicted by the logits at j - 1; the first token by its context's last logits.
        predicting = torch.cat([context_last[position][None, :], logits[line, : len(continuation) - 1].float()])
        targets = torch.tensor(continuation, device=device)
        scored.append(torch.log_softmax(predicting, dim=-1).gather(1, targets[:, None]).sum().item())
    return scored


def next_token_top(model, tokenizer, prefix: str, contexts: list[str], *, batch_size: int = 16
                   ) -> list[tuple[int, float]]:
    """For each context, the most likely token after ``prefix + context`` and its probability: how sure the
    model is of how its answer begins, from one forward pass and no generation (the prefix runs once)."""
    device = next(model.parameters()).device
    start_ids = prefix_ids(tokenizer, prefix)
    encoded = [encode(tokenizer, context) for context in contexts]
    if not start_ids and any(not ids for ids in encoded):
        raise ValueError("a next token needs a prefix or a context to be conditioned on")
    top: list[tuple[int, float]] = []
    with torch.no_grad():
        prefix_cache, prefix_last = None, None
        if start_ids:
            prefix_out = model(torch.tensor([start_ids], device=device), use_cache=True)
            prefix_cache, prefix_last = returned_cache(prefix_out), prefix_out.logits[0, -1].float()
        for start in range(0, len(encoded), batch_size):
            _, _, last = _run_contexts(model, encoded[start : start + batch_size], len(start_ids), prefix_cache,
                                       prefix_last, device)
            probabilities, tokens = torch.softmax(last, dim=-1).max(dim=-1)
            top.extend(zip(tokens.tolist(), probabilities.tolist()))
    return top
