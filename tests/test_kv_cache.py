"""The key-value cache goes in and comes out under the name the installed transformers uses."""

import inspect

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast

from kick_checks.engine.kv_cache import cache_keyword, returned_cache


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


def test_a_reserved_layer_writes_in_place_and_reads_like_concatenation():
    from kick_checks.engine.kv_cache import reserved_cache

    generator = torch.Generator().manual_seed(0)

    def states(length):
        return torch.randn(2, 3, length, 4, generator=generator), torch.randn(2, 3, length, 4, generator=generator)

    keys, values = states(5)
    cache = reserved_cache([(keys, values)], reserve=2)
    (layer,) = cache.layers
    start = layer._stores["keys"].data.data_ptr()
    for _ in range(2):
        new_keys, new_values = states(1)
        read_keys, read_values = cache.update(new_keys, new_values, 0)
        keys, values = torch.cat([keys, new_keys], dim=2), torch.cat([values, new_values], dim=2)
        assert torch.equal(read_keys, keys) and torch.equal(read_values, values)
    assert layer._stores["keys"].data.data_ptr() == start  # written into the room kept free, not copied
    assert cache.get_seq_length() == 7
    new_keys, new_values = states(3)  # more than the room left: the store grows, the content stays
    read_keys, _ = cache.update(new_keys, new_values, 0)
    assert torch.equal(read_keys, torch.cat([keys, new_keys], dim=2)) and cache.get_seq_length() == 10
    layer.keys, layer.values = layer.keys[[1]], layer.values[[1]]  # select a row, as a finished row leaves
    assert layer.keys.shape == (1, 3, 10, 4) and layer._stores["keys"].data.shape[2] == 12


def test_a_model_reads_a_reserved_cache_as_it_reads_its_own(tiny_loaded):
    from transformers import DynamicCache

    from kick_checks.engine.kv_cache import reserved_cache

    model, tokenizer = tiny_loaded.model, tiny_loaded.tokenizer
    keyword = cache_keyword(model)
    ids = torch.tensor([tokenizer("red blue cat dog the").input_ids])
    logits = {}
    with torch.no_grad():
        for name, cache in (("own", DynamicCache()), ("reserved", reserved_cache([], reserve=4))):
            model(input_ids=ids[:, :-2], use_cache=True, **{keyword: cache})
            model(input_ids=ids[:, -2:-1], use_cache=True, **{keyword: cache})
            logits[name] = model(input_ids=ids[:, -1:], use_cache=True, **{keyword: cache}).logits
    assert torch.equal(logits["own"], logits["reserved"])
