"""Compressors on a tiny random Llama: the calibration walk, exact sparsity, N:M, and SparseGPT's updates."""


import pytest
import torch

from compressors import available_methods, compressible_layers, get_compressor, measure_sparsity, walk_blocks
from compressors.layerwise import decoder_blocks
from compressors.masks import target_count
from compressors.sparsegpt import sparsegpt_prune
from compressors.spec import UNSTRUCTURED, SpecError, build_spec
from compressors.statistics import Hessian, InputNorms, _panel_edges


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


def _walk_given_statistics(model, calibration, factory, batch_size=2, sequential="layer"):
    given = {}
    walk_blocks(model, calibration, statistic=factory, batch_size=batch_size, sequential=sequential,
                compress=lambda name, _layer, statistic: given.setdefault(name, statistic))
    return given


def test_layers_called_on_one_input_share_one_statistic_equal_to_their_own(model, calibration):
    given = _walk_given_statistics(model, calibration, lambda _name, layer: Hessian(layer.in_features))
    block = {name.split(".", 2)[2]: statistic for name, statistic in given.items() if name.startswith("layers.1.")}
    assert block["self_attn.q_proj"] is block["self_attn.k_proj"] is block["self_attn.v_proj"]
    assert block["mlp.gate_proj"] is block["mlp.up_proj"]
    assert len({id(statistic) for statistic in block.values()}) == 4  # qkv, o, gate+up, down
    for name, statistic in given.items():  # each shared Hessian is the layer's own, from a full forward
        inputs = forward_inputs(model, calibration, name)
        assert statistic.tokens == inputs.shape[0]
        assert torch.allclose(statistic.matrix(), 2 * inputs.T @ inputs / inputs.shape[0], rtol=1e-4, atol=1e-5)


def test_statistics_that_may_depend_on_the_layer_are_never_shared(model, calibration):
    given = _walk_given_statistics(model, calibration, lambda _name, _layer: Recorder())
    assert given["layers.0.self_attn.q_proj"] is not given["layers.0.self_attn.k_proj"]


def test_after_the_first_batch_the_block_stops_before_its_last_linear_layer(model, calibration):
    """Only the input of the last linear layer is needed: its matmul runs once in the observing pass."""
    down = dict(compressible_layers(model))["layers.0.mlp.down_proj"]
    calls = []
    handle = down.register_forward_hook(lambda *_: calls.append(1))
    given = _walk_given_statistics(model, calibration, lambda _name, layer: InputNorms(layer.in_features),
                                   batch_size=2)
    handle.remove()
    batches = -(-calibration.shape[0] // 2)
    assert len(calls) == 1 + batches  # first observing batch, then every batch of the propagating pass
    assert given["layers.0.mlp.down_proj"].tokens == calibration.numel()


@pytest.mark.parametrize("sequential", ["layer", "block"])
def test_the_last_block_is_observed_but_not_propagated(model, calibration, sequential):
    """Its compressed outputs would feed no block: its last layer runs only where the walk reads the plan or
    the call order (one batch), never in a pass over every batch."""
    blocks = decoder_blocks(model)
    downs = [dict(compressible_layers(model))[f"layers.{index}.mlp.down_proj"] for index in (0, len(blocks) - 1)]
    calls = [[], []]
    handles = [down.register_forward_hook(lambda *_, seen=seen: seen.append(1)) for down, seen in zip(downs, calls)]
    given = _walk_given_statistics(model, calibration, lambda _name, layer: InputNorms(layer.in_features),
                                   batch_size=2, sequential=sequential)
    for handle in handles:
        handle.remove()
    batches = -(-calibration.shape[0] // 2)
    assert [len(seen) for seen in calls] == [1 + batches, 1]
    assert given[f"layers.{len(blocks) - 1}.mlp.down_proj"].tokens == calibration.numel()


def test_a_block_whose_input_sharing_changes_between_batches_is_refused():
    from compressors.layerwise import _BlockInput, _observe_block

    class Fickle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            self.a(x)
            return self.b(x if self.calls == 1 else x.clone())

    block = Fickle()
    layers = {"a": block.a, "b": block.b}
    statistics = {name: Hessian(4) for name in layers}
    inputs = [_BlockInput(torch.randn(2, 4), {}) for _ in range(2)]
    with pytest.raises(RuntimeError, match="b shared its input with a on the first calibration batch"):
        _observe_block(block, layers, statistics, inputs)


@pytest.mark.parametrize("width", [64, 600, 1000])  # one panel; three; four of uneven width
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_hessian_is_the_full_symmetric_product(width, dtype):
    """Accumulated in upper panels over several batches, mirrored on read: every entry is the full product's.
    bfloat16 inputs are multiplied through bfloat16 units, which is exact: only the float32 sums reorder."""
    torch.manual_seed(0)
    batches = [torch.randn(2, 48, width).to(dtype) for _ in range(3)]
    before = torch.backends.mkldnn.matmul.fp32_precision
    hessian = Hessian(width)
    for batch in batches:
        hessian.add_batch(batch)
    rows = torch.cat([batch.reshape(-1, width) for batch in batches]).double()
    expected = 2 * rows.T @ rows / rows.shape[0]
    matrix = hessian.matrix()
    assert hessian.tokens == rows.shape[0]
    assert torch.allclose(matrix.double(), expected, rtol=1e-5, atol=1e-5)
    edges = _panel_edges(width)
    assert len(edges) - 1 == {64: 1, 600: 3, 1000: 4}[width]
    for start, end in zip(edges[1:], edges[2:]):  # below the diagonal blocks: mirrors, not recomputed
        assert torch.equal(matrix[start:end, :start], matrix[:start, start:end].T)
    assert torch.backends.mkldnn.matmul.fp32_precision == before
    assert matrix is not hessian.matrix()
