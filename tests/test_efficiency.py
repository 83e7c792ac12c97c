"""Storage per format, measured on real weights, and throughput on the tiny model."""

import copy

import pytest
import torch

from compressors import get_compressor
from compressors.spec import build_spec
from kick_checks.experiments.efficiency import LayerFacts, layer_bytes, layer_facts, measure_storage, measure_throughput
from kick_checks.experiments.probe import probe_ids
from kick_checks.export.gptq_checkpoint import pack_layer


def test_dense_bitmap_and_csr_prices_state_their_overhead():
    layer = LayerFacts("x", rows=4, cols=8, nonzeros=8, follows_pattern=False, on_grid=False)
    sizes = layer_bytes(layer, build_spec(method="magnitude", sparsity=0.75))
    assert sizes == {"dense": 64, "bitmap": 4 + 16, "csr": 8 * (2 + 2) + 5 * 4}


def test_two_four_costs_two_bits_per_kept_value_only_where_the_pattern_holds():
    spec = build_spec(method="magnitude", pattern="2:4")
    held = LayerFacts("x", rows=2, cols=8, nonzeros=8, follows_pattern=True, on_grid=False)
    assert layer_bytes(held, spec)["n:m"] == 8 * 2 + 8 * 2 // 8  # 9 bits per dense weight: 16 bytes + 2
    broken = LayerFacts("x", rows=2, cols=8, nonzeros=8, follows_pattern=False, on_grid=False)
    assert "n:m" not in layer_bytes(broken, spec)


def test_pattern_is_checked_on_the_weights_and_a_broken_layer_drops_the_format(tiny_loaded):
    model = copy.deepcopy(tiny_loaded.model)
    spec = build_spec(method="magnitude", pattern="2:4")
    get_compressor("magnitude")(model, spec, None)
    storage = measure_storage(model, spec)
    assert storage["stored_as"] == "n:m" and storage["pattern_held"]
    assert storage["ratio"] == pytest.approx(9 / 16)
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[0, :4] = 1.0  # one group of four with no zero
    storage = measure_storage(model, spec)
    assert storage["pattern_held"] is False and "n:m" not in storage["formats"]


def test_gptq_price_equals_the_bytes_of_the_packed_checkpoint_tensors(tiny_loaded):
    """The formula is checked against what kick export actually writes for the same layers."""
    model = copy.deepcopy(tiny_loaded.model)
    spec = build_spec(method="rtn", bits=4, group_size=32)
    quantizer = get_compressor("rtn")
    quantizer.keep_integer_form = True
    quantizer(model, spec, None)
    facts = {layer.name: layer for layer in layer_facts(model, spec)}
    for name, integer_form in quantizer.quantized_layers.items():
        packed = pack_layer(integer_form, spec.bits, spec.symmetric)
        actual = sum(tensor.numel() * tensor.element_size() for tensor in packed.tensors(name).values())
        assert layer_bytes(facts[name], spec)["gptq"] == actual, name
    storage = measure_storage(model, spec)
    assert storage["stored_as"] == "gptq" and storage["on_grid"] and storage["ratio"] < 0.35


def test_weights_off_the_grid_are_not_priced_as_quantized(tiny_loaded):
    spec = build_spec(method="rtn", bits=4, group_size=32)
    storage = measure_storage(tiny_loaded.model, spec)  # dense weights: far more than 16 values per group
    assert storage["on_grid"] is False and "gptq" not in storage["formats"] and storage["stored_as"] == "dense"


def test_throughput_is_measured_on_the_probe(tiny_loaded):
    ids = probe_ids(tiny_loaded.tokenizer, prompts=2, tokens=16)
    assert ids.shape == (2, 16) and int(ids[0, 0]) == tiny_loaded.tokenizer.bos_token_id
    figures = measure_throughput(tiny_loaded.model, ids, new_tokens=3)
    assert figures["prefill_tokens_per_s"] > 0 and figures["decode_tokens_per_s"] > 0
    assert figures["device"] == "cpu" and figures["prompt_tokens"] == 16 and figures["new_tokens"] == 3
