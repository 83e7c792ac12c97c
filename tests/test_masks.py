"""Mask selection: exact counts, N:M groups, and zero weights staying zero (hypothesis properties)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compressors.magnitude import MagnitudePruner
from compressors.masks import n_m_mask, pattern_mask, per_row_mask, smallest_k_mask, target_count
from compressors.sparsegpt import sparsegpt_prune
from compressors.spec import UNSTRUCTURED, Pattern, build_spec
from compressors.statistics import InputNorms
from compressors.wanda import WandaPruner

shapes = st.tuples(st.integers(1, 12), st.integers(1, 6).map(lambda groups: groups * 8))
sparsities = st.floats(min_value=0.0, max_value=0.95, allow_nan=False)
patterns = st.sampled_from([Pattern(2, 4), Pattern(4, 8), Pattern(1, 2), Pattern(1, 4), Pattern(3, 4)])


def matrix(shape, seed, zero_fraction=0.0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(shape, generator=generator)
    if zero_fraction:
        weight[torch.rand(shape, generator=generator) < zero_fraction] = 0.0
    return weight


@given(shapes, sparsities, st.integers(0, 10_000))
def test_smallest_k_mask_is_exact_even_with_ties(shape, sparsity, seed):
    scores = matrix(shape, seed).round()  # many ties
    k = target_count(scores.numel(), sparsity)
    mask = smallest_k_mask(scores, k)
    assert int(mask.sum()) == k
    if 0 < k < scores.numel():
        assert scores[mask].max() <= scores[~mask].min()


@given(shapes, sparsities, st.integers(0, 10_000))
def test_per_row_mask_is_exact_and_balanced(shape, sparsity, seed):
    scores = matrix(shape, seed).abs()
    k = target_count(scores.numel(), sparsity)
    mask = per_row_mask(scores, k)
    assert int(mask.sum()) == k
    per_row = mask.sum(dim=1)
    assert int(per_row.max() - per_row.min()) <= 1
    for row in range(scores.shape[0]):  # within a row, pruned scores never exceed kept ones
        pruned, kept = scores[row][mask[row]], scores[row][~mask[row]]
        if len(pruned) and len(kept):
            assert pruned.max() <= kept.min()


@given(shapes, patterns, st.integers(0, 10_000))
def test_n_m_mask_holds_in_every_group(shape, pattern, seed):
    scores = matrix(shape, seed).abs()
    mask = n_m_mask(scores, pattern)
    groups = mask.reshape(shape[0], -1, pattern.m).sum(dim=2)
    assert bool((groups == pattern.n).all())


def test_n_m_mask_rejects_width_not_multiple_of_m():
    try:
        n_m_mask(torch.ones(2, 6), Pattern(2, 4))
    except ValueError as error:
        assert "multiple of 4" in str(error)
    else:
        raise AssertionError("expected ValueError")


@settings(deadline=None, max_examples=40)
@given(shapes, sparsities, st.integers(0, 10_000), st.booleans())
def test_magnitude_and_wanda_keep_zero_weights_zero_and_touch_nothing_else(shape, sparsity, seed, use_wanda):
    weight = matrix(shape, seed, zero_fraction=0.2)
    spec = build_spec(sparsity=sparsity)
    if use_wanda:
        norms = InputNorms(shape[1])
        norms.add_batch(torch.randn(5, shape[1], generator=torch.Generator().manual_seed(seed)))
        pruned = WandaPruner().prune_weight(weight, norms, spec)
    else:
        pruned = MagnitudePruner().prune_weight(weight, None, spec)
    target = target_count(weight.numel(), sparsity)
    if use_wanda:  # per output row: each row removes its share (floor or ceil), or keeps its zeros if it has more
        before = (weight == 0).sum(dim=1).tolist()
        low, high = target // shape[0], -(-target // shape[0])
        zeros = int((pruned == 0).sum())
        assert sum(max(low, z) for z in before) <= zeros <= sum(max(high, z) for z in before)
        assert zeros >= target
    else:  # per matrix
        assert int((pruned == 0).sum()) == max(target, int((weight == 0).sum()))
    assert bool((pruned[weight == 0] == 0).all())  # zero weights stay zero
    kept = pruned != 0
    assert torch.equal(pruned[kept], weight[kept])  # survivors are untouched


@settings(deadline=None, max_examples=25)
@given(st.integers(1, 6), st.sampled_from([16, 32, 48]), sparsities, st.integers(0, 1000), st.booleans())
def test_sparsegpt_exact_count_and_n_m(rows, cols, sparsity, seed, structured):
    weight = matrix((rows, cols), seed)
    inputs = torch.randn(64, cols, generator=torch.Generator().manual_seed(seed + 1))
    hessian = 2 * inputs.T @ inputs / 64
    pattern = Pattern(2, 4) if structured else UNSTRUCTURED
    target = 0.5 if structured else sparsity
    pruned = sparsegpt_prune(weight, hessian, target, pattern, block_size=16)
    zeros = pruned == 0
    if structured:
        assert bool((zeros.reshape(rows, -1, 4).sum(dim=2) == 2).all())
    else:
        assert int(zeros.sum()) == target_count(weight.numel(), sparsity)
    assert torch.isfinite(pruned).all()


def test_pattern_mask_dispatch():
    scores = torch.arange(16.0).reshape(2, 8)
    assert int(pattern_mask(scores, 0.5, Pattern(2, 4), per_row=False).sum()) == 8
    assert pattern_mask(scores, 0.25, UNSTRUCTURED, per_row=False).reshape(-1)[:4].all()


def _stable_sort_per_row_mask(scores, k_total):
    """The rule per_row_mask implements, written the slow and obvious way: sort each row stably."""
    rows, _ = scores.shape
    base, extra = divmod(k_total, rows)
    order = torch.argsort(scores.float(), dim=1, stable=True)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask.scatter_(1, order[:, :base], True)
    if extra:
        next_candidate = order[:, base]
        next_scores = scores.float().gather(1, next_candidate[:, None]).squeeze(1)
        ranked = sorted(range(rows), key=lambda row: (float(next_scores[row]), row))
        for row in ranked[:extra]:
            mask[row, next_candidate[row]] = True
    return mask


@given(shapes, sparsities, st.integers(0, 10_000), st.integers(1, 4))
def test_per_row_mask_breaks_ties_by_column_like_a_stable_sort(shape, sparsity, seed, levels):
    """Scores drawn from a few values, so most comparisons are ties: the selection must still pick exactly the
    weights a stable sort of each row would (rows tied for the remainder: any choice among them is allowed)."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, shape, generator=generator).float()
    k = target_count(scores.numel(), sparsity)
    mask, expected = per_row_mask(scores, k), _stable_sort_per_row_mask(scores, k)
    rows, cols = shape
    base = k // rows
    assert int(mask.sum()) == k
    order = torch.argsort(scores, dim=1, stable=True)
    for row in range(rows):  # each row takes a prefix of its stable order: base, or base + 1 weights
        count = int(mask[row].sum())
        assert count in (base, base + 1) and bool(mask[row, order[row, :count]].all())
    if k % rows == 0:
        assert torch.equal(mask, expected)
    else:  # the rows that took one more had the lowest next candidates
        took_more = mask.sum(dim=1) > base
        next_scores = scores.gather(1, order[:, base : base + 1]).squeeze(1)
        assert next_scores[took_more].max() <= next_scores[~took_more].min()
