"""Greedy decoding with continuous batching over a shared prompt prefix.

Two observations about evaluating a small model on a CPU shape this engine:

- A decoding step costs nearly the same for one sequence as for sixteen (reading the weights dominates: 38 ms for
  one row, 47 ms for sixteen on the default model in bfloat16). A static batch keeps stepping until its longest
  answer ends, so one long answer makes fifteen short ones wait. Here a finished row leaves the batch at once and,
  once half the batch is free, waiting prompts are prefilled and join it, so every step does useful work for up to
  ``batch_size`` rows.
- The prompts of a task share their instruction and few-shot examples. That common token prefix is run through the
  model once; every prompt's prefill starts from its key-value cache and computes only its own tokens.

Rows of different lengths sit in one key-value cache with unused columns masked out; the cache keeps room for
the tokens still to come, so a step writes in place instead of copying it; positions are given explicitly, so
a row's tokens see the same positions as in a lone run. The schedule (which rows share a step) depends only on
the prompts and on the model's own answers, so the same model and prompts always give the same answers. Models
whose cache is not a plain per-layer key-value cache (sliding-window or recurrent layers) are not handled here:
:func:`continuous_greedy` returns ``None`` and the caller uses transformers' ``generate``.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable

import torch

from kick_checks.engine.kv_cache import cache_keyword, reserved_cache, returned_cache

REFILL_SHARE = 0.5
ENGINE = "continuous-batching-2"
"""Names this engine in the generation fingerprint: a change that can alter answers gets a new name."""


def shared_prefix_length(token_lists: list[list[int]]) -> int:
    """Length of the token prefix every list starts with, leaving each list at least one token of its own."""
    if not token_lists:
        return 0
    first = token_lists[0]
    length = min(len(tokens) for tokens in token_lists) - 1
    for tokens in token_lists[1:]:
        same = 0
        while same < length and tokens[same] == first[same]:
            same += 1
        length = same
    return max(length, 0)


def _plain_layers(cache) -> list | None:
    """The cache's layers when each holds full keys and values we may reshape; else ``None``."""
    layers = getattr(cache, "layers", None)
    if not layers:
        return None
    for layer in layers:
        if type(layer).__name__ not in ("DynamicLayer", "ReservedLayer") or getattr(layer, "keys", None) is None:
            return None
    return list(layers)


def plain_cache_for(model) -> bool:
    """Whether ``model`` keeps a plain key-value cache: every layer full attention, nothing recurrent."""
    config = getattr(model, "config", None)
    if config is None or not callable(getattr(model, "can_generate", None)) or not model.can_generate():
        return False
    from transformers import DynamicCache

    try:
        cache = DynamicCache(config=config)
    except (TypeError, ValueError, KeyError, AttributeError):
        return False
    return bool(cache.layers) and all(type(layer).__name__ == "DynamicLayer" for layer in cache.layers)


def _empty_cache():
    from transformers import DynamicCache

    return DynamicCache()


def _explicit_decode_mask(model, device: torch.device) -> bool:
    """Whether decoding steps get a ready 4-D boolean mask: on a CPU with SDPA attention.

    When no row of a step is padded, transformers drops the mask and lets SDPA repeat grouped key-value heads
    (``enable_gqa``), which on a CPU runs 4x slower than the grouped-query path it takes when a mask is given
    (243 ms against 58 ms of attention per step at 900 cached tokens and 16 rows of the default model). A mask
    given as ``[rows, 1, 1, columns]`` booleans is used as it is, so every step takes the fast path.
    """
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return device.type == "cpu" and implementation == "sdpa"


def _left_pad(tensor: torch.Tensor, columns: int, dim: int) -> torch.Tensor:
    if columns == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class _Batch:
    """The rows being decoded: their key-value cache, attention mask, next positions and last tokens."""

    def __init__(self, rows: list[int], cache, mask: torch.Tensor, positions: torch.Tensor, last: torch.Tensor):
        self.rows, self.cache, self.mask, self.positions, self.last = rows, cache, mask, positions, last

    def __len__(self) -> int:
        return len(self.rows)

    def merge(self, other: _Batch, reserve: int) -> _Batch:
        """This batch and ``other`` as one, the shorter cache padded with masked columns on the left; the cache
        keeps room for ``reserve`` more tokens (see :func:`kick_checks.engine.kv_cache.reserved_layer_type`)."""
        mine, theirs = _plain_layers(self.cache), _plain_layers(other.cache)
        width = max(self.mask.shape[1], other.mask.shape[1])
        pad_mine, pad_theirs = width - self.mask.shape[1], width - other.mask.shape[1]
        key_values = [
            (torch.cat([_left_pad(a.keys, pad_mine, 2), _left_pad(b.keys, pad_theirs, 2)]),
             torch.cat([_left_pad(a.values, pad_mine, 2), _left_pad(b.values, pad_theirs, 2)]))
            for a, b in zip(mine, theirs)
        ]
        mask = torch.cat([_left_pad(self.mask, pad_mine, 1), _left_pad(other.mask, pad_theirs, 1)])
        return _Batch(self.rows + other.rows, reserved_cache(key_values, reserve), mask,
                      torch.cat([self.positions, other.positions]), torch.cat([self.last, other.last]))

    def keep(self, kept: list[int]) -> None:
        """Keep only the rows at positions ``kept``, and drop cache columns no kept row attends to."""
        index = torch.tensor(kept, device=self.mask.device)
        self.rows = [self.rows[position] for position in kept]
        self.mask, self.positions, self.last = self.mask[index], self.positions[index], self.last[index]
        used = self.mask.any(dim=0)
        trim = not bool(used.all())
        if trim:
            self.mask = self.mask[:, used]
        for layer in _plain_layers(self.cache):
            layer.keys, layer.values = layer.keys[index], layer.values[index]
            if trim:
                layer.keys, layer.values = layer.keys[:, :, used], layer.values[:, :, used]


