"""The key-value cache goes in and comes out under the name the installed transformers uses."""

import inspect

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast

from kick_checks.kv_cache import cache_keyword, returned_cache


class OldStyle(torch.nn.Module):
    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None):
        return input_ids


class NewStyle(torch.nn.Module):
    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=None):
        return input_ids


def test_the_keyword_follows_the_forward_signature():
    assert cache_keyword(OldStyle()) == "past_key_values"
    assert cache_keyword(NewStyle()) == "cache"


def test_the_installed_transformers_agrees_with_itself(tiny_loaded):
    """What we pass is a parameter of the model's forward, and what it returns is read back."""
    model, tokenizer = tiny_loaded.model, tiny_loaded.tokenizer
    keyword = cache_keyword(model)
    assert keyword in inspect.signature(type(model).forward).parameters
    ids = torch.tensor([tokenizer("red blue cat").input_ids])
    with torch.no_grad():
        first = model(input_ids=ids[:, :-1], use_cache=True)
        cache = returned_cache(first)
        assert cache is not None and cache.get_seq_length() == ids.shape[1] - 1
        step = model(input_ids=ids[:, -1:], use_cache=True, **{keyword: cache})
        whole = model(input_ids=ids)
    assert torch.allclose(step.logits[0, -1], whole.logits[0, -1], atol=1e-5)


def test_an_output_without_a_cache_gives_none():
    assert returned_cache(CausalLMOutputWithPast(logits=torch.zeros(1, 1, 2))) is None
