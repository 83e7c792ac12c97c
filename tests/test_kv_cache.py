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


def test_a_joined_cache_stacks_batches_right_aligned_with_zero_columns_on_the_left():
    from kick_checks.engine.kv_cache import joined_cache

    generator = torch.Generator().manual_seed(1)
    shapes = [(2, 3, 5, 4), (1, 3, 8, 4), (3, 3, 2, 4)]  # [rows, heads, cached tokens, dim] per batch, 2 layers
    parts = [[(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)) for _ in range(2)]
             for shape in shapes]
    cache = joined_cache(parts, reserve=4)
    for number, layer in enumerate(cache.layers):
        for field, position in (("keys", 0), ("values", 1)):
            expected = torch.cat([torch.nn.functional.pad(batch[number][position], (0, 0, 8 - batch[number][position]
                                                                                    .shape[2], 0)) for batch in parts])
            assert torch.equal(getattr(layer, field), expected)
    layer = cache.layers[0]
    data = layer._stores["keys"].data
    layer.update(torch.ones(6, 3, 1, 4), torch.ones(6, 3, 1, 4))  # written into the reserved room, no new buffer
    assert layer._stores["keys"].data is data and layer.keys.shape == (6, 3, 9, 4)


def test_keeping_rows_moves_them_in_place_as_indexing_would():
    from kick_checks.engine.kv_cache import reserved_cache

    generator = torch.Generator().manual_seed(2)
    keys, values = torch.randn(5, 2, 6, 3, generator=generator), torch.randn(5, 2, 6, 3, generator=generator)
    cache = reserved_cache([(keys, values)], reserve=3)
    layer = cache.layers[0]
    layer.keep_rows([1, 3, 4])
    assert torch.equal(layer.keys, keys[[1, 3, 4]]) and torch.equal(layer.values, values[[1, 3, 4]])
    layer.update(torch.zeros(3, 2, 1, 3), torch.zeros(3, 2, 1, 3))
    assert torch.equal(layer.keys[:, :, :6], keys[[1, 3, 4]]) and layer.keys.shape == (3, 2, 7, 3)