def continuous_greedy(
    model,
    token_lists: list[list[int]],
    *,
    batch_size: int,
    max_new_tokens: int,
    pad_token_id: int,
    end_token_ids: set[int],
    is_finished: Callable[[list[int]], bool] | None = None,
    on_done: Callable[[int], None] = lambda count: None,
) -> list[list[int]] | None:
    """Greedy continuations (token ids, without an end token) of ``token_lists``, in input order.

    A row ends at an end token, when ``is_finished(tokens)`` says so (stop strings), or after ``max_new_tokens``.
    Returns ``None`` when the model's cache is one this engine cannot reshape; ``on_done(n)`` reports progress.
    """
    device = next(model.parameters()).device
    keep_logits = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    cache_name = cache_keyword(model)
    prefix_length = shared_prefix_length(token_lists)
    generated: list[list[int]] = [[] for _ in token_lists]
    waiting = deque(sorted(range(len(token_lists)), key=lambda index: (len(token_lists[index]), index)))

    explicit_mask = _explicit_decode_mask(model, device)

    def forward(input_ids, attention_mask, position_ids, cache):
        if explicit_mask and input_ids.shape[1] == 1:
            attention_mask = attention_mask.bool()[:, None, None, :]
        output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       use_cache=True, **{cache_name: cache}, **keep_logits)
        return output.logits[:, -1].argmax(dim=-1), returned_cache(output)

    with torch.no_grad():
        prefix_key_values = []
        if prefix_length:
            ids = torch.tensor([token_lists[0][:prefix_length]], device=device)
            output = model(input_ids=ids, use_cache=True, **{cache_name: _empty_cache()}, **keep_logits)
            layers = _plain_layers(returned_cache(output))
            if layers is None:
                return None
            prefix_key_values = [(layer.keys, layer.values) for layer in layers]

        def prefill(rows: list[int]) -> _Batch | None:
            suffixes = [token_lists[row][prefix_length:] for row in rows]
            width = max(len(suffix) for suffix in suffixes)
            ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(rows), prefix_length + width), dtype=torch.long)
            mask[:, :prefix_length] = 1
            positions = torch.full((len(rows), width), prefix_length, dtype=torch.long)
            for line, suffix in enumerate(suffixes):
                ids[line, width - len(suffix):] = torch.tensor(suffix)
                mask[line, prefix_length + width - len(suffix):] = 1
                positions[line, width - len(suffix):] = torch.arange(prefix_length, prefix_length + len(suffix))
            cache = reserved_cache([(keys.expand(len(rows), -1, -1, -1), values.expand(len(rows), -1, -1, -1))
                                    for keys, values in prefix_key_values], width + max_new_tokens)
            ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
            first, cache = forward(ids, mask, positions, cache)
            if _plain_layers(cache) is None:
                return None
            lengths = torch.tensor([prefix_length + len(suffix) for suffix in suffixes], device=device)
            return _Batch(list(rows), cache, mask, lengths, first)

        batch: _Batch | None = None
        refill_below = max(1, int(batch_size * REFILL_SHARE))
        while waiting or batch:
            if waiting and (batch is None or len(batch) < refill_below):
                room = batch_size - (len(batch) if batch else 0)
                admitted = prefill([waiting.popleft() for _ in range(min(room, len(waiting)))])
                if admitted is None:
                    return None
                batch = admitted if batch is None else batch.merge(admitted, max_new_tokens)
                tokens = admitted.last
                rows = admitted.rows
                offset = len(batch) - len(admitted)
            else:
                step_mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch), 1))], dim=1)
                tokens, batch.cache = forward(batch.last[:, None], step_mask, batch.positions[:, None], batch.cache)
                batch.mask, batch.positions, batch.last = step_mask, batch.positions + 1, tokens
                rows, offset = batch.rows, 0
            kept = list(range(offset))
            finished = 0
            for line, (row, token) in enumerate(zip(rows, tokens.tolist())):
                if token not in end_token_ids:
                    generated[row].append(token)
                if (token in end_token_ids or len(generated[row]) >= max_new_tokens
                        or (is_finished is not None and is_finished(generated[row]))):
                    finished += 1
                else:
                    kept.append(offset + line)
            if finished:
                if len(kept) == 0:
                    batch = None
                else:
                    batch.keep(kept)
                on_done(finished)
    return generated
