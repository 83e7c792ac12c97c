"""Compressors on a tiny random Llama: the calibration walk, exact sparsity, N:M, and SparseGPT's updates."""

import copy

import pytest
import torch

from compressors import available_methods, compressible_layers, get_compressor, measure_sparsity, walk_blocks
from compressors.masks import target_count
from compressors.sparsegpt import sparsegpt_prune
from compressors.statistics import Hessian, InputNorms
from kick_checks.calibration import calibration_tokens
from kick_checks.spec import UNSTRUCTURED, SpecError, build_spec

TEXT = " ".join(f"the {word} sat on a mat near {other}." for word in ("cat", "dog", "fox") for other in ("it", "us"))


@pytest.fixture
def model(tiny_loaded):
    return copy.deepcopy(tiny_loaded.model)


@pytest.fixture
def calibration(tiny_loaded):
    return calibration_tokens(tiny_loaded.tokenizer, samples=6, seqlen=16, seed=0, text=TEXT * 4)


class Recorder:
    def __init__(self):
        self.batches = []

    def add_batch(self, inputs):
        self.batches.append(inputs.detach().clone())

    def stacked(self):
        return torch.cat([batch.reshape(-1, batch.shape[-1]) for batch in self.batches])


def forward_inputs(model, calibration, layer_name):
    recorder = Recorder()
    layer = dict(compressible_layers(model))[layer_name]
    handle = layer.register_forward_hook(lambda _m, args, _o: recorder.add_batch(args[0]))
    with torch.no_grad():
        model(input_ids=calibration, use_cache=False)
    handle.remove()
    return recorder.stacked()


def test_walk_feeds_each_block_what_a_full_forward_would(model, calibration):
    recorders = {}

    def statistic(name, _layer):
        recorders[name] = Recorder()
        return recorders[name]

    walk_blocks(model, calibration, statistic=statistic, compress=lambda *_: None, batch_size=4)
    for name in ("layers.0.self_attn.q_proj", "layers.1.mlp.down_proj"):
        assert torch.allclose(recorders[name].stacked(), forward_inputs(model, calibration, name), atol=1e-5)


def test_later_blocks_see_outputs_of_compressed_earlier_blocks(model, calibration):
    recorders = {}

    def statistic(name, _layer):
        recorders[name] = Recorder()
        return recorders[name]

    def halve(name, layer, _statistic):
        if name.startswith("layers.0."):
            layer.weight.data.mul_(0.5)

    walk_blocks(model, calibration, statistic=statistic, compress=halve, batch_size=6)
    # After the walk, block 0 is compressed; a fresh forward must reproduce what block 1 saw during the walk.
    name = "layers.1.self_attn.q_proj"
    assert torch.allclose(recorders[name].stacked(), forward_inputs(model, calibration, name), atol=1e-5)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("sparsity", [0.3, 0.5])
def test_every_layer_reaches_the_exact_target(model, calibration, method, sparsity):
    spec = build_spec(method=method, sparsity=sparsity)
    get_compressor(method)(model, spec, calibration)
    report = measure_sparsity(model)
    for layer in report.layers:
        assert layer.zeros == target_count(layer.numel, sparsity), layer.name
    assert abs(report.sparsity - sparsity) < 1e-3
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern", ["2:4", "4:8"])
def test_n_m_holds_in_every_group_of_every_layer(model, calibration, method, pattern):
    spec = build_spec(method=method, pattern=pattern)
    get_compressor(method)(model, spec, calibration)
    n, m = spec.pattern.n, spec.pattern.m
    for name, layer in compressible_layers(model):
        groups = (layer.weight == 0).reshape(layer.out_features, -1, m).sum(dim=2)
        assert bool((groups == n).all()), name


def test_embeddings_and_head_are_not_pruned(model, calibration):
    embeddings_before = model.get_input_embeddings().weight.clone()
    head_before = model.get_output_embeddings().weight.clone()
    get_compressor("wanda")(model, build_spec(sparsity=0.5), calibration)
    assert torch.equal(model.get_input_embeddings().weight, embeddings_before)
    assert torch.equal(model.get_output_embeddings().weight, head_before)


def test_sparsegpt_reconstructs_a_layer_better_than_magnitude():
    generator = torch.Generator().manual_seed(0)
    # Correlated inputs with uneven feature scales, as real activations have.
    inputs = torch.randn(512, 64, generator=generator) @ torch.randn(64, 64, generator=generator)
    inputs *= torch.linspace(0.1, 3.0, 64)
    weight = torch.randn(32, 64, generator=generator)
    hessian = Hessian(64)
    hessian.add_batch(inputs)

    def error(pruned):
        return float(((inputs @ weight.T - inputs @ pruned.T) ** 2).mean())

    sparsegpt = sparsegpt_prune(weight, hessian.matrix(), 0.5, UNSTRUCTURED)
    magnitude = get_compressor("magnitude").prune_weight(weight, None, build_spec(sparsity=0.5))
    norms = InputNorms(64)
    norms.add_batch(inputs)
    wanda = get_compressor("wanda").prune_weight(weight, norms, build_spec(sparsity=0.5))
    assert error(sparsegpt) < 0.8 * error(wanda) < 0.8 * error(magnitude)


def test_registry_and_import_path():
    assert {"magnitude", "wanda", "sparsegpt"} <= set(available_methods())
    assert callable(get_compressor("compressors.magnitude:MagnitudePruner"))
    with pytest.raises(SpecError, match="unknown"):
        get_compressor("obs")
    with pytest.raises(SpecError, match="cannot be imported"):
        get_compressor("no_such_package.module:prune")
