"""Reference parity: our Wanda, SparseGPT and GPTQ equal re-derivations written from the papers.

The references below are deliberately naive and share nothing with ``compressors`` (no helper, no statistic, no
mask function): float64, one column at a time, statistics computed from the raw calibration inputs, and the
optimal-brain-surgeon step written as in the papers, with the inverse Hessian of the columns not yet done
(Gaussian elimination of one column after another, GPTQ eq. 3) instead of the Cholesky factor the fast code
uses. The lazy batch updates of the fast code are a reordering of the same sums, so the per-column updates here
apply at once to every later column; the blocks only decide *when* a choice is made (SparseGPT's adaptive mask,
GPTQ's group grids). Where a paper leaves a choice open, the references follow the published code (inputs that
never fire are zeroed, damping is 1% of the mean diagonal, act-order sorts by the Hessian diagonal, a group's
grid is fitted on the weights as they stood when the block holding its first column began) and, in one place,
our documented rule: SparseGPT removes exactly round(s x numel) weights (the published code's ``<=`` threshold
removes one more per block), so each block removes its share of that count. A weight exactly half way between
two GPTQ levels may round either way under float error; there alone the reference takes the level ours took.

Sizes are tiny and the blocks short (16 columns over 40-64), so that block boundaries, groups that straddle
them and a shorter last group are all exercised. The last test runs each compressor through the block walk of a
tiny random Llama in ``--kick-sequential block`` order and checks every layer against the reference given the
inputs the walk fed it, captured with forward hooks.
"""

from __future__ import annotations

import copy

import pytest
import torch

from compressors import get_compressor
from compressors.gptq import gptq_quantize
from compressors.layerwise import compressible_layers
from compressors.sparsegpt import sparsegpt_prune
from compressors.spec import build_spec, parse_pattern
from compressors.statistics import Hessian, InputNorms
from kick_checks.model.calibration import calibration_tokens

DAMPING = 0.01


# ----------------------------------------------------------------------------------------------------------------
# The references


def reference_hessian(inputs: torch.Tensor) -> torch.Tensor:
    """``H = 2 X Xᵀ / tokens`` of the layer-wise squared error ``||W X - Ŵ X||²``, from ``[tokens, cols]`` inputs."""
    inputs = inputs.double()
    return 2 * inputs.T @ inputs / inputs.shape[0]


def reference_wanda_mask(weight: torch.Tensor, inputs: torch.Tensor, sparsity: float, n_m=None) -> torch.Tensor:
    """Wanda (Sun et al. 2023): score ``|W_ij| · ||X_j||₂`` over all calibration tokens, compared within each
    output row. N:M: the N lowest of every M consecutive inputs of a row. Unstructured: ``round(s · numel)``
    weights in all, spread evenly over the rows, the remainder one each to the rows whose next weight scores
    lowest. ``True`` = pruned."""
    norms = inputs.double().pow(2).sum(dim=0).sqrt()
    scores = weight.double().abs() * norms[None, :]
    rows, cols = scores.shape
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    if n_m is not None:
        n, m = n_m
        for row in range(rows):
            for start in range(0, cols, m):
                group = scores[row, start : start + m].tolist()
                for column in sorted(range(m), key=lambda c: group[c])[:n]:
                    mask[row, start + column] = True
        return mask
    total = int(round(rows * cols * sparsity))
    base, extra = divmod(total, rows)
    orders = [sorted(range(cols), key=lambda c, r=row: scores[r, c].item()) for row in range(rows)]
    for row in range(rows):
        mask[row, orders[row][:base]] = True
    next_scores = [scores[row, orders[row][base]].item() for row in range(rows)]
    for row in sorted(range(rows), key=lambda r: next_scores[r])[:extra]:
        mask[row, orders[row][base]] = True
    return mask


def _prepare(weight: torch.Tensor, hessian: torch.Tensor):
    """Inputs that never fire carry no information: their weights go, their Hessian row becomes the identity's."""
    weight, hessian = weight.double().clone(), hessian.double().clone()
    dead = torch.diagonal(hessian) == 0
    hessian[dead, dead] = 1.0
    weight[:, dead] = 0.0
    return weight, hessian


