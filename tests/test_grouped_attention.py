"""Grouped attention for multi-token decoding steps: the sums of transformers' SDPA path, without the copies."""

from __future__ import annotations

import types

import pytest
import torch

from kick_checks.engine import continuous_batching as engine
from kick_checks.engine.grouped_attention import IMPLEMENTATION, grouped_attention, grouped_decoding


def _inputs(tokens: int, rows: int = 3, heads: int = 6, kv_heads: int = 2, columns: int = 11, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(rows, heads, tokens, 8, generator=generator)
    key = torch.randn(rows, kv_heads, columns, 8, generator=generator)
    value = torch.randn(rows, kv_heads, columns, 8, generator=generator)
    # each row attends to a different stretch (left padding, a hole), causally over its last `tokens` columns
    mask = torch.ones(rows, 1, tokens, columns, dtype=torch.bool)
    for row in range(rows):
        mask[row, :, :, :row] = False
        mask[row, :, :, 4 + row % 2] = False
    for token in range(tokens):
        mask[:, :, token, columns - tokens + token + 1 :] = False
    module = types.SimpleNamespace(num_key_value_groups=heads // kv_heads, is_causal=True, training=False)
    return module, query, key, value, mask


def _reference(query, key, value, mask, groups):
    """Plain attention with each key-value head repeated for its query heads, in float64."""
    key = key.double().repeat_interleave(groups, dim=1)
    value = value.double().repeat_interleave(groups, dim=1)
    scores = query.double() @ key.transpose(-1, -2) / query.shape[-1] ** 0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(dim=-1) @ value).transpose(1, 2)


@pytest.mark.parametrize("tokens", [2, 3, 5])
def test_grouped_attention_computes_masked_grouped_query_attention(tokens):
    module, query, key, value, mask = _inputs(tokens, seed=tokens)
    output, weights = grouped_attention(module, query, key, value, mask)
    assert weights is None
    assert output.shape == (3, tokens, 6, 8)
    torch.testing.assert_close(output.double(), _reference(query, key, value, mask, 3), rtol=1e-5, atol=1e-5)


def test_grouped_attention_agrees_with_transformers_sdpa_path():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    module, query, key, value, mask = _inputs(4, seed=7)
    ours, _ = grouped_attention(module, query, key, value, mask)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", ["one token", "long query", "no mask", "no groups"])
def test_other_calls_run_transformers_sdpa_path_unchanged(case, monkeypatch):
    from transformers.integrations import sdpa_attention

    module, query, key, value, mask = _inputs(1 if case == "one token" else 20 if case == "long query" else 3,
                                              columns=24)
    if case == "no mask":
        mask = None
    if case == "no groups":
        module.num_key_value_groups = 1
        key, value = key.repeat_interleave(3, dim=1), value.repeat_interleave(3, dim=1)
    calls = []
    original = sdpa_attention.sdpa_attention_forward

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward", counted)
    output, _ = grouped_attention(module, query, key, value, mask)
    assert calls == [1]
    assert torch.equal(output, original(module, query, key, value, mask)[0])


def test_grouped_decoding_switches_the_model_for_the_block_only(tiny_loaded):
    model = tiny_loaded.model
    assert model.config._attn_implementation == "sdpa"
    with grouped_decoding(model):
        assert model.config._attn_implementation == IMPLEMENTATION
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError), grouped_decoding(model):
        raise RuntimeError("a failing generation")
    assert model.config._attn_implementation == "sdpa"


def test_grouped_decoding_leaves_other_attention_alone(tiny_loaded, monkeypatch):
    model = tiny_loaded.model
    monkeypatch.setattr(model.config, "_attn_implementation_internal", "eager")
    with grouped_decoding(model):
        assert model.config._attn_implementation == "eager"


@pytest.fixture
def folded_calls(monkeypatch) -> list[int]:
    """The query length (query heads of a group x tokens) of every call that took the grouped path."""
    from kick_checks.engine import grouped_attention as module

    calls: list[int] = []
    original = module.folded_attention

    def counted(query, *args, **kwargs):
        calls.append(query.shape[2])
        return original(query, *args, **kwargs)

    monkeypatch.setattr(module, "folded_attention", counted)
    return calls


def test_draft_steps_take_the_grouped_path_and_keep_the_answers(tiny_loaded, folded_calls):
    """Decoding with drafts feeds several tokens a row; those steps run grouped, the answers stay plain greedy."""
    model = tiny_loaded.model
    generator = torch.Generator().manual_seed(3)
    cycle = torch.randint(5, model.config.vocab_size, (4,), generator=generator).tolist()
    token_lists = [(cycle * 6)[: 14 + row] for row in range(4)]
    options = dict(batch_size=4, max_new_tokens=10, pad_token_id=0, end_token_ids=set())
    plain = engine.continuous_greedy(model, token_lists, **options)
    prefill_calls = len(folded_calls)  # the rows' short suffixes after their shared prefix
    folded_calls.clear()
    assert engine.continuous_greedy(model, token_lists, draft_tokens=3, **options) == plain
    assert len(folded_calls) > prefill_calls  # the steps that fed drafts ran grouped too


def _scored_both_ways(model, tokenizer, monkeypatch):
    """Option log-likelihoods with the grouped path, then with transformers' path alone."""
    import contextlib

    from kick_checks.engine import likelihood
    from kick_checks.engine.likelihood import Continuation, continuation_likelihoods

    requests = [Continuation(context, option) for context in (" the cat sat on the mat and then", " a dog ran")
                for option in (" a mat", " the old red mat near the door", " it")]
    grouped = continuation_likelihoods(model, tokenizer, "A prefix of a few words:", requests, batch_size=4)
    monkeypatch.setattr(likelihood, "grouped_decoding", lambda model: contextlib.nullcontext())
    plain = continuation_likelihoods(model, tokenizer, "A prefix of a few words:", requests, batch_size=4)
    return grouped, plain


def _tiny_family(family: str, vocab_size: int):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    shape = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, attn_implementation="sdpa")
    if family == "gemma3":
        return Gemma3ForCausalLM(Gemma3TextConfig(num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
                                                  head_dim=16, sliding_window=8, **shape)).eval()
    return Qwen2ForCausalLM(Qwen2Config(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                                        **shape)).eval()


@pytest.mark.parametrize("family", ["llama", "gemma3", "qwen2"])
def test_option_scoring_takes_the_grouped_path_and_keeps_the_likelihoods(family, tiny_loaded, folded_calls,
                                                                         monkeypatch):
    """Answer options run a few tokens a row after their context's cache: grouped, with the same log-likelihoods.
    Also on sliding-window layers (Gemma 3: their mask does the windowing) and four query heads a group (Qwen2)."""
    tokenizer = tiny_loaded.tokenizer
    model = tiny_loaded.model if family == "llama" else _tiny_family(family, len(tokenizer))
    grouped, plain = _scored_both_ways(model, tokenizer, monkeypatch)
    assert folded_calls
    assert [option.tokens for option in grouped] == [option.tokens for option in plain]
    for ours, theirs in zip(grouped, plain):
        assert ours.logprob == pytest.approx(theirs.logprob, abs=1e-4)


def test_decoding_steps_keep_their_ready_mask_while_the_model_is_switched(tiny_loaded):
    from kick_checks.engine.continuous_batching import _explicit_decode_mask

    model = tiny_loaded.model
    assert _explicit_decode_mask(model, torch.device("cpu"))
    with grouped_decoding(model):
        assert _explicit_decode_mask(model, torch.device("cpu"))
