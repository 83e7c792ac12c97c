"""The layer-sequential walk: each layer calibrated on what the finished compressed model feeds it, in one pass."""

import copy

import torch

from compressors import compressible_layers, walk_blocks
from compressors.layerwise import _BlockInput, decoder_blocks, linear_layers
from compressors.masks import per_row_mask, target_count
from compressors.staged_block import plan_block
from compressors.statistics import InputNorms


class Recorder:
    inputs_only = False

    def __init__(self):
        self.batches = []

    def add_batch(self, inputs):
        self.batches.append(inputs.detach().clone())

    def stacked(self):
        return torch.cat([batch.reshape(-1, batch.shape[-1]) for batch in self.batches])


def _wanda_like(_name, layer, statistic):
    """Prune half of each row by |w| * ||x||: a compression whose result depends on the statistic."""
    with torch.no_grad():
        scores = layer.weight.abs() * statistic.norms()[None, :]
        layer.weight.masked_fill_(per_row_mask(scores, target_count(scores.numel(), 0.5)), 0.0)


def _inputs_in(model, calibration, name, batch_size):
    recorder = Recorder()
    handle = dict(compressible_layers(model))[name].register_forward_pre_hook(
        lambda _m, args: recorder.add_batch(args[0]))
    with torch.no_grad():
        for start in range(0, calibration.shape[0], batch_size):
            model(input_ids=calibration[start : start + batch_size], use_cache=False)
    handle.remove()
    return recorder.stacked()


def test_a_llama_block_is_planned_as_four_groups_with_two_tails(model, calibration):
    block = decoder_blocks(model)[0]
    embeddings = model.get_input_embeddings()(calibration[:2])
    positions = torch.arange(calibration.shape[1])[None]
    first = _BlockInput(embeddings, {"position_embeddings": model.model.rotary_emb(embeddings, positions),
                                     "position_ids": positions})
    plan = plan_block(block, linear_layers(block), first)
    assert plan.groups == (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), ("self_attn.o_proj",),
                           ("mlp.gate_proj", "mlp.up_proj"), ("mlp.down_proj",))
    assert plan.tails == {"self_attn": ("self_attn.o_proj", 2), "mlp": ("mlp.down_proj", None)}


def test_every_layer_is_calibrated_on_what_the_compressed_model_feeds_it(model, calibration):
    """Layer-sequential: a layer's statistic saw the inputs the finished compressed model gives it, because
    everything before it (earlier blocks, earlier layers of its block) was compressed before it was observed."""
    recorders = {}

    def recording_statistic(name, layer):
        recorder, norms = Recorder(), InputNorms(layer.in_features)
        recorders[name] = recorder

        class Tee:
            inputs_only = False

            def add_batch(self, inputs):
                recorder.add_batch(inputs)
                norms.add_batch(inputs)

            def norms(self):
                return norms.norms()

        return Tee()

    walk_blocks(model, calibration, statistic=recording_statistic, compress=_wanda_like, batch_size=2)
    assert len(recorders) == len(dict(compressible_layers(model)))
    for name, recorder in recorders.items():
        assert torch.allclose(recorder.stacked(), _inputs_in(model, calibration, name, 2), atol=1e-5), name
    layers = dict(compressible_layers(model))
    assert all(float((layers[name].weight == 0).float().mean()) == 0.5 for name in recorders)


def test_block_sequential_calibrates_on_the_dense_block(model, calibration):
    """The published order: within a block every layer is observed before any is compressed, so the output
    projection saw the dense attention, which the compressed model no longer computes."""
    recorders = {}

    def recording(name, _layer):
        recorders[name] = Recorder()
        return recorders[name]

    dense = copy.deepcopy(model)
    walk_blocks(model, calibration, statistic=recording, batch_size=2, sequential="block",
                compress=lambda name, layer, recorder: _wanda_like(name, layer, _norms_of(recorder)))
    name = "layers.0.self_attn.o_proj"
    assert torch.allclose(recorders[name].stacked(), _inputs_in(dense, calibration, name, 2), atol=1e-5)
    assert not torch.allclose(recorders[name].stacked(), _inputs_in(model, calibration, name, 2), atol=1e-3)


def _norms_of(recorder):
    norms = InputNorms(recorder.batches[0].shape[-1])
    for batch in recorder.batches:
        norms.add_batch(batch)
    return norms


def test_the_walk_leaves_the_model_as_a_plain_forward_sees_it(model, calibration):
    """Children are replaced only while a block is walked: afterwards every module runs its own forward again,
    including an instance-level forward that was there before (as accelerate's hooks install)."""
    attention = decoder_blocks(model)[0].self_attn
    calls = []
    original = attention.forward

    def wrapped(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    attention.forward = wrapped
    walk_blocks(model, calibration, statistic=lambda _n, layer: InputNorms(layer.in_features), batch_size=3,
                compress=_wanda_like)
    assert attention.forward is wrapped
    assert all("forward" not in module.__dict__ for module in decoder_blocks(model)[1].children())
    before = len(calls)
    with torch.no_grad():
        model(input_ids=calibration[:1], use_cache=False)
    assert len(calls) == before + 1


def test_a_block_that_calls_a_layer_twice_gets_no_plan_and_is_walked_in_two_passes():
    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = torch.nn.Linear(4, 4)
            self.out = torch.nn.Linear(4, 4)

        def forward(self, hidden_states):
            return self.out(self.shared(self.shared(hidden_states)))

    block = Twice()
    assert plan_block(block, linear_layers(block), _BlockInput(torch.randn(2, 3, 4), {})) is None