def _damped(hessian: torch.Tensor) -> torch.Tensor:
    return hessian + DAMPING * torch.diagonal(hessian).mean() * torch.eye(hessian.shape[0], dtype=hessian.dtype)


def _obs_step(weight: torch.Tensor, inverse: torch.Tensor, column: int, new_value: torch.Tensor) -> None:
    """Fix ``column`` of ``weight`` at ``new_value`` and move the later columns to the least-squares optimum for
    the rest (optimal brain surgeon): ``δ = -(w - ŵ) / [H_F⁻¹]_cc · [H_F⁻¹]_c,:``, where ``H_F⁻¹`` (``inverse``)
    is the inverse Hessian of the columns not yet fixed. Then eliminate the column from ``inverse``, which leaves
    the inverse Hessian of the remaining columns (GPTQ, eq. 3)."""
    error = weight[:, column] - new_value
    pivot = inverse[column, column]
    weight[:, column + 1 :] -= torch.outer(error / pivot, inverse[column, column + 1 :])
    weight[:, column] = new_value
    inverse -= torch.outer(inverse[:, column], inverse[column, :]) / pivot


def _remaining_diagonal(hessian: torch.Tensor) -> torch.Tensor:
    """``[H_F⁻¹]_cc`` for every column ``c``, ``F`` = the columns from ``c`` on: the inverse Hessian's diagonal
    entry when the sweep reaches ``c``, read off by eliminating the columns before it one by one."""
    inverse = torch.linalg.inv(hessian)
    diagonal = torch.empty(hessian.shape[0], dtype=torch.float64)
    for column in range(hessian.shape[0]):
        diagonal[column] = inverse[column, column]
        inverse -= torch.outer(inverse[:, column], inverse[column, :]) / inverse[column, column]
    return diagonal


