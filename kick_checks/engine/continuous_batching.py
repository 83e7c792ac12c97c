"""Greedy decoding with continuous batching over a shared prompt prefix.

Two observations about evaluating a small model on a CPU shape this engine:

- A decoding step costs far less per row with more rows (every weight is read once a step: on the default model
  in float32 at 500 cached tokens, 105 ms for 16 rows, 150 ms for 32). A static batch keeps stepping until its
  longest answer ends, so one long answer makes the short ones wait. Here a finished row leaves the batch at once and,
  once half the batch is free, waiting prompts are prefilled and join it, so every step does useful work for up to
  ``batch_size`` rows.
- The prompts of a task share their instruction and few-shot examples. That common token prefix is run through the
  model once; every prompt's prefill starts from its key-value cache and computes only its own tokens. Prompts of
  several prefixes (knowledge recovery gives each input one of a pool of prompts) are told apart by a group
  label per prompt: each group's prefix runs once, and rows of every group decode in one batch.
- Prefill is compute-bound: a padded position costs what a real one does, and prompts of one batch can differ
  in length several times over (instruction following's second turns: 122 to 344 tokens). The rows admitted at
  once are prefilled in chunks of similar length (padding at most :data:`PAD_SHARE` of the chunk's own tokens,
  at most :data:`PREFILL_TOKENS` positions a pass), then join the batch together.

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

from kick_checks.engine.decode_batch import HOLE_SHARE, DecodeBatch, plain_layers
from kick_checks.engine.grouped_attention import IMPLEMENTATION as GROUPED_IMPLEMENTATION
from kick_checks.engine.grouped_attention import grouped_decoding
from kick_checks.engine.kv_cache import cache_keyword, reserved_cache, returned_cache
from kick_checks.engine.prompt_lookup import PromptLookup, accepted
from kick_checks.errors import NonFiniteOutput

REFILL_SHARE = 0.5
PAD_SHARE = 0.125
"""A prefill chunk takes another row while its padding stays within this share of its rows' own tokens."""
PREFILL_TOKENS = 4096
"""Positions (rows x width) of one prefill pass: larger passes ran no faster on a CPU (float32 900 tokens/s at
any size; bfloat16 3,000 at 8 x 400, 2,100 at 32 x 400) and hold larger activations."""
ENGINE = "continuous-batching-3"
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
    given as ``[rows, 1, 1, columns]`` booleans is used as it is, so every step takes the fast path. Our grouped
    attention (:mod:`kick_checks.engine.grouped_attention`) hands one-token steps to that same SDPA path, so it
    counts as SDPA here, whether or not the model is switched to it yet.
    """
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return device.type == "cpu" and implementation in ("sdpa", GROUPED_IMPLEMENTATION)


def prefill_chunks(lengths: list[int]) -> list[list[int]]:
    """Positions into ``lengths`` (the rows' own prompt tokens), in chunks to prefill together: by increasing
    length, a chunk takes the next row while its padded size (rows x its longest) stays within
    ``1 + PAD_SHARE`` times its rows' own tokens and within :data:`PREFILL_TOKENS`."""
    chunks: list[list[int]] = []
    chunk: list[int] = []
    own = 0
    for position in sorted(range(len(lengths)), key=lambda index: (lengths[index], index)):
        padded = lengths[position] * (len(chunk) + 1)
        if chunk and (padded > (1 + PAD_SHARE) * (own + lengths[position]) or padded > PREFILL_TOKENS):
            chunks.append(chunk)
            chunk, own = [], 0
        chunk.append(position)
        own += lengths[position]
    if chunk:
        chunks.append(chunk)
    return chunks


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
    draft_tokens: int = 0,
    groups: list[int] | None = None,
) -> list[list[int]] | None:
    """Greedy continuations (token ids, without an end token) of ``token_lists``, in input order.

    A row ends at an end token, when ``is_finished(tokens)`` says so (stop strings), or after ``max_new_tokens``.
    With ``draft_tokens``, each step also feeds up to that many prompt-lookup draft tokens per row
    (:mod:`kick_checks.engine.prompt_lookup`) and keeps those the model's greedy choices confirm. ``groups``
    labels each prompt with the group whose shared prefix it starts with (default: one group); only the prefix
    a group's prompts share runs once, so a label never changes an answer, only how much is computed.
    Returns ``None`` when the model's cache is one this engine cannot reshape; ``on_done(n)`` reports progress.
    """
    device = next(model.parameters()).device
    keep_logits = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    cache_name = cache_keyword(model)
    labels = list(groups) if groups is not None else [0] * len(token_lists)
    if len(labels) != len(token_lists):
        raise ValueError(f"{len(labels)} group labels for {len(token_lists)} prompts")
    members: dict[int, list[int]] = {}  # rows of each group, groups in order of first appearance
    for row, label in enumerate(labels):
        members.setdefault(label, []).append(row)
    rank = {label: number for number, label in enumerate(members)}
    prefix_lengths = {label: shared_prefix_length([token_lists[row] for row in rows])
                      for label, rows in members.items()}
    unadmitted = {label: len(rows) for label, rows in members.items()}
    generated: list[list[int]] = [[] for _ in token_lists]
    waiting = deque(sorted(range(len(token_lists)),
                           key=lambda index: (rank[labels[index]], len(token_lists[index]), index)))

    explicit_mask = _explicit_decode_mask(model, device)

    def forward(input_ids, attention_mask, position_ids, cache, rows: list[int], choices: int = 1):
        """The greedy choice after each of the last ``choices`` positions (``[rows]`` for one), and the cache.
        Non-finite logits stop the run (:class:`NonFiniteOutput`, naming the first of ``rows`` that had them)."""
        if explicit_mask and input_ids.shape[1] == 1:
            attention_mask = attention_mask.bool()[:, None, None, :]
        keep = {"logits_to_keep": choices} if keep_logits else {}
        output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       use_cache=True, **{cache_name: cache}, **keep)
        last = output.logits[:, -choices:]
        finite = torch.isfinite(last).flatten(1).all(dim=1)
        if not bool(finite.all()):
            raise NonFiniteOutput(f"the logits of prompt {rows[int((~finite).nonzero()[0])] + 1} of "
                                  f"{len(token_lists)} are not finite", index=rows[int((~finite).nonzero()[0])])
        picked = last.argmax(dim=-1)
        return (picked[:, -1] if choices == 1 else picked), returned_cache(output)

    lookups: dict[int, PromptLookup] = {}

    def draft_step(batch: DecodeBatch) -> list[list[int]] | None:
        """One step feeding each row's next token and its draft; each row's new tokens, or ``None`` when no row
        has a draft (then a plain step runs)."""
        drafts = [lookups[row].draft(draft_tokens) for row in batch.rows]
        width = 1 + max(len(draft) for draft in drafts)
        if width == 1:
            return None
        ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
        fed = torch.zeros((len(batch), width), dtype=batch.mask.dtype)
        ids[:, 0], fed[:, 0] = batch.last.cpu(), 1
        for line, draft in enumerate(drafts):
            if draft:
                ids[line, 1 : 1 + len(draft)] = torch.tensor(draft)
                fed[line, 1 : 1 + len(draft)] = 1
        ids, fed = ids.to(device), fed.to(device)
        positions = batch.positions[:, None] + torch.arange(width, device=device)
        choices, batch.cache = forward(ids, torch.cat([batch.mask, fed], dim=1), positions, batch.cache,
                                       batch.rows, width)
        choices = choices.tolist()
        counts = [accepted(draft, row_choices) for draft, row_choices in zip(drafts, choices)]
        kept = torch.zeros_like(fed)
        for line, count in enumerate(counts):
            kept[line, : 1 + count] = 1
        batch.mask = torch.cat([batch.mask, kept], dim=1)
        batch.positions = batch.positions + 1 + torch.tensor(counts, device=device)
        new = [row_choices[: count + 1] for row_choices, count in zip(choices, counts)]
        batch.last = torch.tensor([tokens[-1] for tokens in new], device=device)
        holes = batch.mask.shape[1] - int(batch.mask.sum(dim=1).max())
        if holes > HOLE_SHARE * batch.mask.shape[1]:
            batch.compact()
        return new

    # inference mode, not just no_grad: tensors skip version counting (decoding steps about 3% faster on a CPU)
    with torch.inference_mode(), grouped_decoding(model):
        prefixes: dict[int, list] = {}  # a group's prefix keys and values, from its first admission to its last

        def prefix_of(label: int) -> list | None:
            if label not in prefixes:
                length = prefix_lengths[label]
                prefixes[label] = []
                if length:
                    ids = torch.tensor([token_lists[members[label][0]][:length]], device=device)
                    output = model(input_ids=ids, use_cache=True, **{cache_name: _empty_cache()}, **keep_logits)
                    layers = plain_layers(returned_cache(output))
                    if layers is None:
                        return None
                    prefixes[label] = [(layer.keys, layer.values) for layer in layers]
            return prefixes[label]

        def prefill(rows: list[int]) -> DecodeBatch | None:
            """Rows of one group, run from their group's prefix cache."""
            label = labels[rows[0]]
            prefix_key_values = prefix_of(label)
            if prefix_key_values is None:
                return None
            prefix_length = prefix_lengths[label]
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
                                    for keys, values in prefix_key_values], width + reserve)
            ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
            first, cache = forward(ids, mask, positions, cache, rows)
            if plain_layers(cache) is None:
                return None
            lengths = torch.tensor([prefix_length + len(suffix) for suffix in suffixes], device=device)
            return DecodeBatch(list(rows), cache, mask, lengths, first)

        batch: DecodeBatch | None = None
        reserve = max_new_tokens * (1 + draft_tokens)  # columns a row may still add: rejected drafts too
        refill_below = max(1, int(batch_size * REFILL_SHARE))
        def admit(rows: list[int]) -> list[DecodeBatch] | None:
            """``rows`` prefilled chunk by chunk (one group and similar lengths each)."""
            by_group: dict[int, list[int]] = {}
            for row in rows:
                by_group.setdefault(labels[row], []).append(row)
            chunks = []
            for label, group_rows in by_group.items():
                lengths = [len(token_lists[row]) - prefix_lengths[label] for row in group_rows]
                for positions in prefill_chunks(lengths):
                    chunk = prefill([group_rows[position] for position in positions])
                    if chunk is None:
                        return None
                    chunks.append(chunk)
                unadmitted[label] -= len(group_rows)
                if not unadmitted[label]:
                    prefixes.pop(label, None)
            return chunks

        while waiting or batch:
            if waiting and (batch is None or len(batch) < refill_below):
                room = batch_size - (len(batch) if batch else 0)
                chunks = admit([waiting.popleft() for _ in range(min(room, len(waiting)))])
                if chunks is None:
                    return None
                offset = len(batch) if batch else 0
                batch = DecodeBatch.merged(chunks if batch is None else [batch, *chunks], reserve)
                rows = batch.rows[offset:]
                new = [[token] for token in batch.last[offset:].tolist()]
                if draft_tokens:
                    lookups.update((row, PromptLookup(token_lists[row])) for row in rows)
            else:
                new = draft_step(batch) if draft_tokens else None
                if new is None:
                    step_mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch), 1))], dim=1)
                    tokens, batch.cache = forward(batch.last[:, None], step_mask, batch.positions[:, None],
                                                  batch.cache, batch.rows)
                    batch.mask, batch.positions, batch.last = step_mask, batch.positions + 1, tokens
                    new = [[token] for token in tokens.tolist()]
                rows, offset = batch.rows, 0
            kept = list(range(offset))
            finished = 0
            for line, (row, tokens) in enumerate(zip(rows, new)):
                done = False
                for token in tokens:
                    if token not in end_token_ids:
                        generated[row].append(token)
                    done = (token in end_token_ids or len(generated[row]) >= max_new_tokens
                            or (is_finished is not None and is_finished(generated[row])))
                    if done:
                        break
                if done:
                    finished += 1
                    lookups.pop(row, None)
                else:
                    kept.append(offset + line)
                    if draft_tokens:
                        lookups[row].extend(tokens)
            if finished:
                if len(kept) == 0:
                    batch = None
                else:
                    batch.keep(kept)
                on_done(finished)
    return generated
