"""Attention for steps that feed a few tokens a row after a cache, without copying the cached keys and values.

A model with grouped-query attention keeps fewer key-value heads than query heads (the default model: 3 for 9).
For a step of one token a row, transformers folds each group's query heads into the query positions of their
key-value head, so the cache is read once. For a step of several tokens a row with a mask, it first repeats every
cached key and value for each query head of its group. Two kinds of step are like that: decoding with
prompt-lookup drafts (the row's next token and its draft) and scoring answer options after their question's
cache. On the default model in float32, 32 rows at 460 cached tokens, the copy took 432 of a 2-token step's 750 ms.

:func:`grouped_attention` folds the query heads for those steps too: the queries of one key-value head become
``groups x tokens`` query positions, each with its token's mask row, and one SDPA call reads the cache once (the
same 2-token step: 202 ms). It computes the same sums as transformers' path: only passes of at most
:data:`MOST_QUERY_TOKENS` tokens a row take it, so long prefill passes keep transformers' arithmetic, and the
shipped dense baselines (whose short prompt suffixes and answer options do take it) re-record identically, item
for item. :func:`grouped_decoding` switches a CPU model to it while the engine runs; every other case runs
transformers' SDPA attention unchanged.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import torch

IMPLEMENTATION = "kick_grouped_sdpa"
"""The name this attention is registered under with transformers' attention and mask interfaces."""
MOST_QUERY_TOKENS = 16
"""Steps of at most this many tokens a row take the grouped path; longer ones (prefill) keep transformers' path."""


def grouped_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                      is_causal=None, **kwargs):
    """transformers' attention-function signature: ``query`` ``[batch, heads, tokens, dim]``, ``key`` and
    ``value`` ``[batch, kv_heads, columns, dim]``, a 4-D ``attention_mask`` ``[batch, 1, tokens, columns]``;
    returns ``([batch, tokens, heads, dim], None)``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, tokens, dim = query.shape
    if (groups == 1 or tokens == 1 or tokens > MOST_QUERY_TOKENS or attention_mask is None
            or attention_mask.dim() != 4 or attention_mask.shape[1] != 1 or kwargs.get("position_bias") is not None
            or kwargs.get("softcap") is not None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    return folded_attention(query, key, value, attention_mask, groups, dropout=dropout, scaling=scaling), None


def folded_attention(query, key, value, attention_mask, groups: int, dropout: float = 0.0, scaling=None):
    """One SDPA call over each key-value head with its ``groups`` query heads folded into the query positions;
    returns ``[batch, tokens, heads, dim]``."""
    batch, heads, tokens, dim = query.shape
    folded = query.reshape(batch, heads // groups, groups * tokens, dim)
    rows, _, _, columns = attention_mask.shape
    mask = attention_mask[:, :, None].expand(rows, 1, groups, tokens, columns).reshape(rows, 1, groups * tokens,
                                                                                       columns)
    output = torch.nn.functional.scaled_dot_product_attention(folded, key, value, attn_mask=mask, dropout_p=dropout,
                                                              scale=scaling)
    return output.reshape(batch, heads, tokens, dim).transpose(1, 2).contiguous()


@lru_cache(maxsize=1)
def _registered() -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(IMPLEMENTATION, grouped_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)
    return IMPLEMENTATION


def _switchable(model) -> bool:
    """A CPU model of one config (no sub-configs) with SDPA attention and grouped key-value heads."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "sub_configs", None):
        return False
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    try:
        if next(model.parameters()).device.type != "cpu":
            return False
    except StopIteration:
        return False
    return any(getattr(module, "num_key_value_groups", 1) > 1 for module in model.modules())


@contextmanager
def grouped_decoding(model):
    """Run ``model``'s attention through :func:`grouped_attention` inside the block (CPU, SDPA, grouped heads),
    and put its own implementation back afterwards, also on an error. Elsewhere a no-op."""
    if not _switchable(model):
        yield
        return
    config = model.config
    config._attn_implementation = _registered()
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"