def reference_sparsegpt(weight: torch.Tensor, hessian: torch.Tensor, sparsity: float, n_m=None,
                        block: int = 16) -> torch.Tensor:
    """SparseGPT (Frantar & Alistarh 2023): columns left to right; a weight's saliency is ``w² / [H_F⁻¹]_cc``
    with ``F`` the columns from its own on (what the squared diagonal of the Cholesky factor of ``H⁻¹`` holds).
    Unstructured: at the start of each block of ``block`` columns, prune the block's share of ``round(s · numel)``
    lowest saliencies of the whole block. N:M: when the sweep reaches a group of M columns, prune each row's N
    lowest saliencies on the weights as updated so far."""
    weight, hessian = _prepare(weight, hessian)
    rows, cols = weight.shape
    hessian = _damped(hessian)
    own_diagonal = _remaining_diagonal(hessian)
    inverse = torch.linalg.inv(hessian)
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    for start in range(0, cols, block):
        end = min(start + block, cols)
        if n_m is None:
            count = int(round(rows * end * sparsity)) - int(round(rows * start * sparsity))
            saliency = (weight[:, start:end].pow(2) / own_diagonal[None, start:end]).reshape(-1)
            for flat in sorted(range(saliency.numel()), key=lambda i: saliency[i].item())[:count]:
                mask[flat // (end - start), start + flat % (end - start)] = True
        for column in range(start, end):
            if n_m is not None and (column - start) % n_m[1] == 0:
                n, m = n_m
                saliency = weight[:, column : column + m].pow(2) / own_diagonal[None, column : column + m]
                for row in range(rows):
                    for offset in sorted(range(m), key=lambda c, r=row: saliency[r, c].item())[:n]:
                        mask[row, column + offset] = True
            kept = weight[:, column].masked_fill(mask[:, column], 0.0)
            _obs_step(weight, inverse, column, kept)
    return weight


def reference_grid(weights: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTQ's min/max grid per row (always spanning 0): symmetric ``±max|w|`` with the zero point in the middle,
    asymmetric ``min..max`` with an integer zero point; a row of zeros gets ``-1..1``. Returns scale, zero."""
    max_level = 2**bits - 1
    scales, zeros = [], []
    for row in weights.tolist():
        low, high = min(min(row), 0.0), max(max(row), 0.0)
        if symmetric:
            high = max(abs(low), high)
            low = -high
        if low == high:
            low, high = -1.0, 1.0
        scale = (high - low) / max_level
        scales.append(scale)
        zeros.append((max_level + 1) / 2 if symmetric else float(round(-low / scale)))
    return torch.tensor(scales, dtype=torch.float64), torch.tensor(zeros, dtype=torch.float64)


def _round_to_level(ratio: torch.Tensor, zero: torch.Tensor, max_level: int, ties_as: torch.Tensor | None,
                    scale: torch.Tensor) -> torch.Tensor:
    """``clamp(round(w / scale) + zero)``. A weight half way between two levels (to float error) may go either
    way: in a symmetric grid a group's largest negative weight sits exactly there (``-max_level / 2`` steps),
    and when the grid was fitted on that very value, float32 decides. There, and only there, ``ties_as`` (the
    value the code under test chose, if given) picks which of the two levels."""
    levels = torch.round(ratio)
    if ties_as is not None:
        tie = ((ratio - ratio.floor()) - 0.5).abs() < 1e-5
        for row in torch.nonzero(tie).flatten().tolist():
            low, high = ratio[row].floor(), ratio[row].ceil()
            candidates = [torch.clamp(level + zero[row], 0, max_level) for level in (low, high)]
            distances = [abs((scale[row] * (level - zero[row])).item() - ties_as[row].item()) for level in candidates]
            levels[row] = (low, high)[distances.index(min(distances))]
    return torch.clamp(levels + zero, 0, max_level)


def _act_order(hessian: torch.Tensor, order_as: torch.Tensor | None) -> torch.Tensor:
    """Columns by decreasing Hessian diagonal. Two diagonals equal to float32 error (the float32 Hessian of the
    code under test sums its products in another order) may sort either way; given ``order_as`` (the code under
    test's diagonal), the reference takes its order after checking that it sorts the float64 diagonal the same
    but for such ties."""
    diagonal = torch.diagonal(hessian)
    order = torch.argsort(diagonal, descending=True)
    if order_as is None:
        return order
    theirs = torch.argsort(order_as.double(), descending=True)
    assert torch.allclose(diagonal[theirs], diagonal[order], rtol=1e-5), "act-order sorts the columns differently"
    return theirs


def reference_gptq(weight: torch.Tensor, hessian: torch.Tensor, bits: int, *, group_size: int, symmetric: bool,
                   act_order: bool, block: int = 16, ties_as: torch.Tensor | None = None,
                   order_as: torch.Tensor | None = None) -> torch.Tensor:
    """GPTQ (Frantar et al. 2023): quantize one column at a time, each rounding error compensated on the later
    columns by the OBS step. With act-order the columns go by decreasing Hessian diagonal (and the groups follow
    that order). A group's grid is fitted when the sweep reaches its first column, on the weights as they stood
    when the block holding that column began (the published code's rule), so a group that straddles a block
    boundary takes its later columns as they were then too; the last group may be shorter. ``ties_as``: see
    :func:`_round_to_level`; ``order_as``: see :func:`_act_order`."""
    weight, hessian = _prepare(weight, hessian)
    rows, cols = weight.shape
    order = _act_order(hessian, order_as) if act_order else torch.arange(cols)
    weight, hessian = weight[:, order], hessian[order][:, order]
    if ties_as is not None:
        ties_as = ties_as.double()[:, order]
    inverse = torch.linalg.inv(_damped(hessian))
    group = cols if group_size == -1 else group_size
    max_level = 2**bits - 1
    scale = zero = None
    for start in range(0, cols, block):
        at_block_start = weight.clone()
        for column in range(start, min(start + block, cols)):
            if column % group == 0:
                scale, zero = reference_grid(at_block_start[:, column : column + group], bits, symmetric)
            levels = _round_to_level(weight[:, column] / scale, zero, max_level,
                                     None if ties_as is None else ties_as[:, column], scale)
            _obs_step(weight, inverse, column, scale * (levels - zero))
    return weight[:, torch.argsort(order)]


# ----------------------------------------------------------------------------------------------------------------
# Tiny layers


def layer_data(rows: int, cols: int, seed: int, tokens: int = 256, dead: tuple[int, ...] = ()):
    """A weight ``[rows, cols]`` and calibration inputs ``[tokens, cols]`` with uneven, correlated features; the
    ``dead`` inputs are zero on every token."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, cols, generator=generator)
    mixing = torch.eye(cols) + 0.3 * torch.randn(cols, cols, generator=generator)
    inputs = torch.randn(tokens, cols, generator=generator) @ mixing
    inputs *= torch.rand(cols, generator=generator) * 3 + 0.2
    inputs[:, list(dead)] = 0.0
    return weight, inputs


def our_hessian(inputs: torch.Tensor) -> torch.Tensor:
    statistic = Hessian(inputs.shape[1])
    statistic.add_batch(inputs)
    return statistic.matrix()


def assert_weights_match(ours: torch.Tensor, reference: torch.Tensor) -> None:
    assert torch.equal(ours == 0, reference == 0), "the pruning masks differ"
    scale = reference.abs().max().item()
    assert torch.allclose(ours.double(), reference, rtol=1e-4, atol=1e-5 * scale), (
        f"largest difference {(ours.double() - reference).abs().max().item():.3g} (weights up to {scale:.3g})")


@pytest.mark.parametrize(("sparsity", "pattern"), [(0.5, "unstructured"), (0.3, "unstructured"), (0.5, "2:4")])
def test_wanda_equals_the_reference(sparsity, pattern):
    weight, inputs = layer_data(12, 40, seed=1)
    statistic = InputNorms(40)
    statistic.add_batch(inputs[:100])
    statistic.add_batch(inputs[100:])
    spec = build_spec(method="wanda", sparsity=sparsity, pattern=pattern)
    ours = get_compressor("wanda").prune_weight(weight, statistic, spec)
    parsed = parse_pattern(pattern)
    n_m = (parsed.n, parsed.m) if parsed.is_structured else None
    mask = reference_wanda_mask(weight, inputs, sparsity, n_m)
    assert torch.equal(ours == 0, mask)
    assert torch.equal(ours[~mask], weight[~mask])  # Wanda only removes


@pytest.mark.parametrize(("sparsity", "pattern", "cols", "dead"), [
    (0.5, "unstructured", 64, ()),
    (0.6, "unstructured", 40, ()),  # a shorter last block, counts that do not split evenly over the blocks
    (0.5, "2:4", 64, ()),
    (0.5, "unstructured", 64, (3, 17, 40)),
    (0.5, "2:4", 64, (3, 17, 40)),
])
def test_sparsegpt_equals_the_reference(sparsity, pattern, cols, dead):
    weight, inputs = layer_data(12, cols, seed=2, dead=dead)
    parsed = parse_pattern(pattern)
    ours = sparsegpt_prune(weight, our_hessian(inputs), sparsity, parsed, block_size=16)
    n_m = (parsed.n, parsed.m) if parsed.is_structured else None
    reference = reference_sparsegpt(weight, reference_hessian(inputs), sparsity, n_m, block=16)
    assert_weights_match(ours, reference)
    if not parsed.is_structured:
        assert int((ours == 0).sum()) == round(sparsity * ours.numel())  # the documented exact count


def test_sparsegpt_zeroes_the_weights_of_inputs_that_never_fire():
    """An input that is zero on every calibration token has a zero Hessian row: nothing tells its weights apart,
    and the published code zeroes them (as our GPTQ does). Before the fix, some of them survived."""
    dead = (1, 6, 9, 30, 31)
    weight, inputs = layer_data(16, 32, seed=3, dead=dead)
    pruned = sparsegpt_prune(weight, our_hessian(inputs), 0.25, parse_pattern("unstructured"), block_size=16)
    assert bool((pruned[:, list(dead)] == 0).all())
    assert int((pruned == 0).sum()) == round(0.25 * pruned.numel())  # their zeros count towards the target


@pytest.mark.parametrize(("bits", "group_size", "symmetric", "act_order"), [
    (4, 16, True, False),
    (3, 16, False, False),
    (4, 24, True, False),  # groups straddle the 16-column blocks; the last group is 16 wide
    (4, 24, False, True),
    (3, 16, True, True),
    (4, -1, True, False),  # one group per row
])
def test_gptq_equals_the_reference(bits, group_size, symmetric, act_order):
    weight, inputs = layer_data(12, 64, seed=4)
    ours = gptq_quantize(weight, our_hessian(inputs), bits, group_size=group_size, symmetric=symmetric,
                         act_order=act_order, block_size=16).dequantize()
    reference = reference_gptq(weight, reference_hessian(inputs), bits, group_size=group_size,
                               symmetric=symmetric, act_order=act_order, block=16, ties_as=ours,
                               order_as=torch.diagonal(our_hessian(inputs)))
    assert_weights_match(ours, reference)


def test_gptq_with_dead_inputs_equals_the_reference():
    weight, inputs = layer_data(12, 48, seed=5, dead=(0, 20, 47))
    ours = gptq_quantize(weight, our_hessian(inputs), 4, group_size=16, act_order=True, block_size=16).dequantize()
    reference = reference_gptq(weight, reference_hessian(inputs), 4, group_size=16, symmetric=True,
                               act_order=True, block=16, ties_as=ours, order_as=torch.diagonal(our_hessian(inputs)))
    assert_weights_match(ours, reference)
    assert bool((ours[:, [0, 20, 47]] == 0).all())


# ----------------------------------------------------------------------------------------------------------------
# The block walk of a tiny random Llama

WALK_SPECS = {
    "wanda": dict(method="wanda", sparsity=0.5),
    "sparsegpt": dict(method="sparsegpt", sparsity=0.5),
    "sparsegpt 2:4": dict(method="sparsegpt", pattern="2:4"),
    "gptq": dict(method="gptq", bits=4, group_size=24, act_order=True),
}


def _reference_for(options: dict, weight: torch.Tensor, inputs: torch.Tensor, ours: torch.Tensor) -> torch.Tensor:
    """The reference result for one layer, at the published block width of 128."""
    if options["method"] == "wanda":
        return weight.double().masked_fill(reference_wanda_mask(weight, inputs, options["sparsity"]), 0.0)
    if options["method"] == "sparsegpt":
        n_m = (2, 4) if options.get("pattern") == "2:4" else None
        return reference_sparsegpt(weight, reference_hessian(inputs), options.get("sparsity", 0.5), n_m, block=128)
    return reference_gptq(weight, reference_hessian(inputs), options["bits"], group_size=options["group_size"],
                          symmetric=True, act_order=options["act_order"], block=128, ties_as=ours,
                          order_as=torch.diagonal(our_hessian(inputs)))


@pytest.mark.parametrize("name", list(WALK_SPECS))
def test_the_block_walk_of_a_tiny_llama_equals_the_reference(tiny_loaded, name):
    """Every layer of the first two blocks, compressed by the real walk in ``--kick-sequential block`` order,
    equals the reference run on the inputs that walk observed it with (the dense block on the compressed earlier
    blocks' outputs): the first calls of each layer, one per calibration batch, before it is compressed."""
    model = copy.deepcopy(tiny_loaded.model)
    calibration = calibration_tokens(tiny_loaded.tokenizer, samples=12, seqlen=24, seed=0)
    batches = -(-calibration.shape[0] // 8)  # the walk's batch size is 8
    layers = dict(compressible_layers(model))
    dense = {layer_name: layer.weight.detach().clone() for layer_name, layer in layers.items()}
    observed: dict[str, list[torch.Tensor]] = {layer_name: [] for layer_name in layers}

    def recorder(layer_name):
        def record(_module, args):
            if len(observed[layer_name]) < batches:
                observed[layer_name].append(args[0].detach().reshape(-1, args[0].shape[-1]).clone())
        return record

    handles = [layer.register_forward_pre_hook(recorder(layer_name)) for layer_name, layer in layers.items()]
    options = WALK_SPECS[name]
    spec = build_spec(**options, calib_samples=12, calib_seqlen=24, sequential="block")
    try:
        get_compressor(options["method"])(model, spec, calibration)
    finally:
        for handle in handles:
            handle.remove()
    assert {layer_name.split(".")[1] for layer_name in layers} == {"0", "1"}
    for layer_name, layer in layers.items():
        inputs = torch.cat(observed[layer_name])
        assert inputs.shape[0] == calibration.numel()
        reference = _reference_for(options, dense[layer_name], inputs, layer.weight.detach())
        try:
            assert_weights_match(layer.weight.detach(), reference)
        except AssertionError as error:
            raise AssertionError(f"{layer_name}: {error}") from None
