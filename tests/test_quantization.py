"""GPTQ, round-to-nearest and the pruning baselines: grid properties, identities, and error against RTN."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compressors import get_compressor, measure_sparsity
from compressors.gptq import gptq_quantize, reconstruction_error
from compressors.quantization import Grid, round_to_nearest
from compressors.sparsegpt import sparsegpt_prune
from compressors.spec import UNSTRUCTURED, SpecError, build_spec


def weights(rows: int, cols: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


def hessian_from(cols: int, seed: int, tokens: int = 256) -> torch.Tensor:
    inputs = torch.randn(tokens, cols, generator=torch.Generator().manual_seed(seed + 1))
    inputs[:, 0] *= 4  # uneven input scales, as in real activations
    return 2 * inputs.T @ inputs / tokens


grids = st.tuples(st.integers(2, 8), st.sampled_from([-1, 4, 8, 12]), st.booleans())


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 6), st.integers(4, 24), grids, st.integers(0, 1000), st.booleans())
def test_gptq_output_lies_on_each_columns_grid(rows, cols, grid, seed, act_order):
    bits, group_size, symmetric = grid
    layer = gptq_quantize(weights(rows, cols, seed), hessian_from(cols, seed), bits,
                          group_size=group_size, symmetric=symmetric, act_order=act_order)
    quantized, scale, zero = layer.dequantize(), layer.column_scale(), layer.column_zero()
    levels = quantized / scale + zero
    assert torch.allclose(levels, levels.round(), atol=1e-3)
    assert bool((levels.round() >= 0).all()) and bool((levels.round() <= 2**bits - 1).all())
    assert int(layer.levels.max()) <= 2**bits - 1 and torch.equal(zero, zero.round())
    # act-order permutes the groups, but every group still holds group_size columns (the last may be shorter)
    counts = torch.bincount(layer.g_idx)
    step = cols if group_size == -1 else group_size
    assert counts[:-1].tolist() == [step] * (len(counts) - 1) and 0 < counts[-1] <= step
    # one grid per group: within a group (in visiting order without act-order) the scale is shared
    if not act_order and group_size != -1:
        for start in range(0, cols, group_size):
            group_scale = scale[:, start : start + group_size]
            assert torch.equal(group_scale, group_scale[:, :1].expand_as(group_scale))


@settings(deadline=None, max_examples=30)
@given(st.integers(1, 6), st.integers(4, 24), grids, st.integers(0, 1000))
def test_with_an_identity_hessian_gptq_is_round_to_nearest(rows, cols, grid, seed):
    bits, group_size, symmetric = grid
    weight = weights(rows, cols, seed)
    quantized = gptq_quantize(weight, torch.eye(cols), bits, group_size=group_size, symmetric=symmetric).dequantize()
    assert torch.allclose(quantized, round_to_nearest(weight, bits, group_size, symmetric), atol=1e-6)


@settings(deadline=None, max_examples=30)
@given(st.integers(2, 8), st.integers(8, 40), st.floats(0.1, 0.9), st.integers(0, 1000))
def test_with_an_identity_hessian_sparsegpt_keeps_the_magnitude_mask(rows, cols, sparsity, seed):
    weight = weights(rows, cols, seed)
    pruned = sparsegpt_prune(weight, torch.eye(cols), sparsity, UNSTRUCTURED, block_size=cols)
    spec = build_spec(method="magnitude", sparsity=sparsity)
    expected = get_compressor("magnitude").prune_weight(weight, None, spec)
    assert torch.equal(pruned == 0, expected == 0)
    assert torch.allclose(pruned, expected)  # nothing to compensate with: survivors unchanged


def test_eight_bit_error_is_small_and_gptq_beats_rtn_on_calibration_outputs():
    weight, hessian = weights(64, 96, 0), hessian_from(96, 0)
    eight = gptq_quantize(weight, hessian, 8, group_size=32).dequantize()
    assert reconstruction_error(weight, eight, hessian) < 1e-4
    for bits in (3, 4):
        gptq = gptq_quantize(weight, hessian, bits, group_size=32).dequantize()
        rtn = round_to_nearest(weight, bits, 32, True)
        assert reconstruction_error(weight, gptq, hessian) < 0.9 * reconstruction_error(weight, rtn, hessian)


def test_a_group_size_that_does_not_divide_the_width_quantizes_a_shorter_last_group():
    weight = weights(3, 10, 1)
    layer = gptq_quantize(weight, torch.eye(10), 4, group_size=4)
    quantized, scale = layer.dequantize(), layer.column_scale()
    assert layer.g_idx.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert scale[:, 8].tolist() == scale[:, 9].tolist() and scale[:, 7].tolist() != scale[:, 8].tolist()
    last = weight[:, 8:]
    assert torch.allclose(quantized[:, 8:], Grid.fit(last, 4, True).quantize(last))


def test_keep_zeros_quantizes_only_the_survivors():
    weight = weights(8, 16, 2)
    weight[weight.abs() < 0.5] = 0
    quantized = gptq_quantize(weight, hessian_from(16, 2), 3, group_size=8, keep_zeros=True).dequantize()
    assert bool((quantized[weight == 0] == 0).all())


def test_quantization_spec_rules():
    assert build_spec(method="gptq").bits == 4
    assert build_spec(method="rtn", bits="8", group_size="-1").label() == "rtn 8-bit per-row sym"
    for options, message in [
        ({"method": "gptq", "bits": "9"}, "outside 2-8"),
        ({"method": "gptq", "bits": "four"}, "not a whole number"),
        ({"method": "gptq", "group_size": "0"}, "--kick-group-size 0"),
        ({"method": "gptq", "sparsity": "0.5"}, "quantizes and does not prune"),
        ({"method": "wanda", "bits": "4"}, "no --sparsity"),
    ]:
        with pytest.raises(SpecError, match=message):
            build_spec(**options)


@pytest.mark.parametrize("method", ["random", "global-magnitude"])
def test_baseline_pruners_reach_the_exact_sparsity(tiny_model_dir, method):
    from kick_checks.model.loading import load_model, resolve_model

    loaded = load_model(resolve_model(str(tiny_model_dir)), dtype="float32", device="cpu")
    before = {name: param.clone() for name, param in loaded.model.named_parameters()}
    get_compressor(method)(loaded.model, build_spec(method=method, sparsity=0.4), None)
    report = measure_sparsity(loaded.model)
    assert abs(report.zeros - round(report.numel * 0.4)) <= len(report.layers)  # exact per matrix / overall
    if method == "global-magnitude":
        assert report.zeros == round(report.numel * 0.4)
        assert len({round(layer.sparsity, 3) for layer in report.layers}) > 1  # layers lose different shares
    for name, param in loaded.model.named_parameters():
        kept = param != 0
        assert torch.equal(param[kept], before[name][kept])


def test_global_magnitude_refuses_n_m(tiny_loaded):
    with pytest.raises(SpecError, match="unstructured only"):
        get_compressor("global-magnitude")(tiny_loaded.model, build_spec(method="global-magnitude",
                                                                          pattern="2:4"), None)
